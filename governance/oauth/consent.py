"""People's consents to OAuth clients: giving, refusing, remembering and revoking them (R27; docs/oauth.md,
"Authorization code, consent and refresh tokens").

A consent is remembered per person × client × resource; a later request for scopes it covers skips the consent page.
Revoking one (the person on "Connected apps", or an administrator: Global and Security Administrators and the owners
of the client agent's workspace) ends it and, in the same transaction, every refresh and access token of the
authorizations it covered, so the client must ask the person again.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from governance.oauth.models import Consent, OAuthClient, RefreshToken
from governance.signin.choices import GrantType
from governance.signin.models import AccessToken
from portal import audit, rbac
from portal.models import User

PEOPLE_GRANTS = (GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN)


def remembered(person: User, client: OAuthClient, resource: str, scopes: Iterable[str]) -> Consent | None:
    """The person's live consent to this client for this resource, if it covers ``scopes``."""
    consent = Consent.objects.filter(user=person, client=client, resource=resource, revoked_at__isnull=True).first()
    if consent is None or not set(scopes) <= set(consent.scopes):
        return None
    return consent


@transaction.atomic
def consent_grant(*, actor: User, client: OAuthClient, resource: str, scopes: Iterable[str]) -> Consent:
    """The person consents to the client for these scopes at this resource; remembered (the live consent for the
    same client and resource widens to cover them). One audit event."""
    if actor is None or not actor.is_authenticated or not actor.is_active:
        raise PermissionDenied("Only a signed-in person gives consent.")
    scopes = sorted(set(scopes))
    consent = Consent.objects.select_for_update().filter(user=actor, client=client, resource=resource,
                                                         revoked_at__isnull=True).first()
    before = {"scopes": consent.scopes} if consent else None
    if consent is None:
        consent = Consent.objects.create(user=actor, client=client, resource=resource, scopes=scopes)
    else:
        consent.scopes = sorted(set(consent.scopes) | set(scopes))
        consent.granted_at = timezone.now()
        consent.save(update_fields=["scopes", "granted_at"])
    audit.record(actor=actor, action="oauth.consent.grant", target=client.agent, workspace=client.agent.workspace,
                 before=before, after={"client_id": client.client_id, "resource": resource, "scopes": consent.scopes,
                                       "consent_id": consent.pk})
    return consent


@transaction.atomic
def consent_deny(*, actor: User, client: OAuthClient, resource: str, scopes: Iterable[str]) -> None:
    """The person refuses the client (the client is told ``access_denied``). Nothing changes but the audit trail."""
    if actor is None or not actor.is_authenticated:
        raise PermissionDenied("Only a signed-in person refuses consent.")
    audit.record(actor=actor, action="oauth.consent.deny", target=client.agent, workspace=client.agent.workspace,
                 after={"client_id": client.client_id, "resource": resource, "scopes": sorted(set(scopes))})


def can_administer_consents(user, client: OAuthClient) -> bool:
    """Global and Security Administrators, and the owners of the client agent's workspace."""
    if not user.is_authenticated or not user.is_active:
        return False
    if rbac.role_keys(user) & {rbac.GLOBAL_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR}:
        return True
    return rbac.workspace_role(user, client.agent.workspace) == "owner"


def can_revoke(user, consent: Consent) -> bool:
    return user.is_authenticated and (consent.user_id == user.pk or can_administer_consents(user, consent.client))


def consents_of(person: User) -> QuerySet[Consent]:
    """The person's live consents (the "Connected apps" page)."""
    return Consent.objects.filter(user=person, revoked_at__isnull=True) \
        .select_related("client__agent").order_by("-granted_at", "-pk")


def consents_of_client(user, client: OAuthClient) -> QuerySet[Consent]:
    """The live consents people gave this client, for its administrators (none for anyone else): what a client's
    page lists, each revocable through ``consent_revoke``."""
    if not can_administer_consents(user, client):
        return Consent.objects.none()
    return Consent.objects.filter(client=client, revoked_at__isnull=True).select_related("user") \
        .order_by("-granted_at", "-pk")


def consent_get(user, consent_id: int) -> Consent:
    """A live consent the user may revoke; any other is invisible (404)."""
    from django.http import Http404

    consent = Consent.objects.select_related("client__agent__workspace", "user") \
        .filter(pk=consent_id, revoked_at__isnull=True).first()
    if consent is None or not can_revoke(user, consent):
        raise Http404("No such connected app.")
    return consent


def revoke_families(families: Iterable[str], reason: str, now=None) -> tuple[int, int]:
    """Revoke every refresh token and access token of these families (inside the caller's transaction)."""
    families = [f for f in set(families) if f]
    if not families:
        return 0, 0
    now = now or timezone.now()
    refresh = RefreshToken.objects.filter(family__in=families, revoked_at__isnull=True) \
        .update(revoked_at=now, revoked_reason=reason[:60])
    access = AccessToken.objects.filter(family__in=families, revoked_at__isnull=True, expires_at__gt=now) \
        .update(revoked_at=now, revoked_reason=reason[:60])
    return refresh, access


@transaction.atomic
def consent_revoke(*, actor: User, consent: Consent) -> Consent:
    """End a consent and every token of the authorizations it covered (refresh tokens and access tokens of their
    families, and any other access token the client holds for this person and resource). One audit event."""
    consent = Consent.objects.select_for_update().select_related("client__agent__workspace").get(pk=consent.pk)
    if not can_revoke(actor, consent):
        raise PermissionDenied("You may not revoke this consent.")
    if consent.revoked_at is not None:
        return consent
    now = timezone.now()
    client = consent.client
    families = set(RefreshToken.objects.filter(client=client, user_id=consent.user_id, resource=consent.resource)
                   .values_list("family", flat=True))
    refresh, access = revoke_families(families, "consent revoked", now)
    access += AccessToken.objects.filter(
        Q(grant_type__in=PEOPLE_GRANTS), agent_id=client.agent_id, subject_id=consent.user_id,
        audience=consent.resource, revoked_at__isnull=True, expires_at__gt=now,
    ).update(revoked_at=now, revoked_reason="consent revoked")
    consent.revoked_at, consent.revoked_by = now, actor
    consent.save(update_fields=["revoked_at", "revoked_by"])
    audit.record(actor=actor, action="oauth.consent.revoke", target=client.agent, workspace=client.agent.workspace,
                 before={"scopes": consent.scopes},
                 after={"client_id": client.client_id, "resource": consent.resource, "person": consent.user.username,
                        "revoked_refresh": refresh, "revoked_access": access})
    return consent
