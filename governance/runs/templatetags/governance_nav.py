"""``{% governance_links request.user as links %}``: the governance pages this person may open, in menu order.

A link that would answer 403 is not shown (the page's own check decides, the same function each view calls);
``hidden`` names what is left out, so a page can say who may see it. Governance's sub-apps each keep their own rule;
this module sits in ``runs``, the layer above all of them, so it may ask each one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.urls import reverse

from governance.conditional_access import services as conditional_access
from governance.risk import services as risk
from governance.signin import signins
from governance.signing import rotation
from portal import changes, rbac

register = template.Library()


@dataclass(frozen=True)
class Link:
    key: str
    label: str
    url_name: str
    who: str = ""  # who may open it, said when it is hidden

    @property
    def url(self) -> str:
        return reverse(self.url_name)


def _in_a_workspace(user) -> bool:
    return rbac.workspaces_visible_to(user).exists()


def _policy_reader(user) -> bool:
    return conditional_access.can_manage_policies(user) or rbac.can_view_audit(user)


LINKS = (
    (Link("approvals", "Partner approvals", "approval-list"), None),
    (Link("packages", "Access packages", "package-list", "members of a workspace"), _in_a_workspace),
    (Link("expiring", "Expiring soon", "assignments-expiring"), None),
    (Link("reviews", "Access reviews", "review-list"), None),
    (Link("policies", "Conditional access", "policy-list",
          "workspace owners, audit readers and Global or Security Administrators"), _policy_reader),
    (Link("signins", "Sign-ins", "signin-list", "workspace owners and sign-in readers"), signins.can_view_signins),
    (Link("risk", "Risky agents", "risk-list", "workspace owners and security readers"), risk.can_view_risk),
    (Link("tokens", "Tokens", "personal-token"), None),
    (Link("connected-apps", "Connected apps", "connected-apps"), None),
    (Link("oauth-clients", "OAuth clients", "oauth-client-list", "administrators who see the jobs"),
     rbac.can_view_jobs),
    (Link("signing-keys", "Signing keys", "signing-key-list",
          "Global and Security Administrators and security readers"),
     rotation.can_view_signing_keys),
    (Link("changes", "Changes awaiting approval", "change-list", "administrators"), changes.is_administrator),
)


def links_for(user) -> tuple[list[Link], list[Link]]:
    """(the links this user may open, the ones hidden from them)."""
    shown, hidden = [], []
    for link, allowed in LINKS:
        (shown if allowed is None or allowed(user) else hidden).append(link)
    return shown, hidden


@register.simple_tag
def governance_links(user) -> list[Link]:
    return links_for(user)[0]


@register.simple_tag
def governance_hidden(user) -> list[Link]:
    return links_for(user)[1]
