from portal import notifications, rbac
from portal.models import User
from portal.navigation import header_counts


def navigation(request) -> dict:
    """Header data: the workspace switcher and which menu entries this user may open."""
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_authenticated:
        return {}  # nobody signed in, or an agent's own token on an API page: no header of a person to fill
    workspace = request.workspace
    return {
        "nav_workspaces": list(rbac.workspaces_visible_to(user).order_by("name").only("slug", "name")),
        "current_workspace": workspace,
        "current_role": rbac.workspace_role(user, workspace) if workspace else None,
        "is_inherited_owner": rbac.is_inherited_owner(user),
        "can_manage_directory": rbac.can_manage_directory(user),
        "can_view_jobs": rbac.can_view_jobs(user),
        "can_view_audit": rbac.can_view_audit(user),
        "unread_notifications": notifications.unread_count(user),
        "header_counts": header_counts(user),
    }
