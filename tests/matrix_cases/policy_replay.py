"""Permission-matrix cases for policy replay (docs/policy-replay.md): whoever reads the policies reads their replay
(workspace owners counting only the agents they see); previewing the editor's unsaved values and turning a policy on
are for Global and Security Administrators (the matrix's global_admin and inherited_owner)."""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, _policy, expect

READ = expect(LOGIN, 403, 200, 200, 200, 200)
API_READ = expect(403, 403, 200, 200, 200, 200)
MANAGE_READ = expect(LOGIN, 403, 403, 200, 200, 403)
MANAGE_WRITE = expect(LOGIN, 403, 403, 302, 302, 403)
EDITED = {"name": "Matrix policy", "state": "report_only", "grant": "block", "all_agents": "on",
          "ip_ranges": "10.0.0.0/8"}

CASES = [
    Case("policy-replay", "GET", lambda w: reverse("policy-replay", args=[_policy(w).pk]), READ),
    Case("policy-replay", "GET", lambda w: reverse("policy-replay", args=[_policy(w).pk]) + "?days=30&agent="
         f"{w.agent.pk}", READ, label="policy-replay drill-down by agent"),
    Case("policy-replay", "POST", lambda w: reverse("policy-replay", args=[_policy(w).pk]), MANAGE_READ,
         data=lambda w: EDITED, label="policy-replay of the editor's unsaved values"),
    Case("policy-replay-preview", "POST", lambda w: reverse("policy-replay-preview"), MANAGE_READ,
         data=lambda w: {**EDITED, "name": "New one"}),
    Case("policy-turn-on", "GET", lambda w: reverse("policy-turn-on", args=[_policy(w).pk]), MANAGE_READ),
    Case("policy-turn-on", "POST", lambda w: reverse("policy-turn-on", args=[_policy(w).pk]), MANAGE_WRITE),
    Case("api-policy-replay-list", "GET", lambda w: f"/api/v1/policies/{_policy(w).pk}/replay/?days=7", API_READ),
]
