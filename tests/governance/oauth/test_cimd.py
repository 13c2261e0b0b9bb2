"""Client ID metadata documents (R27; docs/oauth.md, "Client registration"), fetched from a real HTTP server on
127.0.0.1: a client whose id is a URL is registered from the document at that URL, under the same policy as
RFC 7591, and the fetch refuses what it must (big bodies, other hosts, redirects, plain http, a wrong client_id)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from agents.choices import AgentKind, AgentStatus, IdentityType
from governance.oauth import cimd, clients
from governance.oauth.choices import ClientApproval, ClientSource
from governance.oauth.models import OAuthClient

pytestmark = pytest.mark.django_db


class DocumentServer:
    """A tiny HTTP server: ``routes[path] = (status, headers, body)``; ``hits`` lists the paths asked for."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                server.hits.append(self.path)
                status, headers, body = server.routes.get(self.path, (404, {}, b"{}"))
                self.send_response(status)
                for name, value in headers.items():
                    if not name.startswith("_"):
                        self.send_header(name, value)
                if "Content-Length" not in headers and not headers.get("_no_length"):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def document(self, path: str, *, client_id: str | None = None, headers: dict | None = None, **fields) -> str:
        url = self.url(path)
        body = {"client_id": url if client_id is None else client_id, "client_name": "Docs Client",
                "redirect_uris": ["http://127.0.0.1:8765/callback"], "token_endpoint_auth_method": "none",
                "application_type": "native", **fields}
        self.routes[path] = (200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode())
        return url


@pytest.fixture
def server():
    running = DocumentServer()
    running.thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


@pytest.fixture
def policy(world, settings):
    settings.OAUTH_REGISTRATION_WORKSPACE = "alpha"
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    settings.OAUTH_CIMD_ALLOWED_HOSTS = []
    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    return world


def _refused(url: str, error: str = "") -> clients.ClientError:
    with pytest.raises(clients.ClientError) as caught:
        clients.resolve_client(url)
    if error:
        assert caught.value.error == error, caught.value
    assert not OAuthClient.objects.filter(client_id=url).exists()
    return caught.value


def test_r27_cimd_client_is_registered_from_its_document(policy, server):
    url = server.document("/clients/docs.json", headers={"Cache-Control": "public, max-age=120"})
    client = clients.resolve_client(url)
    assert client.client_id == url and client.source == ClientSource.METADATA_DOCUMENT
    assert client.client_name == "Docs Client" and client.redirect_uris == ["http://127.0.0.1:8765/callback"]
    assert client.metadata["_cache_seconds"] == 120  # the document's max-age, within bounds
    agent = client.agent
    assert agent.kind == AgentKind.CLIENT_APPLICATION and agent.identity_type == IdentityType.AGENT_IDENTITY
    assert len(agent.identity.client_id) <= 64 and agent.identity.client_id != url  # a short id of its own
    assert client.approval == ClientApproval.APPROVED and agent.status == AgentStatus.ACTIVE  # open + loopback
    assert clients.may_get_tokens(client) == ""
    assert clients.redirect_uri_matches(client, "http://127.0.0.1:50123/callback")
    # Cached: asking again does not fetch again.
    assert clients.resolve_client(url).pk == client.pk
    assert server.hits == ["/clients/docs.json"]
    # Once the cache time has passed the document is fetched again and the client refreshed.
    server.document("/clients/docs.json", client_name="Docs Client 2")
    OAuthClient.objects.filter(pk=client.pk).update(metadata_fetched_at=timezone.now() - timedelta(seconds=121))
    refreshed = clients.resolve_client(url)
    assert refreshed.pk == client.pk and refreshed.client_name == "Docs Client 2"
    assert len(server.hits) == 2


def test_r27_cimd_registration_policy_applies(policy, server, settings):
    settings.OAUTH_DYNAMIC_REGISTRATION = "approval"
    pending = clients.resolve_client(server.document("/a.json"))
    assert pending.approval == ClientApproval.PENDING and pending.agent.status == AgentStatus.PENDING_APPROVAL
    assert clients.may_get_tokens(pending)
    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    web = clients.resolve_client(server.document("/web.json", redirect_uris=["https://app.example.test/cb"],
                                                 application_type="web"))
    assert web.approval == ClientApproval.PENDING  # open registration approves loopback redirects only
    settings.OAUTH_DYNAMIC_REGISTRATION = "off"
    _refused(server.document("/off.json"), "access_denied")
    secret = server.document("/secret.json", token_endpoint_auth_method="client_secret_basic")
    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    _refused(secret, "invalid_client_metadata")  # a public document cannot come with a shared secret


def test_r27_cimd_document_too_big_is_refused(policy, server):
    declared = server.document("/big.json", padding="x" * (6 * 1024))
    error = _refused(declared, "invalid_client")
    assert "5 KiB" in error.description
    # Without a Content-Length the body is read as a stream and cut off past the limit all the same.
    url = server.url("/big-streamed.json")
    body = json.dumps({"client_id": url, "redirect_uris": ["http://127.0.0.1:1/cb"], "padding": "y" * 8000})
    server.routes["/big-streamed.json"] = (200, {"Content-Type": "application/json", "Connection": "close",
                                                 "_no_length": "1"}, body.encode())
    assert "5 KiB" in _refused(url, "invalid_client").description


def test_r27_cimd_wrong_host_is_refused(policy, server, settings):
    settings.OAUTH_CIMD_ALLOWED_HOSTS = ["clients.example.com"]
    _refused(server.document("/elsewhere.json"), "invalid_client")
    assert server.hits == []  # refused before any request left the portal
    settings.OAUTH_CIMD_ALLOWED_HOSTS = ["127.0.0.1"]
    assert clients.resolve_client(server.document("/allowed.json")) is not None


def test_r27_cimd_mismatching_client_id_is_refused(policy, server):
    url = server.document("/mismatch.json", client_id="https://evil.example/client.json")
    assert "client_id" in _refused(url, "invalid_client_metadata").description
    server.routes["/list.json"] = (200, {"Content-Type": "application/json"}, b"[1, 2]")
    _refused(server.url("/list.json"), "invalid_client_metadata")
    server.routes["/text.json"] = (200, {"Content-Type": "text/plain"}, b"not json")
    _refused(server.url("/text.json"), "invalid_client_metadata")
    _refused(server.document("/fragment.json", redirect_uris=["https://app.example.test/cb#frag"]),
             "invalid_redirect_uri")


def test_r27_cimd_redirect_is_not_followed(policy, server):
    target = server.document("/target.json")
    server.routes["/moved.json"] = (302, {"Location": target}, b"")
    _refused(server.url("/moved.json"), "invalid_client")
    assert server.hits == ["/moved.json"]
    server.routes["/gone.json"] = (404, {}, b"{}")
    _refused(server.url("/gone.json"), "invalid_client")


def test_r27_cimd_http_refused_unless_loopback_allowed(policy, server, settings):
    url = server.document("/plain.json")
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = False
    _refused(url, "invalid_client")
    assert server.hits == []
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    with pytest.raises(clients.ClientError):
        cimd.check_url("http://clients.example.com/app.json")  # plain http never for other hosts
    for bad in ("ftp://127.0.0.1/x.json", "https://user:pw@example.com/app.json", "https://example.com/",
                "https://example.com/app.json#frag", "https://" + "a" * 300 + ".com/x"):
        with pytest.raises(clients.ClientError):
            cimd.check_url(bad)
    for internal in ("https://10.0.0.5/app.json", "https://169.254.169.254/latest/app.json",
                     "https://[fd00::1]/app.json"):
        with pytest.raises(clients.ClientError):
            cimd.check_url(internal)  # no fetch into the portal's own network
    assert clients.resolve_client(url).source == ClientSource.METADATA_DOCUMENT
    # An unknown id that is not a URL is simply no client.
    assert clients.resolve_client("no-such-client") is None
    assert clients.resolve_client("") is None


def test_r27_cimd_cache_time_is_bounded():
    assert cimd.cache_seconds("") == cimd.DEFAULT_CACHE_SECONDS
    assert cimd.cache_seconds("max-age=5") == cimd.MIN_CACHE_SECONDS
    assert cimd.cache_seconds("public, max-age=999999999") == cimd.MAX_CACHE_SECONDS
    assert cimd.cache_seconds("no-store") == cimd.MIN_CACHE_SECONDS
