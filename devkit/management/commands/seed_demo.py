"""Demo data: workspaces ``soc`` and ``identity`` and the demo users. Safe to run again."""

from django.core.management.base import BaseCommand
from django.db import transaction
from django.test.utils import override_settings

from devkit import demo
from portal import directory, rbac, workspaces
from portal.choices import WorkspaceRole
from portal.models import DirectoryRole, DirectoryRoleAssignment, User, Workspace, WorkspaceMembership

# username, display name, directory role, manager
USERS = [
    ("ga", "Grace Adeyemi (Global Administrator)", rbac.GLOBAL_ADMINISTRATOR, None),
    ("secadmin", "Sam Ortiz (Security Administrator)", rbac.SECURITY_ADMINISTRATOR, "ga"),
    ("owner", "Olivia Owens", None, "secadmin"),
    ("owner2", "Omar Haddad", None, "owner"),
    ("contributor", "Chen Li", None, "owner"),
    ("contributor2", "Carla Mendes", None, "owner"),
    ("idowner", "Ines Dubois", None, "ga"),
    ("idowner2", "Ivan Petrov", None, "idowner"),
    ("reader", "Rita Kowalski (Security Reader)", rbac.SECURITY_READER, "secadmin"),
]
WORKSPACES = [
    ("soc", "Security Operations", "Agents that triage incidents and vulnerabilities.",
     {"owner": WorkspaceRole.OWNER, "owner2": WorkspaceRole.OWNER,
      "contributor": WorkspaceRole.CONTRIBUTOR, "contributor2": WorkspaceRole.CONTRIBUTOR}),
    ("identity", "Identity & Access", "Agents that review access, policies and workload identities.",
     {"idowner": WorkspaceRole.OWNER, "idowner2": WorkspaceRole.OWNER}),
]


class Command(BaseCommand):
    help = "Create the demo workspaces and users (idempotent) and print the logins."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="demo", help="Password for every demo user (default: demo).")

    def handle(self, *args, password: str, **options):
        with transaction.atomic():
            users = self._users(password)
            self._workspaces(users)
        # Demo notifications stay in the app; no e-mail goes out while seeding.
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"):
            for name, step in demo.load():
                self.stdout.write(f"Seeding {name}…")
                step(self.stdout.write)
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Logins (password for all: {password}):"))
        for username, display, role_key, _manager in USERS:
            role = DirectoryRole.objects.get(key=role_key).name if role_key else ""
            places = ", ".join(
                f"{m.get_role_display().lower()} of {m.workspace.slug}"
                for m in WorkspaceMembership.objects.filter(user__username=username).select_related("workspace")
            )
            self.stdout.write(f"  {username:<13} {display:<40} {' · '.join(x for x in (role, places) if x)}")

    def _users(self, password: str) -> dict[str, User]:
        users: dict[str, User] = {}
        for username, display, role_key, manager in USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = directory.user_create(actor=None, username=username, display_name=display,
                                             email=f"{username}@example.test",
                                             manager=users.get(manager) if manager else None)
            elif not user.is_active:
                user = directory.user_reactivate(actor=None, user=user)
            if not user.check_password(password):
                directory.user_set_password(actor=None, user=user, password=password, validate=False)
            if role_key and not DirectoryRoleAssignment.objects.filter(user=user, role__key=role_key).exists():
                directory.role_assign(actor=None, user=user, role=DirectoryRole.objects.get(key=role_key))
            users[username] = user
        return users

    def _workspaces(self, users: dict[str, User]) -> None:
        for slug, name, description, members in WORKSPACES:
            workspace = Workspace.objects.filter(slug=slug).first()
            if workspace is None:
                workspace = workspaces.workspace_create(
                    actor=None, name=name, slug=slug, description=description,
                    owners=[users[u] for u, r in members.items() if r == WorkspaceRole.OWNER],
                    contributors=[users[u] for u, r in members.items() if r == WorkspaceRole.CONTRIBUTOR],
                )
            for username, role in members.items():
                membership = WorkspaceMembership.objects.filter(workspace=workspace, user=users[username]).first()
                if membership is None:
                    workspaces.membership_add(actor=None, workspace=workspace, user=users[username], role=role)
                elif membership.role != role:
                    workspaces.membership_change_role(actor=None, membership=membership, role=role)
