"""Governance's models now belong to its sub-apps (their 0001 migrations took them over): gone from this app's
state only; no table is touched."""

from django.db import migrations

MOVED = {
    ("governance", "approvalrequest"): "approvals",
    **{("governance", m): "access" for m in ("accesspackage", "assignmentpolicy", "assignment")},
    **{("governance", m): "reviews" for m in ("accessreview", "reviewinstance", "reviewitem", "reviewitemreviewer",
                                               "reviewdecision")},
    ("governance", "conditionalaccesspolicy"): "conditional_access",
    **{("governance", m): "signin" for m in ("resourceserver", "accesstoken", "signin")},
    **{("governance", m): "risk" for m in ("riskdetection", "riskremediationpolicy")},
    **{("agents", m): "runs" for m in ("session", "run", "feedback")},
}


def move_content_types(apps, schema_editor, backwards=False):
    """Content types (and with them model permissions and object permissions) follow their models."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for (old, model), new in MOVED.items():
        source, target = (new, old) if backwards else (old, new)
        if not ContentType.objects.filter(app_label=target, model=model).exists():
            ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, backwards=True)


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('governance', '0006_run_tokens_policy_state'),
        ('approvals', '0001_initial'),
        ('access', '0001_initial'),
        ('reviews', '0001_initial'),
        ('conditional_access', '0001_initial'),
        ('signin', '0001_initial'),
        ('risk', '0001_initial'),
        ('runs', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveField(
                model_name='assignmentpolicy',
                name='package',
            ),
            migrations.RemoveField(
                model_name='assignment',
                name='package',
            ),
            migrations.RemoveField(
                model_name='accessreview',
                name='packages',
            ),
            migrations.RemoveField(
                model_name='accessreview',
                name='created_by',
            ),
            migrations.RemoveField(
                model_name='accessreview',
                name='fallback_reviewer',
            ),
            migrations.RemoveField(
                model_name='accessreview',
                name='named_reviewers',
            ),
            migrations.RemoveField(
                model_name='accessreview',
                name='workspace',
            ),
            migrations.RemoveField(
                model_name='reviewinstance',
                name='campaign',
            ),
            migrations.RemoveField(
                model_name='accesstoken',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='accesstoken',
                name='parent',
            ),
            migrations.RemoveField(
                model_name='accesstoken',
                name='run',
            ),
            migrations.RemoveField(
                model_name='accesstoken',
                name='subject',
            ),
            migrations.RemoveField(
                model_name='signin',
                name='token',
            ),
            migrations.RemoveField(
                model_name='approvalrequest',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='approvalrequest',
                name='blueprint',
            ),
            migrations.RemoveField(
                model_name='approvalrequest',
                name='decided_by',
            ),
            migrations.RemoveField(
                model_name='approvalrequest',
                name='requester',
            ),
            migrations.RemoveField(
                model_name='approvalrequest',
                name='workspace',
            ),
            migrations.RemoveField(
                model_name='assignment',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='assignment',
                name='first_approver',
            ),
            migrations.RemoveField(
                model_name='assignment',
                name='requested_by',
            ),
            migrations.RemoveField(
                model_name='assignment',
                name='second_approver',
            ),
            migrations.RemoveField(
                model_name='reviewitem',
                name='assignment',
            ),
            migrations.RemoveField(
                model_name='assignmentpolicy',
                name='approvers',
            ),
            migrations.RemoveField(
                model_name='assignmentpolicy',
                name='second_approvers',
            ),
            migrations.RemoveField(
                model_name='conditionalaccesspolicy',
                name='agents',
            ),
            migrations.RemoveField(
                model_name='conditionalaccesspolicy',
                name='created_by',
            ),
            migrations.RemoveField(
                model_name='conditionalaccesspolicy',
                name='excluded_agents',
            ),
            migrations.RemoveField(
                model_name='resourceserver',
                name='created_by',
            ),
            migrations.RemoveField(
                model_name='reviewdecision',
                name='item',
            ),
            migrations.RemoveField(
                model_name='reviewdecision',
                name='reviewer',
            ),
            migrations.RemoveField(
                model_name='reviewinstance',
                name='closed_by',
            ),
            migrations.RemoveField(
                model_name='reviewitemreviewer',
                name='instance',
            ),
            migrations.RemoveField(
                model_name='reviewitem',
                name='instance',
            ),
            migrations.RemoveField(
                model_name='reviewitem',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='reviewitem',
                name='reviewers',
            ),
            migrations.RemoveField(
                model_name='reviewitemreviewer',
                name='item',
            ),
            migrations.RemoveField(
                model_name='reviewitemreviewer',
                name='reviewer',
            ),
            migrations.RemoveField(
                model_name='riskdetection',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='riskdetection',
                name='resolved_by',
            ),
            migrations.RemoveField(
                model_name='riskremediationpolicy',
                name='updated_by',
            ),
            migrations.RemoveField(
                model_name='signin',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='signin',
                name='subject',
            ),
            migrations.DeleteModel(
                name='AccessPackage',
            ),
            migrations.DeleteModel(
                name='AccessReview',
            ),
            migrations.DeleteModel(
                name='AccessToken',
            ),
            migrations.DeleteModel(
                name='ApprovalRequest',
            ),
            migrations.DeleteModel(
                name='Assignment',
            ),
            migrations.DeleteModel(
                name='AssignmentPolicy',
            ),
            migrations.DeleteModel(
                name='ConditionalAccessPolicy',
            ),
            migrations.DeleteModel(
                name='ResourceServer',
            ),
            migrations.DeleteModel(
                name='ReviewDecision',
            ),
            migrations.DeleteModel(
                name='ReviewInstance',
            ),
            migrations.DeleteModel(
                name='ReviewItem',
            ),
            migrations.DeleteModel(
                name='ReviewItemReviewer',
            ),
            migrations.DeleteModel(
                name='RiskDetection',
            ),
            migrations.DeleteModel(
                name='RiskRemediationPolicy',
            ),
            migrations.DeleteModel(
                name='SignIn',
            ),
        ]),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
