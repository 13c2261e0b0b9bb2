"""Every URL × every persona, with real ids and with ids that do not exist: no answer is a server error.

The permission matrix (``tests/permission_matrix.py``) states what each persona should get; this walk is its
complement. It takes every pattern of the root URLconf, fills its path parameters with the ids the matrix's own cases
use (so a pattern the matrix leaves out cannot be walked, and fails here), and GETs and POSTs (an empty form) each
as every persona of the matrix plus three it leaves out: a Security Reader in no workspace, a user with no role and
no workspace, and an agent's own bearer token on the API. Any 5xx fails, naming every (persona, method, url).
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import pytest
from django.core.signals import got_request_exception
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, resolve, reverse

from tests.conftest import PERSONAS
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint
from tests.permission_matrix import CASES, EXEMPT_NAMESPACES

WALK_PERSONAS = (*PERSONAS, "security_reader", "nobody", "agent_token")
MISSING_INT, MISSING_STR = "987654321", "no-such-thing"
API_SCOPES = ("Portal.Agents.Read.All", "Portal.Audit.Read.All", "Portal.Governance.Read.All", "Policy.Read.All")


def _patterns(patterns, prefix=(), namespace=None):
    """(namespace, name, every path parameter of the pattern and its parents, converter or regex per parameter)."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern.url_patterns, (*prefix, pattern), pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            params: dict[str, str] = {}
            for part in (*prefix, pattern):
                converters = getattr(part.pattern, "converters", {})
                for key in part.pattern.regex.groupindex:
                    converter = converters.get(key)
                    params[key] = type(converter).__name__ if converter else "regex"
            yield namespace, pattern.name, params


def _walked_patterns():
    return [(ns, name, params) for ns, name, params in _patterns(get_resolver().url_patterns)
            if ns not in EXEMPT_NAMESPACES]


def _real_kwargs(world) -> dict[str, list[dict]]:
    """The path parameters of every matrix case, by URL name (building each case's objects on the way)."""
    found: dict[str, list[dict]] = {}
    for case in CASES:
        match = resolve(urlsplit(case.url(world)).path)
        kwargs = {k: str(v) for k, v in match.kwargs.items()}
        if kwargs not in found.setdefault(match.url_name, []):
            found[match.url_name].append(kwargs)
    return found


def _missing_kwargs(params: dict[str, str], real: dict) -> list[dict]:
    """The same URL with each object id (or name) replaced by one that does not exist."""
    if not set(params) - {"format"}:
        return []
    bad = {k: real[k] if k == "format" else MISSING_INT if conv == "IntConverter" else MISSING_STR
           for k, conv in params.items()}
    variants = [bad]
    if any(conv == "regex" and k != "format" for k, conv in params.items()):  # the API's lookups take any text
        variants.append({k: real[k] if k == "format" else MISSING_INT for k in params})
    return variants


def _urls(world) -> tuple[list[str], list[str], list[str]]:
    """(real URLs — the matrix's own with their query strings too —, URLs with missing ids, patterns no matrix case
    fills)."""
    real_kwargs = _real_kwargs(world)
    real, missing, unfilled = [case.url(world) for case in CASES], [], []
    for namespace, name, params in _walked_patterns():
        if not name:
            unfilled.append(f"unnamed pattern in {namespace or 'the root URLconf'}")
            continue
        full = f"{namespace}:{name}" if namespace else name
        known = real_kwargs.get(name)
        if known is None:
            unfilled.append(full)
            continue
        for kwargs in known:
            if set(params) - {"format"} != set(kwargs):
                continue
            kwargs = {**kwargs, "format": "json"} if "format" in params else kwargs
            real.append(reverse(full, kwargs=kwargs))
            for bad in _missing_kwargs(params, kwargs):
                try:
                    missing.append(reverse(full, kwargs=bad))
                except NoReverseMatch:  # the pattern itself refuses such an id: the resolver answers 404
                    pass
    return sorted(set(real)), sorted(set(missing)), sorted(set(unfilled))


@pytest.fixture
def walk_world(approval_world):
    from agents import registry

    w = approval_world
    w.security_reader = UserFactory(username="reader")
    grant_role(w.security_reader, "security-reader")
    w.nobody = UserFactory(username="nobody")
    blueprint = make_blueprint("ApiReader", permissions=API_SCOPES)
    w.api_reader = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint, "api-reader", sponsors=[w.owner], owners=[w.owner_b]))
    return w


def _walk(client, w, persona: str, urls: list[str]) -> list[str]:
    """GET then POST each URL as ``persona``; the requests that ended in a 5xx, with the exception raised."""
    headers = {}
    extra = {"security_reader": w.security_reader, "nobody": w.nobody, "agent_token": None}
    user = extra[persona] if persona in extra else w.persona(persona)
    if persona == "agent_token":
        response = client.post("/oauth/token/", {"grant_type": "client_credentials",
                                                 "client_id": w.api_reader.client_id,
                                                 "client_secret": w.api_reader.client_secret})
        assert response.status_code == 200, response.content
        headers = {"HTTP_AUTHORIZATION": f"Bearer {response.json()['access_token']}"}
        urls = [url for url in urls if url.startswith("/api/")]
    errors: list[BaseException] = []

    def record(sender, request=None, **kwargs):
        errors.append(sys.exc_info()[1])

    def login():
        if user is not None:
            client.force_login(user)

    failures = []
    client.raise_request_exception = False
    got_request_exception.connect(record)
    try:
        login()
        for method in ("GET", "POST"):
            for url in urls:
                errors.clear()
                response = client.generic(method, url, data="", content_type="application/x-www-form-urlencoded",
                                          **headers)
                if response.status_code >= 500:
                    raised = f" {errors[-1]!r}" if errors else ""
                    failures.append(f"{persona} {method} {url} -> {response.status_code}{raised}")
                if method == "POST":
                    login()  # the walk goes on as the same person (one of these URLs signs out)
    finally:
        got_request_exception.disconnect(record)
    return failures


def test_every_url_pattern_has_a_matrix_case_to_walk(walk_world):
    """A URL the permission matrix leaves out has no real ids to walk with: add its cases to the matrix."""
    _real, _missing, unfilled = _urls(walk_world)
    assert not unfilled, f"URL patterns with no permission-matrix case: {unfilled}"


@pytest.mark.parametrize("persona", WALK_PERSONAS)
def test_no_url_answers_any_persona_with_a_server_error(client, walk_world, persona):
    real, missing, _unfilled = _urls(walk_world)
    failures = _walk(client, walk_world, persona, real + missing)
    assert not failures, "server errors:\n" + "\n".join(failures)
