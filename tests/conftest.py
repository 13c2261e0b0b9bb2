"""Shared fixtures: the personas of the permission matrix, service checks, fast password hashing."""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass

import pytest
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.db import connection

from portal.models import DirectoryRole, User, Workspace
from tests.factories import UserFactory, grant_role, make_workspace

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _missing(service: str, why: str):
    """Fail under REQUIRE_SERVICES=1 (CI), skip on a developer machine without the service."""
    message = f"{service} is required for this test: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        _missing("PostgreSQL", "set DATABASE_URL=postgres://… (row locks are PostgreSQL's)")


@pytest.fixture
def redis_url() -> str:
    url = django_settings.REDIS_URL
    if not url:
        _missing("Redis", "set REDIS_URL=redis://…")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        _missing("Redis", f"{url} does not answer ({error})")
    return url


@pytest.fixture(scope="session", autouse=True)
def _plain_http_for_live_server():
    """A live server's middleware is built once per session, before function-scoped settings apply: plain HTTP."""
    from django.test import override_settings

    with override_settings(SECURE_SSL_REDIRECT=False):
        yield


@pytest.fixture(autouse=True)
def _test_settings(settings):
    """Production settings (DEBUG off) except what needs TLS or a collectstatic run, and a fast password hash."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Four-eyes (docs/four-eyes.md): no kind of change waits for a second administrator unless a test turns it on
    # in the settings row (tests/portal/test_four_eyes.py), so the other tests exercise the changes themselves.
    settings.FOUR_EYES_DEFAULT_KINDS = []
    settings.SECURE_SSL_REDIRECT = False
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


@pytest.fixture
def fresh_rate_window():
    """Rate limits and failed-authentication counts use fixed clock windows (a minute, a quarter of an hour). A test
    that counts requests starts where it fits inside one, so a window turning over mid-test cannot reset its
    counts (with Redis the counters outlive the test's cache clearing, and the test takes seconds)."""
    for window, margin in ((60, 20), (900, 30)):
        left = window - time.time() % window
        if left < margin:
            time.sleep(left + 0.05)


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _forget_signing_keys():
    """Each process keeps the signing keys it read (governance.signing.keys); a key made in a test's rolled-back
    transaction must not sign, or be trusted, in the next test."""
    from governance.signing import keys

    keys.forget()
    yield
    keys.forget()


@dataclass
class World:
    """Two workspaces and one user per persona of the permission matrix.

    ``alpha``: explicit owners ``owner`` and ``owner_b``, contributor ``contributor``.
    ``beta``: owners ``other`` and ``other_b`` (the "member of another workspace").
    ``inherited``: Security Administrator (inherited owner of both); ``ga``: Global Administrator.
    """

    alpha: Workspace
    beta: Workspace
    owner: User
    owner_b: User
    contributor: User
    other: User
    other_b: User
    inherited: User
    ga: User
    newcomer: User
    blueprint: object = None
    agent: object = None
    partner_agent: object = None
    approval: object = None
    package: object = None
    assignment: object = None

    def persona(self, name: str) -> User | None:
        return {
            "anonymous": None, "contributor": self.contributor, "owner": self.owner,
            "inherited_owner": self.inherited, "global_admin": self.ga, "other_workspace": self.other,
        }[name]


PERSONAS = ("anonymous", "contributor", "owner", "inherited_owner", "global_admin", "other_workspace")


@pytest.fixture
def catalog(db) -> None:
    """The permission catalog and directory roles of migration 0002.

    Transactional tests end with a flush that empties every table, seeded ones included; this puts the seed
    back for the tests that follow (pytest-django runs transactional tests after the others).
    """
    if not DirectoryRole.objects.exists():
        importlib.import_module("portal.migrations.0002_seed_catalog").seed(django_apps, None)
        importlib.import_module("agents.migrations.0007_attribute_sets").add_role(django_apps, None)


@pytest.fixture(autouse=True)
def _catalog_for_database_tests(request):
    if request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames):
        request.getfixturevalue("catalog")


@pytest.fixture
def world(db, catalog) -> World:
    owner, owner_b, contributor = (UserFactory(username=n) for n in ("owner", "owner_b", "contributor"))
    other, other_b = UserFactory(username="other"), UserFactory(username="other_b")
    inherited, ga = UserFactory(username="secadmin"), UserFactory(username="ga")
    grant_role(inherited, "security-administrator")
    grant_role(ga, "global-administrator")
    alpha = make_workspace("alpha", owners=[owner, owner_b], contributors=[contributor])
    beta = make_workspace("beta", owners=[other, other_b])
    return World(alpha, beta, owner, owner_b, contributor, other, other_b, inherited, ga,
                 newcomer=UserFactory(username="newcomer"))


@pytest.fixture
def registry_world(world) -> World:
    """``world`` plus a blueprint and a workspace-scoped agent in alpha (sponsor owner, agent owner owner_b)."""
    from agents import registry
    from tests.factories import agent_spec, make_blueprint

    world.blueprint = make_blueprint("MatrixAgent", permissions=("User.Read.All",),
                                     executor_url="https://executor.invalid/runs")
    world.agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        world.blueprint, "matrix-agent", sponsors=[world.owner], owners=[world.owner_b])).agent
    return world


@pytest.fixture
def approval_world(registry_world) -> World:
    """``registry_world`` plus a partner agent of the contributor's, waiting for approval (``world.approval``)."""
    from agents import registry
    from governance.approvals.models import ApprovalRequest
    from tests.factories import agent_spec, make_blueprint

    w = registry_world
    partner = make_blueprint("PartnerDefender", publisher_kind="partner", permissions=("SecurityIncident.Read.All",))
    w.partner_agent = registry.agent_create(actor=w.contributor, workspace=w.alpha, spec=agent_spec(
        partner, "partner-agent", identity_type="user_account", run_as_user=w.contributor, scope="user",
        sponsors=[w.contributor], owners=[w.contributor], justification="matrix")).agent
    w.approval = ApprovalRequest.objects.get(agent=w.partner_agent)
    from governance.access import services as access_packages
    from portal.models import Permission

    w.package = access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name="Responder", policy={"approver_kind": "workspace_owners"},
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"))
    w.assignment = access_packages.assignment_request(actor=w.owner_b, package=w.package, agent=w.agent,
                                                      justification="matrix")
    from datetime import timedelta

    from django.utils import timezone

    from governance.reviews.campaigns import review_create

    # R19: a package review opened an hour ago; its one item (w.assignment) is reviewed by the sponsor, owner.
    w.review = review_create(actor=w.owner_b, workspace=w.alpha, name="Responder review",
                             scope_kind="packages", packages=[w.package], reviewer_kind="sponsors",
                             starts_at=timezone.now() - timedelta(hours=1), duration_days=14)
    w.review_instance = w.review.instances.get()
    w.review_item = w.review_instance.items.get()
    return w
