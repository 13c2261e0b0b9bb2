"""Property (R4, R13, R26, R27): whatever people, clients, resources and requests, a token issued from a consent
carries no scope outside requested ∩ the client's allowed ∩ the person's rights ∩ what the resource accepts, never a
privileged one, and is for exactly the resource asked for."""

from __future__ import annotations

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from governance.oauth import authorize, grants
from governance.signin import resources, tokens
from governance.signin.models import ResourceServer
from portal.models import DirectoryRole, DirectoryRoleAssignment, Permission
from tests.governance.oauth.clients_helper import REDIRECT_URI, make_client, make_person, pkce_pair

pytestmark = pytest.mark.django_db

POOL = ["User.Read.All", "Policy.Read.All", "Group.Read.All", "SecurityIncident.Read.All",
        "SecurityIncident.ReadWrite.All", "Policy.ReadWrite.ConditionalAccess", "DeviceManagementApps.Read.All",
        "eDiscovery.Read.All", "Directory.ReadWrite.All", "AuditLog.Read.All"]
ROLES = ["security-reader", "security-administrator", "compliance-administrator", "intune-administrator",
         "global-administrator", "conditional-access-administrator"]
subsets = st.sets(st.sampled_from(POOL))


def test_r27_a_consented_token_never_exceeds_requested_allowed_and_the_persons_rights():
    client, _ = make_client()
    person = make_person("prop", role="")
    privileged = set(Permission.objects.filter(privileged=True).values_list("name", flat=True))
    counter = iter(range(10_000))

    @hyp_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(roles=st.sets(st.sampled_from(ROLES), max_size=3), allowed=subsets,
           accepted=st.one_of(st.none(), subsets), requested=st.one_of(st.none(), subsets))
    def check(roles, allowed, accepted, requested):
        DirectoryRoleAssignment.objects.filter(user=person).delete()
        for key in roles:
            DirectoryRoleAssignment.objects.create(user=person, role=DirectoryRole.objects.get(key=key))
        client.allowed_scopes = sorted(allowed)
        client.save(update_fields=["allowed_scopes"])
        if accepted is None:
            resource = resources.portal_resource()
        else:
            n = next(counter)
            ResourceServer.objects.create(name=f"prop-{n}", client_id=f"rs-prop-{n}", secret_hash=f"{n:064d}",
                                          identifier=f"https://rs{n}.example/api", scopes=sorted(accepted))
            resources.resources_changed()
            resource = resources.resolve(f"https://rs{n}.example/api")
        rights = tokens.user_rights(person)
        asked = tuple(sorted(requested)) if requested is not None else None
        decided = authorize.grantable(person, client, resource, asked)
        if not decided.scopes:
            return  # the authorization endpoint answers access_denied
        verifier, challenge = pkce_pair()
        request = authorize.AuthorizationRequest(client=client, redirect_uri=REDIRECT_URI, state="", requested=asked,
                                                 offline_access=False, resource=resource, code_challenge=challenge)
        code = authorize.code_issue(actor=person, request=request, scopes=decided.scopes)
        result = grants.grant_issue(grants.GrantRequest(
            grant_type="authorization_code", client_id=client.client_id, secret="", at=timezone.now(),
            code=code, redirect_uri=REDIRECT_URI, code_verifier=verifier, resource=resource.identifier))
        assert result.outcome.refusal is None, result.outcome.refusal
        claims = tokens.claims_of(result.outcome.access_token)
        granted = set(claims["scope"].split())
        bound = set(requested if requested is not None else (allowed or rights))
        if allowed:
            bound &= allowed
        bound &= rights
        if accepted is not None:
            bound &= accepted
        assert granted and granted <= bound
        assert not granted & privileged
        assert claims["aud"] == resource.identifier and isinstance(claims["aud"], str)

    check()
