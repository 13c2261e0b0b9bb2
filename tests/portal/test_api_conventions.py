"""The REST API's conventions: anonymous calls are 401 with a Bearer challenge, every error under ``/api/`` is JSON
(unknown URL, wrong method, a crash), a malformed id or query parameter is a clear 4xx, never a server error."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def _json(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), (response.status_code, response["Content-Type"])
    return response.json()


def test_an_anonymous_api_call_is_401_with_a_bearer_challenge(client, world):
    response = client.get("/api/v1/agents/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Bearer realm="')
    assert _json(response)["detail"]


def test_an_unknown_api_url_is_a_json_404_and_an_unknown_page_stays_html(client, world):
    for user in (None, world.owner):
        if user is not None:
            client.force_login(user)
        response = client.get("/api/v1/nope/")
        assert response.status_code == 404
        assert "/api/v1/nope/" in _json(response)["detail"]

    page = client.get("/nope/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_a_method_an_endpoint_does_not_take_is_a_json_405(client, world):
    client.force_login(world.owner)

    response = client.delete("/api/v1/blueprints/")

    assert response.status_code == 405
    assert "DELETE" in _json(response)["detail"]


def test_an_api_view_that_crashes_answers_json_500(world, monkeypatch):
    from portal import rbac

    def broken(user):
        raise RuntimeError("the selector broke")

    monkeypatch.setattr(rbac, "workspaces_visible_to", broken)
    client = Client(raise_request_exception=False)
    client.force_login(world.owner)

    response = client.get("/api/v1/workspaces/")

    assert response.status_code == 500
    body = _json(response)
    assert body["detail"] and "the selector broke" not in response.content.decode()  # no internals leak


BAD_ID_URLS = [
    "/api/v1/agents/abc/", "/api/v1/agents/abc/disable/", "/api/v1/agents/abc/enable/", "/api/v1/agents/abc/retire/",
    "/api/v1/agents/1.0/", "/api/v1/blueprints/abc/", "/api/v1/audit-events/abc/", "/api/v1/approval-requests/abc/",
    "/api/v1/approval-requests/abc/approve/", "/api/v1/access-packages/abc/", "/api/v1/assignments/abc/",
    "/api/v1/assignments/abc/revoke/", "/api/v1/reviews/abc/", "/api/v1/reviews/abc/decisions/",
    "/api/v1/policies/abc/", "/api/v1/sessions/abc/", "/api/v1/runs/abc/", "/api/v1/runs/abc/cancel/",
    "/api/v1/runs/abc/outputs/", "/api/v1/workspaces/no%20such/",
]


@pytest.mark.parametrize("url", BAD_ID_URLS)
def test_an_id_that_is_not_a_number_is_a_json_404(world, url):
    client = Client(raise_request_exception=False)
    client.force_login(world.owner)
    method = "post" if url.endswith(("disable/", "enable/", "retire/", "approve/", "revoke/", "cancel/")) else "get"

    response = getattr(client, method)(url)

    assert response.status_code == 404, (url, response.status_code)
    assert _json(response)["detail"]


def test_a_deeply_nested_json_body_is_a_400_not_a_crash(world):
    client = Client(raise_request_exception=False)
    client.force_login(world.owner)
    depth = 100_000

    response = client.post("/api/v1/agents/", "[" * depth + "]" * depth, content_type="application/json")

    assert response.status_code == 400
    assert "nested too deeply" in _json(response)["detail"]


@pytest.mark.parametrize("url", ["/api/v1/agents/?page=null", "/api/v1/agents/?page=0", "/api/v1/agents/?page=1.5",
                                 "/api/v1/runs/?session=1.0", "/api/v1/runs/?agent=x"])
def test_a_malformed_query_parameter_is_a_400_that_names_it(client, world, url):
    client.force_login(world.owner)

    response = client.get(url)

    assert response.status_code == 400, (url, response.status_code)
    name = url.split("?")[1].split("=")[0]
    assert f"'{name}'" in str(_json(response)["errors"][0])


def test_a_page_past_the_end_is_still_a_json_404(client, world):
    client.force_login(world.owner)

    response = client.get("/api/v1/agents/?page=99")

    assert response.status_code == 404 and _json(response)["detail"]
