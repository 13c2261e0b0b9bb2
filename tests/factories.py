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
