"""Permission-matrix cases for four-eyes approval (docs/four-eyes.md; docs/design.md, R31).

The list answers everyone signed in (with only their own requests unless they are an administrator). A change asked
for by another Global Administrator is visible to administrators only (the matrix's inherited_owner, a Security
Administrator, and global_admin), who approve, reject or review it (302); everyone else gets 404. The settings page
is for Global Administrators (403 for the others).
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect

ADMINS_VIEW = expect(LOGIN, 404, 404, 200, 200, 404)
ADMINS_DECIDE = expect(LOGIN, 404, 404, 302, 302, 404)
GA_ONLY = expect(LOGIN, 403, 403, 403, 200, 403)
GA_WRITE = expect(LOGIN, 403, 403, 403, 302, 403)


def _requester():
    from tests.factories import UserFactory, grant_role

    requester = UserFactory(username="four-eyes-requester")
    if not requester.role_assignments.exists():
        grant_role(requester, "global-administrator")
    return requester


def _change(w, *, break_glass: bool = False):
    """A change to automatic risk remediation asked for (or, with ``break_glass``, applied in an emergency) by a
    Global Administrator who is none of the personas."""
    from governance.risk import services as risk
    from portal import changes
    from portal.models import ChangeRequest

    existing = ChangeRequest.objects.filter(break_glass=break_glass).first()
    if existing is not None:
        return existing
    requester = _requester()
    changes.settings_save(actor=requester, high_impact={risk.REMEDIATION_CHANGE: True}, bulk_retire_threshold=10)
    risk.remediation_policy_save(actor=requester, enabled=True, min_level="high", break_glass=break_glass,
                                 justification="Matrix emergency" if break_glass else "")
    return ChangeRequest.objects.get(break_glass=break_glass)


CASES = [
    Case("change-list", "GET", lambda w: reverse("change-list"), expect(LOGIN, 200, 200, 200, 200, 200)),
    Case("change-detail", "GET", lambda w: reverse("change-detail", args=[_change(w).pk]), ADMINS_VIEW),
    Case("change-approve", "POST", lambda w: reverse("change-approve", args=[_change(w).pk]), ADMINS_DECIDE),
    Case("change-reject", "POST", lambda w: reverse("change-reject", args=[_change(w).pk]), ADMINS_DECIDE,
         data=lambda w: {"reason": "Not now"}),
    Case("change-review", "POST", lambda w: reverse("change-review", args=[_change(w, break_glass=True).pk]),
         ADMINS_DECIDE, data=lambda w: {"verdict": "confirm"}),
    Case("four-eyes-settings", "GET", lambda w: reverse("four-eyes-settings"), GA_ONLY),
    Case("four-eyes-settings", "POST", lambda w: reverse("four-eyes-settings"), GA_WRITE,
         data=lambda w: {"bulk_retire_threshold": "12"}),
]

# The API: the list answers every person (their own requests, or all for administrators); a change is visible to
# administrators only; approving and rejecting are theirs (200), as on the pages.
API_ADMINS = expect(403, 404, 404, 200, 200, 404)
CASES += [
    Case("api-change-list", "GET", lambda w: reverse("api-change-list"), expect(403, 200, 200, 200, 200, 200)),
    Case("api-change-detail", "GET", lambda w: reverse("api-change-detail", args=[_change(w).pk]), API_ADMINS),
    Case("api-change-approve", "POST", lambda w: reverse("api-change-approve", args=[_change(w).pk]), API_ADMINS),
    Case("api-change-reject", "POST", lambda w: reverse("api-change-reject", args=[_change(w).pk]), API_ADMINS,
         data=lambda w: {"reason": "Not now"}),
]
