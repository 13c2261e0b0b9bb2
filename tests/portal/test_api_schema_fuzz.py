"""The REST API matches its OpenAPI schema (``/api/schema/``): schemathesis generates requests from the schema —
valid and invalid ones — for every operation and checks every answer with all its checks: no server error, a status
the schema documents, a body and headers of the documented shape, invalid input refused, valid input accepted
(except a service's refusal of well-formed input on a rule no schema can state; see the check below).

It runs in process against the WSGI application, once as a signed-in workspace owner (a session, every method,
writes included) and once as an agent's bearer token (read scopes; writes must be refused as documented). Each
generated request runs in a savepoint rolled back afterwards, so one example's writes do not leak into the next,
and the test database is rolled back after each operation. Bounded: a few examples per operation, derandomized,
so it runs in about a minute and a half on SQLite. No operation is excluded; generated slugs never name a real
workspace, so the workspace operations are also checked with one that exists.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.factories import agent_spec, make_blueprint

CSRF_SECRET = "fuzzcsrfsecretfuzzcsrfsecret0123"  # 32 characters: Django compares an unmasked header token as is
API_SCOPES = ("Portal.Agents.Read.All", "Portal.Audit.Read.All", "Portal.Governance.Read.All", "Policy.Read.All")
FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _openapi() -> dict:
    """The schema exactly as ``/api/schema/`` serves it (the same generator, rendered to JSON and back)."""
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


#: The credential of the test being run (set by its fixture): each generated request carries it, and the checks
#: that probe authentication (ignored_auth) take it off or replace it with an invalid one.
CREDENTIAL: dict = {}


def _schema_with_the_current_credential():
    loaded = schemathesis.openapi.from_dict(_openapi())

    @loaded.auth(refresh_interval=None, retry_on=[])
    class CurrentCredential:
        def get(self, case, ctx):
            return CREDENTIAL

        def set(self, case, data, ctx):
            if not CREDENTIAL:  # collecting: no test has begun
                return
            case.headers = {**(case.headers or {}), **CREDENTIAL["headers"]}
            case.cookies = {**(case.cookies or {}), **CREDENTIAL["cookies"]}

    return loaded


owner_schema = _schema_with_the_current_credential()
agent_schema = _schema_with_the_current_credential()


def _refusals_the_schema_cannot_express(ctx, response, case):
    """``positive_data_acceptance``, except for a service's refusal of a well-formed request — ``400 {"errors":
    [...]}`` from ``portal.api_errors``: a rule about the data's meaning (a name taken, an unknown username, a
    reason the rule requires) that no schema can state. A serializer's field error (``{"<field>": [...]}``) on
    schema-valid input still fails: then the schema and the serializer disagree."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        body = response.json() if response.status_code == 400 else None
        if isinstance(body, dict) and set(body) == {"errors"}:
            return None
        raise


CHECKS = [_refusals_the_schema_cannot_express if check is positive_data_acceptance else check
          for check in schemathesis.checks.CHECKS.get_all()]


@contextmanager
def _connection_kept_across_requests():
    """The WSGI handler, called directly, closes "old" connections as each request starts and ends, and inside the
    test's transaction (autocommit off) PostgreSQL's connection counts as old: keep it, as Django's test client
    does for the requests it makes (and reconnects after each, so this wraps every call)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def owner_session(approval_world):
    """A signed-in owner of ``alpha`` (which holds an agent, an approval, a package, an assignment and a review)."""
    client = Client()
    client.force_login(approval_world.owner)
    CREDENTIAL.update(
        cookies={django_settings.SESSION_COOKIE_NAME: client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                 django_settings.CSRF_COOKIE_NAME: CSRF_SECRET},
        headers={"X-CSRFToken": CSRF_SECRET})
    yield WSGIHandler()  # built after the test settings apply (its middleware reads them once)
    CREDENTIAL.clear()


@pytest.fixture
def agent_token(approval_world):
    """An agent identity's own bearer token with every portal read scope."""
    from agents import registry

    w = approval_world
    reader = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint("FuzzReader", permissions=API_SCOPES), "fuzz-reader", sponsors=[w.owner], owners=[w.owner]))
    response = Client().post("/oauth/token/", {"grant_type": "client_credentials", "client_id": reader.client_id,
                                               "client_secret": reader.client_secret, "scope": " ".join(API_SCOPES)})
    assert response.status_code == 200, response.content
    CREDENTIAL.update(cookies={}, headers={"Authorization": f"Bearer {response.json()['access_token']}"})
    yield WSGIHandler()
    CREDENTIAL.clear()


def _call_and_validate(case, app) -> None:
    case.operation.schema.app = app  # the checks' own probes (ignored_auth) go to the same application
    with _connection_kept_across_requests(), transaction.atomic():  # a savepoint: gone before the next example
        case.call_and_validate(app=app, checks=CHECKS)
        transaction.set_rollback(True)


@pytest.mark.django_db
@owner_schema.parametrize()
@FUZZ
def test_the_api_matches_its_schema_for_a_signed_in_owner(case, owner_session):
    _call_and_validate(case, owner_session)


@pytest.mark.django_db
@agent_schema.parametrize()
@FUZZ
def test_the_api_matches_its_schema_for_an_agent_token(case, agent_token):
    _call_and_validate(case, agent_token)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/workspaces/{slug}/", "/api/v1/workspaces/{slug}/members/",
                                  "/api/v1/workspaces/{slug}/effective-owners/"])
def test_a_workspace_the_owner_sees_matches_the_schema(path, owner_session):
    """Generated slugs never name a real workspace; these answers are checked with one that exists."""
    case = owner_schema[path]["GET"].Case(path_parameters={"slug": "alpha"}, headers=dict(CREDENTIAL["headers"]),
                                          cookies=dict(CREDENTIAL["cookies"]))
    case.operation.schema.app = owner_session
    with _connection_kept_across_requests():
        response = case.call_and_validate(app=owner_session, checks=CHECKS)
    assert response.status_code == 200
