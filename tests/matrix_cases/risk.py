"""Permission-matrix cases for this capability (appended to ``tests.permission_matrix.CASES``).

Risk (R21): Global and Security Administrators (``inherited_owner`` is one) and workspace owners read it, owners
only for their workspaces' agents; contributors have no risk pages (403); another workspace's agent is a 404.
Decisions are for the two administrator roles: owners get 403.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _detection(w):
    from governance.conditional_access.choices import RiskLevel
    from governance.risk.choices import DetectionKind
    from governance.risk.models import RiskDetection

    return RiskDetection.objects.get_or_create(agent=w.agent, kind=DetectionKind.NEW_SCOPE, key="Policy.Read.All",
                                               defaults={"level": RiskLevel.LOW})[0]


RISK_LIST = expect(LOGIN, 403, 200, 200, 200, 200)
RISK_AGENT = expect(LOGIN, 403, 200, 200, 200, 404)
RISK_DECIDE = expect(LOGIN, 403, 403, 302, 302, 404)

CASES: list = [
    Case("risk-list", "GET", lambda w: reverse("risk-list"), RISK_LIST),
    Case("risk-list", "GET", lambda w: reverse("risk-list") + "?level=high", RISK_LIST, label="risk-list by level"),
    Case("risk-agent", "GET", lambda w: reverse("risk-agent", args=[w.agent.pk]), RISK_AGENT),
    Case("risk-detection-decide", "POST", lambda w: reverse("risk-detection-decide", args=[_detection(w).pk, "safe"]),
         RISK_DECIDE, label="risk-detection-decide safe"),
    Case("risk-detection-decide", "POST",
         lambda w: reverse("risk-detection-decide", args=[_detection(w).pk, "compromised"]), RISK_DECIDE,
         label="risk-detection-decide compromised"),
    Case("risk-detection-decide", "POST",
         lambda w: reverse("risk-detection-decide", args=[_detection(w).pk, "dismiss"]), RISK_DECIDE,
         label="risk-detection-decide dismiss"),
    Case("risk-agent-compromised", "POST", lambda w: reverse("risk-agent-compromised", args=[w.agent.pk]),
         RISK_DECIDE, data=lambda w: {"reason": "Secret seen in a build log"}),
    Case("risk-remediation", "POST", lambda w: reverse("risk-remediation"), expect(LOGIN, 403, 403, 302, 302, 403),
         data=lambda w: {"enabled": "off", "min_level": "high"}),
]
