from django.urls import path

from agents import views

urlpatterns = [
    path("", views.agent_list, name="agent-list"),
    path("new/", views.setup_choose_blueprint, name="agent-setup"),
    path("new/<int:blueprint_id>/", views.setup_agent, name="agent-setup-blueprint"),
    path("<int:agent_id>/", views.agent_detail, name="agent-detail"),
    path("<int:agent_id>/activate/", views.agent_activate, name="agent-activate"),
    path("<int:agent_id>/disable/", views.agent_disable, name="agent-disable"),
    path("<int:agent_id>/enable/", views.agent_enable, name="agent-enable"),
    path("<int:agent_id>/retire/", views.agent_retire, name="agent-retire"),
    path("<int:agent_id>/credentials/rotate/", views.credential_rotate, name="agent-credential-rotate"),
    path("<int:agent_id>/credentials/<int:credential_id>/revoke/", views.credential_revoke,
         name="agent-credential-revoke"),
    path("<int:agent_id>/people/", views.agent_person, name="agent-person"),
    path("<int:agent_id>/attributes/", views.agent_attribute, name="agent-attribute"),
    path("attribute-sets/", views.attribute_set_list, name="attribute-set-list"),
    path("attribute-sets/new/", views.attribute_set_edit, name="attribute-set-create"),
    path("attribute-sets/<int:set_id>/edit/", views.attribute_set_edit, name="attribute-set-edit"),
    path("blueprints/", views.blueprint_list, name="blueprint-list"),
    path("blueprints/<int:blueprint_id>/", views.blueprint_detail, name="blueprint-detail"),
    path("blueprints/<int:blueprint_id>/export/", views.blueprint_export, name="blueprint-export"),
    path("blueprints/<int:blueprint_id>/skills/<int:ref_id>/resolve/", views.blueprint_resolve_skill,
         name="blueprint-resolve-skill"),
    path("skills/", views.skill_list, name="skill-list"),
    path("skills/<int:skill_id>/edit/", views.skill_edit, name="skill-edit"),
    path("bulk/", views.bulk_upload, name="bulk-upload"),
    path("bulk/<int:job_id>/", views.bulk_job, name="bulk-job"),
    path("bulk/<int:job_id>/secrets/", views.bulk_job_secrets, name="bulk-job-secrets"),
]
