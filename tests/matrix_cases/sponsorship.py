"""Permission-matrix cases for accepted sponsorship (docs/sponsorship.md): "My sponsorships" is for everyone signed
in; a sponsorship's page, its answers and its hand-over are for the named person only (anyone else: 404). The same
in the API (an anonymous caller is challenged: 401)."""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _asked(w):
    """The contributor, asked by owner_b to sponsor matrix-agent (pending)."""
    from agents import policy, registry
    from agents.models import Sponsorship

    found = Sponsorship.objects.filter(agent=w.agent, user=w.contributor, state="pending").first()
    if found is None:
        registry.agent_person_add(actor=w.owner_b, agent=w.agent, user=w.contributor, role=policy.SPONSOR_AGENT)
        found = Sponsorship.objects.get(agent=w.agent, user=w.contributor, state="pending")
    return found


def _owners_own(w):
    """The owner's accepted sponsorship of matrix-agent (they named themself)."""
    from agents.models import Sponsorship

    return Sponsorship.objects.get(agent=w.agent, user=w.owner, state="accepted")


EVERYONE = expect(LOGIN, 200, 200, 200, 200, 200)
CONTRIBUTOR_ONLY_READ = expect(LOGIN, 200, 404, 404, 404, 404)
CONTRIBUTOR_ONLY_WRITE = expect(LOGIN, 302, 404, 404, 404, 404)
OWNER_ONLY_WRITE = expect(LOGIN, 404, 302, 404, 404, 404)

CASES = [
    Case("my-sponsorships", "GET", lambda w: reverse("my-sponsorships"), EVERYONE),
    Case("sponsorship-answer", "GET", lambda w: reverse("sponsorship-answer", args=[_asked(w).pk]),
         CONTRIBUTOR_ONLY_READ),
    Case("sponsorship-answer", "POST", lambda w: reverse("sponsorship-answer", args=[_asked(w).pk]),
         CONTRIBUTOR_ONLY_WRITE, data=lambda w: {"answer": "accept"}, label="sponsorship-answer accept"),
    Case("sponsorship-answer", "POST", lambda w: reverse("sponsorship-answer", args=[_asked(w).pk]),
         CONTRIBUTOR_ONLY_WRITE, data=lambda w: {"answer": "decline"}, label="sponsorship-answer decline"),
    Case("sponsorship-transfer", "POST", lambda w: reverse("sponsorship-transfer", args=[_owners_own(w).pk]),
         OWNER_ONLY_WRITE, data=lambda w: {"user": "newcomer"}),
]

API_EVERYONE = expect(403, 200, 200, 200, 200, 200)
API_CONTRIBUTOR_ONLY = expect(403, 200, 404, 404, 404, 404)
API_OWNER_ONLY = expect(403, 404, 200, 404, 404, 404)

CASES += [
    Case("api-sponsorship-list", "GET", lambda w: "/api/v1/sponsorships/", API_EVERYONE),
    Case("api-sponsorship-detail", "GET", lambda w: f"/api/v1/sponsorships/{_asked(w).pk}/", API_CONTRIBUTOR_ONLY),
    Case("api-sponsorship-accept", "POST", lambda w: f"/api/v1/sponsorships/{_asked(w).pk}/accept/",
         API_CONTRIBUTOR_ONLY),
    Case("api-sponsorship-decline", "POST", lambda w: f"/api/v1/sponsorships/{_asked(w).pk}/decline/",
         API_CONTRIBUTOR_ONLY, data=lambda w: {"reason": "not mine"}),
    Case("api-sponsorship-attest", "POST", lambda w: f"/api/v1/sponsorships/{_owners_own(w).pk}/attest/",
         API_OWNER_ONLY),
]
