"""Permission-matrix cases for credential types in governance (R28; appended to ``tests.permission_matrix.CASES``).

The workspace's "no new client secrets" policy is set by its owners, explicit or inherited (a contributor of alpha
gets 403, the owner of beta 404); the sign-in log's credential filter and what-if's credential type keep the pages'
own rules.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect

ALPHA_MANAGE = expect(LOGIN, 403, 302, 302, 302, 404)
SIGNIN_READERS = expect(LOGIN, 403, 200, 200, 200, 200)
POLICY_READ = expect(LOGIN, 403, 200, 200, 200, 200)

CASES: list = [
    Case("workspace-credential-policy", "POST", lambda w: reverse("workspace-credential-policy", args=["alpha"]),
         ALPHA_MANAGE, data=lambda w: {"forbid_new_secrets": "on"}, label="workspace-credential-policy on"),
    Case("workspace-credential-policy", "POST", lambda w: reverse("workspace-credential-policy", args=["alpha"]),
         ALPHA_MANAGE, data=lambda w: {"forbid_new_secrets": "maybe"}, label="workspace-credential-policy bad"),
    Case("signin-list", "GET", lambda w: reverse("signin-list") + "?credential_type=federated", SIGNIN_READERS,
         label="signin-list by credential type"),
    Case("signin-export", "GET", lambda w: reverse("signin-export") + "?credential_type=secret&format=csv",
         SIGNIN_READERS, label="signin-export by credential type"),
    Case("policy-what-if", "GET",
         lambda w: reverse("policy-what-if") + "?agent=matrix-agent&credential_type=secret", POLICY_READ,
         label="policy-what-if with a credential type"),
]
