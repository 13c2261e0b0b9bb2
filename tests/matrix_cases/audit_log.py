"""Permission-matrix cases for the audit log (docs/design.md, R23): the export with inclusion proofs is for whoever
may read the audit trail (workspace owners: their workspaces' events; audit readers: all); the log's public key is
published to everyone, so an auditor can check an export without an account."""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect

CASES = [
    Case("audit-export", "GET", lambda w: reverse("audit-export") + "?format=json&proofs=1",
         expect(LOGIN, 403, 200, 200, 200, 200), label="audit-export with inclusion proofs"),
    Case("audit-log-key", "GET", lambda w: reverse("audit-log-key"), expect(200, 200, 200, 200, 200, 200)),
]
