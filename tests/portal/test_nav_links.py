"""Navigation shows each person only what they may use: every link of the header and of the governance menu answers
200 for the person it is shown to, and the dashboard says who may see the pages left out."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.conftest import PERSONAS
from tests.factories import UserFactory, grant_role

pytestmark = pytest.mark.django_db
MENU_PAGES = ("/", "/governance/approvals/", "/agents/", "/workspaces/")


class _MenuLinks(HTMLParser):
    """The hrefs inside ``<nav>`` elements and ``<ul aria-label="Governance">`` (the header and governance menus)."""

    def __init__(self):
        super().__init__()
        self.depth, self.stack, self.links = 0, [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        menu = tag == "nav" or (tag == "ul" and attrs.get("aria-label") == "Governance")
        self.stack.append(menu)
        self.depth += menu
        if tag == "a" and self.depth and attrs.get("href", "").startswith("/"):
            self.links.add(attrs["href"])

    def handle_endtag(self, tag):
        if self.stack:
            self.depth -= self.stack.pop()


def _menu_links(client) -> set[str]:
    links = set()
    for url in MENU_PAGES:
        response = client.get(url)
        if response.status_code == 200:
            parser = _MenuLinks()
            parser.feed(response.content.decode())
            links |= parser.links
    return links


@pytest.mark.parametrize("persona", [p for p in PERSONAS if p != "anonymous"] + ["security_reader", "nobody"])
def test_every_menu_link_shown_to_a_persona_answers_200(client, approval_world, persona):
    w = approval_world
    if persona == "security_reader":
        user = UserFactory(username="reader")
        grant_role(user, "security-reader")
    elif persona == "nobody":
        user = UserFactory(username="nobody")
    else:
        user = w.persona(persona)
    client.force_login(user)
    links = _menu_links(client)
    assert "/governance/approvals/" in links and "/agents/" in links
    refused = {url: client.get(url).status_code for url in sorted(links)}
    refused = {url: code for url, code in refused.items() if code != 200}
    assert not refused, f"{persona} is shown links that do not open: {refused}"


def test_a_contributor_is_not_shown_owner_pages_and_the_dashboard_says_who_sees_them(client, approval_world):
    w = approval_world
    client.force_login(w.contributor)
    links = _menu_links(client)
    for hidden in ("/governance/policies/", "/governance/sign-ins/", "/governance/risk/"):
        assert not any(link.startswith(hidden) for link in links), hidden
    page = client.get("/").content.decode()
    assert "Who can see what: Conditional access is open to workspace owners" in page
    assert "Sign-ins is open to workspace owners and sign-in readers" in page

    client.force_login(w.owner)
    links = _menu_links(client)
    assert {"/governance/policies/", "/governance/sign-ins/", "/governance/risk/"} <= links


@pytest.mark.parametrize("persona", ["contributor", "security_reader", "nobody"])
def test_every_dashboard_link_opens_for_the_person_it_is_shown_to(client, approval_world, persona):
    """The dashboard's cards link to the lists behind their pictures; a Security Reader in no workspace was sent from
    'Access ending' to the access packages page, which is a workspace's (404)."""
    if persona == "security_reader":
        user = UserFactory(username="reader")
        grant_role(user, "security-reader")
    elif persona == "nobody":
        user = UserFactory(username="nobody")
    else:
        user = approval_world.persona(persona)
    client.force_login(user)
    page = client.get("/")
    assert page.status_code == 200
    parser = _AllLinks()
    parser.feed(page.content.decode())
    closed = {href: client.get(href).status_code for href in parser.links
              if not href.startswith(("/accounts/logout", "/api/")) and not href.endswith((".csv", ".json"))}
    assert not {href: status for href, status in closed.items() if status in (403, 404)}


class _AllLinks(HTMLParser):
    """Every same-site href inside ``<main>``."""

    def __init__(self):
        super().__init__()
        self.inside, self.links = False, set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.inside = self.inside or tag == "main"
        if tag == "a" and self.inside and attrs.get("href", "").startswith("/"):
            self.links.add(attrs["href"].split("#")[0])
