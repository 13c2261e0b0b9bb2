"""A real MCP server and a real MCP client against the running portal (docs/oauth.md, "Connecting an MCP client and
an MCP server").

The portal runs in pytest-django's ``live_server`` with ``PORTAL_BASE_URL`` set to its URL, open dynamic registration
and plain http on loopback. The MCP server is FastMCP (its own thread, uvicorn on a free loopback port) with one tool,
verifying tokens with fastmcp's ``JWTVerifier`` against the portal's JWKS and announcing the portal through
``RemoteAuthProvider`` (RFC 9728 metadata and the 401 challenge). The MCP client is the ``mcp`` SDK's
``OAuthClientProvider``, given nothing but the MCP server's URL: it discovers the portal from the 401, registers
itself (RFC 7591), sends the person through sign-in and consent (``Person``: an HTTP client that signs in at
``/accounts/login/`` and approves the consent form, as the person's browser would), exchanges the code with PKCE and
calls the tool. Everything runs on loopback; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import pytest
import uvicorn
from django.utils import timezone
from fastmcp import FastMCP
from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_access_token
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from governance.signin import tokens
from portal import directory
from portal.models import DirectoryRole, Permission
from tests.factories import UserFactory, make_workspace

SCOPES = ["notes.read"]
PASSWORD = "correct horse battery staple"
TIMEOUT = 60


# --- the MCP server (the README's example) ----------------------------------------------------------------------
def notes_server(portal_url: str, mcp_base_url: str) -> FastMCP:
    """An MCP server whose tokens come from the portal: the audience is its own URL (``<base>/mcp``)."""
    verifier = JWTVerifier(jwks_uri=f"{portal_url}/oauth/jwks/", issuer=portal_url, audience=f"{mcp_base_url}/mcp",
                           algorithm="ES256", required_scopes=SCOPES)
    auth = RemoteAuthProvider(token_verifier=verifier, authorization_servers=[portal_url], base_url=mcp_base_url,
                              scopes_supported=SCOPES, resource_name="Notes")
    mcp = FastMCP("Notes", auth=auth)

    @mcp.tool
    def whoami() -> dict:
        """Who called, as the portal's token says."""
        token = get_access_token()
        return {"sub": token.claims["sub"], "client_id": token.claims["client_id"], "aud": token.claims["aud"],
                "scopes": sorted(token.scopes)}

    return mcp


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """An ASGI app served by uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, build):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = build(self.base_url).http_app(path="/mcp")
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="mcp-server", daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the MCP server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(TIMEOUT)


# --- the person's browser ---------------------------------------------------------------------------------------
class _Forms(HTMLParser):
    """Every form of a page: its action and its inputs' names and values."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "fields": {}, "buttons": set()})
        elif tag == "input" and self.forms and attrs.get("name") and attrs.get("type") != "submit":
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""
        elif tag == "button" and self.forms and attrs.get("name"):
            self.forms[-1]["buttons"].add((attrs["name"], attrs.get("value") or ""))


def _forms(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class Person:
    """What the person does in a browser: open the authorization URL, sign in, approve the consent form. The redirect
    back to the client (its loopback ``redirect_uri``) is not followed: its query is what the client's callback
    receives."""

    def __init__(self, portal_url: str, username: str, password: str):
        self.portal_url, self.username, self.password = portal_url, username, password
        self.cookies = httpx2.Cookies()  # the browser's, kept between visits
        self.browser: httpx2.AsyncClient | None = None
        self.redirected_to: asyncio.Future | None = None
        self.consent_pages = 0

    async def _follow(self, response: httpx2.Response) -> httpx2.Response:
        while response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if not location.startswith(self.portal_url + "/"):
                self.redirected_to.set_result(location)  # back to the client: the browser would leave the portal
                return response
            response = await self.browser.get(location)
        return response

    async def open(self, authorization_url: str) -> None:
        """The client's redirect handler: the person's browser opens the authorization URL."""
        self.redirected_to = asyncio.get_running_loop().create_future()
        async with httpx2.AsyncClient(follow_redirects=False, timeout=TIMEOUT, cookies=self.cookies) as browser:
            self.browser = browser
            await self._visit(authorization_url)
            self.cookies = browser.cookies

    async def _visit(self, authorization_url: str) -> None:
        page = await self._follow(await self.browser.get(authorization_url))
        if self.redirected_to.done():
            return  # consent given before: straight back to the client
        if urlsplit(str(page.url)).path == "/accounts/login/":
            [form] = [f for f in _forms(page.text) if "password" in f["fields"]]
            fields = {**form["fields"], "username": self.username, "password": self.password}
            page = await self._follow(await self.browser.post(urljoin(str(page.url), form["action"]), data=fields,
                                                              headers={"Referer": str(page.url)}))
            if self.redirected_to.done():
                return
        assert page.status_code == 200, (page.status_code, page.text[:500])
        [form] = [f for f in _forms(page.text) if ("decision", "approve") in f["buttons"]]
        self.consent_pages += 1
        await self._follow(await self.browser.post(urljoin(str(page.url), form["action"]),
                                                   data={**form["fields"], "decision": "approve"},
                                                   headers={"Referer": str(page.url)}))
        assert self.redirected_to.done(), "the consent form did not send the browser back to the client"

    async def callback(self) -> AuthorizationCodeResult:
        """The client's callback handler: the code, state and issuer the portal sent the browser back with."""
        query = parse_qs(urlsplit(await self.redirected_to).query)
        assert "error" not in query, query
        return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0],
                                       iss=query.get("iss", [None])[0])


class MemoryStorage(TokenStorage):
    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


# --- the MCP client (the README's example) ----------------------------------------------------------------------
async def call_tool(mcp_url: str, person: Person, storage: TokenStorage, name: str, arguments: dict):
    """Connect to the MCP server at ``mcp_url`` — the only address the client is given — and call one tool."""
    oauth = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(client_name="Notes desktop client",
                                            redirect_uris=[f"http://127.0.0.1:{_free_port()}/callback"],
                                            grant_types=["authorization_code", "refresh_token"],
                                            response_types=["code"], token_endpoint_auth_method="none"),
        storage=storage, redirect_handler=person.open, callback_handler=person.callback)
    async with httpx2.AsyncClient(auth=oauth, timeout=TIMEOUT) as http, \
            streamable_http_client(mcp_url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        return await session.call_tool(name, arguments)


# --- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture
def portal(live_server, settings):
    """The running portal as an MCP deployment sees it: its URL is its issuer; loopback clients register openly."""
    settings.PORTAL_BASE_URL = live_server.url
    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # plain http, as under `make run`
    # Dynamically registered clients become agents of the registration workspace (the oldest one by default).
    make_workspace("mcp-clients", owners=[UserFactory(username="apps-owner"), UserFactory(username="apps-owner2")])
    return live_server.url


def _register(identifier: str, name: str):
    server, _secret = tokens.resource_server_create(actor=None, name=name, identifier=identifier, scopes=SCOPES)
    return server


def _person_holding(scopes: list[str], username: str = "mcp-user"):
    """A person whose directory role holds ``scopes`` (the permissions the resource server's scopes became)."""
    person = UserFactory(username=username)
    person.set_password(PASSWORD)
    person.save()
    role = DirectoryRole.objects.create(key="notes-readers", name="Notes readers")
    role.permissions.set(Permission.objects.filter(name__in=scopes))
    directory.role_assign(actor=None, user=person, role=role)
    return person


def _run(coroutine):
    """Run the MCP client's coroutine on an event loop of its own thread: this thread may already run a loop (the
    browser tests' Playwright keeps one for the session), and asyncio.run cannot nest."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# --- tests ------------------------------------------------------------------------------------------------------
def test_r27_a_real_mcp_client_discovers_registers_consents_and_calls_a_tool(portal):
    with Served(lambda base_url: notes_server(portal, base_url)) as mcp_server:
        mcp_url = f"{mcp_server.base_url}/mcp"
        _register(mcp_url, "Notes MCP server")
        user = _person_holding(SCOPES)
        person = Person(portal, user.username, PASSWORD)
        storage = MemoryStorage()

        result = _run(asyncio.wait_for(call_tool(mcp_url, person, storage, "whoami", {}), TIMEOUT))

        assert not result.is_error, result
        called = result.structured_content
        assert called["sub"] == str(user.oauth_subject) and called["sub"] != user.username  # the person's opaque sub
        assert called["aud"] == mcp_url and called["scopes"] == SCOPES
        assert called["client_id"] == storage.client_info.client_id  # the client it registered itself
        assert person.consent_pages == 1
        assert storage.tokens.refresh_token  # the client can stay connected without the person

        # A second connection reuses the stored token: no new sign-in or consent.
        again = _run(asyncio.wait_for(call_tool(mcp_url, person, storage, "whoami", {}), TIMEOUT))
        assert again.structured_content == called and person.consent_pages == 1


def test_r26_the_mcp_server_refuses_a_token_for_another_audience(portal):
    with Served(lambda base_url: notes_server(portal, base_url)) as mcp_server:
        mcp_url = f"{mcp_server.base_url}/mcp"
        _register(mcp_url, "Notes MCP server")
        other = "http://127.0.0.1:9/other-mcp"
        _register(other, "Another MCP server")
        user = _person_holding(SCOPES)
        now = timezone.now()

        def token_for(audience: str) -> str:
            value, _hash = tokens.mint(at=now, expires_at=now + timedelta(minutes=5), client_id="interop-client",
                                       audience=audience, scopes=SCOPES, subject=str(user.oauth_subject))
            return value

        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                 "clientInfo": {"name": "probe", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

        def status_with(token: str | None) -> httpx2.Response:
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx2.post(mcp_url, json=initialize, headers={**headers, **auth}, timeout=TIMEOUT)

        unauthenticated = status_with(None)
        assert unauthenticated.status_code == 401
        assert "resource_metadata=" in unauthenticated.headers["www-authenticate"]
        assert status_with(token_for(portal)).status_code == 401  # a token for the portal API
        assert status_with(token_for(other)).status_code == 401  # a token for another resource server
        assert status_with(token_for(mcp_url)).status_code == 200  # the same token for this server is accepted
