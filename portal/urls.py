from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from portal import api, change_api, change_views, pickers, views  # noqa: F401  (change_api registers its routes)

handler404 = "portal.api_errors.page_not_found"
handler500 = "portal.api_errors.server_error"

urlpatterns = [
    path("accounts/login/", views.ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("robots.txt", views.robots, name="robots"),
    # Pages that are not the portal's own (the API docs, a JSON answer opened in a browser) ask for /favicon.ico.
    # The plain name, not the manifest's: looked up at import, it would need collectstatic before any command runs.
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}portal/favicon.svg", permanent=True),
         name="favicon"),
    path("workspaces/", views.workspace_list, name="workspace-list"),
    path("workspaces/new/", views.workspace_create, name="workspace-create"),
    path("workspaces/switch/", views.workspace_switch, name="workspace-switch"),
    path("workspaces/<slug:slug>/members/", views.workspace_members, name="workspace-members"),
    path("workspaces/<slug:slug>/credential-policy/", views.workspace_credential_policy,
         name="workspace-credential-policy"),
    path("workspaces/<slug:slug>/members/add/", views.member_add, name="member-add"),
    path("workspaces/<slug:slug>/members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path("workspaces/<slug:slug>/members/<int:membership_id>/remove/", views.member_remove, name="member-remove"),
    path("directory/users/", views.directory_users, name="directory-users"),
    path("directory/users/new/", views.directory_user_create, name="directory-user-create"),
    path("directory/users/<int:user_id>/", views.directory_user, name="directory-user"),
    path("directory/users/<int:user_id>/active/", views.directory_user_active, name="directory-user-active"),
    path("directory/users/<int:user_id>/roles/", views.directory_role_assign, name="directory-role-assign"),
    path("directory/role-assignments/<int:assignment_id>/remove/", views.directory_role_unassign,
         name="directory-role-unassign"),
    path("directory/roles/", views.directory_roles, name="directory-roles"),
    path("audit/", views.audit_list, name="audit-list"),
    path("audit/export/", views.audit_export, name="audit-export"),
    path("audit/log-key/", views.audit_log_key, name="audit-log-key"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/<slug:name>/run/", views.job_run_now, name="job-run-now"),
    path("pickers/people/", pickers.people, name="picker-people"),
    path("notifications/", views.notification_list, name="notification-list"),
    path("notifications/read/", views.notification_read, name="notification-read"),
    path("changes/", change_views.change_list, name="change-list"),
    path("changes/settings/", change_views.four_eyes_settings, name="four-eyes-settings"),
    path("changes/<int:change_id>/", change_views.change_detail, name="change-detail"),
    path("changes/<int:change_id>/approve/", change_views.change_approve, name="change-approve"),
    path("changes/<int:change_id>/reject/", change_views.change_reject, name="change-reject"),
    path("changes/<int:change_id>/review/", change_views.change_review, name="change-review"),
    path("agents/", include("agents.urls")),
    path("governance/", include("governance.urls")),
    path("", include("governance.runs.urls")),
    path("oauth/", include("governance.oauth.oauth_urls")),
    path(".well-known/", include("governance.oauth.wellknown_urls")),
    path("api/v1/", include(api.router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file (?script), not inline: the Content-Security-Policy holds.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="portal/api_docs.html"),
         name="api-docs"),
    path("admin/", admin.site.urls),
]
