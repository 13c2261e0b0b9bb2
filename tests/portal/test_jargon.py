"""Pages speak the words of their users: every page, rendered as each persona, is scanned (its visible text: tags,
scripts, styles and attribute values removed) for rule codes ("(R3)", "R7:"), raw identifiers (the snake_case values
of the models' choices, manifest field paths such as ``AgentDefinitions[].ExecutorUrl``, input names such as
``ExpiringWithinDays``) and Python dict reprs. A failure names the page, the persona and the offending text."""

from __future__ import annotations

import importlib
import re
from html.parser import HTMLParser

import pytest
from django.db import models

from tests.portal.test_url_walk import _urls, walk_world  # noqa: F401  (the walk's world and its URLs)

pytestmark = pytest.mark.django_db

CHOICES_MODULES = ("portal.choices", "agents.choices", "governance.access.choices", "governance.approvals.choices",
                   "governance.reviews.choices", "governance.runs.choices", "governance.risk.choices",
                   "governance.signin.choices", "governance.conditional_access.choices", "governance.signing.choices")
#: Identifiers that are never words: finding kinds and states named in the report, and manifest names.
KNOWN_RAW = ("permission_unused", "not_applicable", "report_only", "ExpiringWithinDays", "single_sponsor",
             "credential_expired", "credential_expiring", "agent_unused", "no_sponsor", "add_sponsor",
             "remove_grant", "add_federated_credential")
#: OAuth's own words (grant types, client authentication methods): the protocol's names, which its users know.
PROTOCOL_WORDS = {"authorization_code", "client_credentials", "refresh_token", "client_secret_basic",
                  "client_secret_post"}
#: The audit trail's "Change" column is reworded separately (its layout and wording have their own tests).
SCANNED_ELSEWHERE = ("/audit/",)
PATTERNS = [
    ("a rule code", re.compile(r"\(R\d+\)")),
    ("a rule code", re.compile(r"\bR\d+:")),
    ("a manifest field path", re.compile(r"\b[A-Z]\w+\[\]\.\w+")),
    ("a Python dict", re.compile(r"\{'[^']*': ")),
    ("a setting's name", re.compile(r"\b[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+\b")),
]


def _raw_identifiers() -> set[str]:
    """The snake_case values of the portal's choices (OAuth's protocol values are the protocol's own words)."""
    values = set(KNOWN_RAW)
    for name in CHOICES_MODULES:
        module = importlib.import_module(name)
        for attr in vars(module).values():
            if isinstance(attr, type) and issubclass(attr, models.Choices) and attr.__module__ == module.__name__:
                values |= {str(v) for v in attr.values if "_" in str(v)}
    return values - PROTOCOL_WORDS


class _Visible(HTMLParser):
    """The text a person reads: no tags, no attribute values, nothing inside script, style or template."""

    # <pre> and <code> hold literal input a person types or copies (a CSV sample, a client's metadata document)
    HIDDEN = {"script", "style", "template", "title", "pre", "code"}

    def __init__(self):
        super().__init__()
        self.hidden, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in self.HIDDEN

    def handle_endtag(self, tag):
        self.hidden -= tag in self.HIDDEN and self.hidden > 0

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def jargon_in(text: str, identifiers: set[str]) -> list[str]:
    found = []
    for what, pattern in PATTERNS:
        found += [f"{what}: …{text[max(0, m.start() - 40):m.end() + 40]}…" for m in pattern.finditer(text)]
    identifier = re.compile(r"(?<![\w.@/-])(" + "|".join(sorted(map(re.escape, identifiers))) + r")(?![\w.@/-])")
    found += [f"an identifier: …{text[max(0, m.start() - 40):m.end() + 40]}…" for m in identifier.finditer(text)]
    return found


def test_the_scan_finds_what_it_looks_for():
    identifiers = _raw_identifiers()
    assert {"report_only", "permission_unused", "not_applicable"} <= identifiers
    text = visible_text('<p title="report_only">Blocked (R3) by {\'a\': 1}. R7: AgentDefinitions[].ExecutorUrl'
                        "<script>report_only</script> state report_only, after RETIRE_GRACE_DAYS</p>")
    found = jargon_in(text, identifiers)
    assert len(found) == 6, found
    assert not jargon_in(visible_text("<p>Report-only, owner_b, user.read_all@x, R2-D2</p>"), identifiers)


@pytest.mark.parametrize("persona", ["contributor", "owner", "global_admin"])
def test_no_page_shows_rule_codes_or_raw_identifiers(client, walk_world, persona):  # noqa: F811
    identifiers = _raw_identifiers()
    real, _missing, _unfilled = _urls(walk_world)
    client.force_login(walk_world.persona(persona))
    problems = []
    for url in real:
        if url.startswith(("/api/", *SCANNED_ELSEWHERE)) or url.endswith((".csv", ".json", "/export/")):
            continue
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        problems += [f"{url}: {found}" for found in jargon_in(visible_text(response.content.decode()), identifiers)]
    assert not problems, f"jargon shown to {persona}:\n" + "\n".join(problems)
