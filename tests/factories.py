"""factory_boy factories. Objects with rules are made through the services, so tests start from valid states."""

from __future__ import annotations

import factory

from portal import directory, workspaces
from portal.choices import UserKind
from portal.models import DirectoryRole, User, Workspace

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    display_name = factory.LazyAttribute(lambda u: u.username.replace("_", " ").title())
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    kind = UserKind.HUMAN
    password = factory.django.Password(PASSWORD)


def grant_role(user: User, role_key: str):
    return directory.role_assign(actor=None, user=user, role=DirectoryRole.objects.get(key=role_key))


def make_workspace(slug: str, *, owners=(), contributors=()) -> Workspace:
    return workspaces.workspace_create(actor=None, name=slug.title(), slug=slug, owners=list(owners),
                                       contributors=list(contributors))


def make_blueprint(name: str = "TestAgent", *, permissions=("User.Read.All", "Policy.Read.All"),
                   publisher_kind: str = "microsoft", version: int = 1, complete: bool = True,
                   executor_url: str = "", period: int = 0):
    """A blueprint row as the manifest importer would leave it (for registry tests that need no manifest)."""
    from agents.models import Blueprint, Publisher
    from portal.models import Permission

    publisher, _ = Publisher.objects.get_or_create(name=f"{publisher_kind.title()} Publisher",
                                                   defaults={"kind": publisher_kind})
    blueprint = Blueprint.objects.create(
        name=name, version=version, display_name=name, publisher=publisher, publisher_kind=publisher_kind,
        manifest={"Descriptor": {"Name": name}}, manifest_digest="0" * 64, is_complete=complete,
        triggers=[{"Name": "Default", "DefaultPollPeriodSeconds": period}], executor_url=executor_url,
    )
    blueprint.required_permissions.set(Permission.objects.filter(name__in=permissions, kind="application"))
    from agents.catalog import permission_digest

    blueprint.permission_digest = permission_digest(name, version, permissions)
    blueprint.save(update_fields=["permission_digest"])
    return blueprint


def agent_spec(blueprint, name: str, *, sponsors, owners, identity_type: str = "agent_identity",
               scope: str = "workspace", **extra):
    from agents.registry import AgentSpec

    return AgentSpec(blueprint=blueprint, name=name, identity_type=identity_type, scope=scope,
                     sponsors=list(sponsors), owners=list(owners), **extra)


def accept_sponsorships(agent) -> None:
    """Every named sponsor of ``agent`` who has not answered accepts, through the service (R30,
    docs/sponsorship.md): a test that needs the agent's sponsors to count starts from there."""
    from agents import sponsorship
    from agents.choices import SponsorshipState
    from agents.models import Sponsorship

    for row in Sponsorship.objects.filter(agent=agent, state=SponsorshipState.PENDING).select_related("user",
                                                                                                     "agent"):
        sponsorship.sponsorship_accept(actor=row.user, sponsorship=row)
