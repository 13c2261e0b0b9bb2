"""People's side of OAuth: the authorization endpoint with its consent page, and "Connected apps" (R27; docs/oauth.md,
"Authorization code, consent and refresh tokens")."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from agents import policy as agent_policy
from agents.models import AgentUserObjectPermission
from governance.oauth import authorize, consent
from portal import network
from portal.models import Permission
from portal.viewutils import page


def _error_page(request, error: authorize.AuthorizeError):
    response = render(request, "oauth/authorize_error.html", {"error": error}, status=400)
    response["Cache-Control"] = "no-store"
    return response


def _back_to_client(auth: authorize.AuthorizationRequest | dict, **params) -> HttpResponseRedirect:
    """A redirect to the client's verified redirect URI (an ``HttpResponseRedirect`` accepts any scheme a native
    client registered, e.g. ``com.example.app:/cb``)."""
    redirect_uri = auth["redirect_uri"] if isinstance(auth, dict) else auth.redirect_uri
    state = auth["state"] if isinstance(auth, dict) else auth.state
    response = HttpResponseRedirect(authorize.redirect_with(redirect_uri, state=state, **params))
    response.allowed_schemes = [redirect_uri.split(":", 1)[0]]
    response["Cache-Control"] = "no-store"
    return response


def _refuse(auth, error: str, description: str) -> HttpResponseRedirect:
    return _back_to_client(auth, error=error, error_description=description)


@require_http_methods(["GET", "POST"])
def authorize_view(request):
    """``/oauth/authorize/``: check the request, sign the person in, show the consent page (GET) or act on the
    decision (POST); a remembered consent that covers the request issues the code at once."""
    try:
        auth = authorize.read_request(request.GET)
    except authorize.AuthorizeError as error:
        if not error.redirect:
            return _error_page(request, error)
        return _refuse(error.request, error.error, error.description)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    person = request.user
    if getattr(person, "kind", "human") != "human":
        return _refuse(auth, "access_denied", "Only a person can authorize a client.")
    grantable = authorize.grantable(person, auth.client, auth.resource, auth.requested)
    if not grantable.scopes:
        return _refuse(auth, "access_denied", "Nothing requested is both allowed to the client and yours to grant.")
    now = timezone.now()
    evaluation = authorize.conditional_access_evaluation(auth.client, ip=network.client_ip(request), at=now,
                                                         scopes=grantable.scopes, resource=auth.resource.identifier)
    if not evaluation.allowed:
        return _refuse(auth, "access_denied", f"Blocked by conditional access policy: {evaluation.blocked_by}.")
    # a consent remembers offline_access too: staying connected is something the person agreed to, or not
    consented = (*grantable.scopes, authorize.OFFLINE_ACCESS) if auth.offline_access else grantable.scopes
    if request.method == "POST":
        if request.POST.get("decision") == "approve":
            consent.consent_grant(actor=person, client=auth.client, resource=auth.resource.identifier,
                                  scopes=consented)
            return _code(request, auth, grantable.scopes)
        consent.consent_deny(actor=person, client=auth.client, resource=auth.resource.identifier,
                             scopes=consented)
        return _refuse(auth, "access_denied", "The person declined.")
    if consent.remembered(person, auth.client, auth.resource.identifier, consented) is not None:
        return _code(request, auth, grantable.scopes)
    return _consent_page(request, auth, grantable)


def _code(request, auth: authorize.AuthorizationRequest, scopes) -> HttpResponseRedirect:
    try:
        code = authorize.code_issue(actor=request.user, request=auth, scopes=tuple(scopes))
    except PermissionDenied as error:
        return _refuse(auth, "access_denied", str(error))
    return _back_to_client(auth, code=code)


def _consent_page(request, auth: authorize.AuthorizationRequest, grantable: authorize.Grantable):
    client, agent = auth.client, auth.client.agent
    described = dict(Permission.objects.filter(name__in=grantable.scopes + grantable.not_held)
                     .order_by("name", "kind").values_list("name", "description"))
    owners = [row.user for row in AgentUserObjectPermission.objects.filter(
        content_object=agent, permission__codename=agent_policy.OWN_AGENT).select_related("user")
        .order_by("user__username")]
    response = render(request, "oauth/consent.html", {
        "client": client, "agent": agent, "can_view_agent": agent_policy.can_view_agent(request.user, agent),
        "owners": owners, "resource": auth.resource, "offline_access": auth.offline_access,
        "scopes": [(name, described.get(name, "")) for name in grantable.scopes],
        "not_held": [(name, described.get(name, "")) for name in grantable.not_held],
        "not_allowed": grantable.not_allowed, "action": request.get_full_path()})
    response["Cache-Control"] = "no-store"
    response["X-Frame-Options"] = "DENY"
    return response


@require_http_methods(["GET"])
def connected_apps(request):
    """The signed-in person's live consents, each revocable."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return render(request, "oauth/connected_apps.html", {"consents": page(request, consent.consents_of(request.user))})


@require_http_methods(["GET", "POST"])
def connected_app_revoke(request, consent_id: int):
    """Confirm (GET), then revoke (POST) a consent: the client loses its refresh and access tokens."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    item = consent.consent_get(request.user, consent_id)
    if request.method == "POST":
        consent.consent_revoke(actor=request.user, consent=item)
        messages.success(request, f"{item.client} no longer has access for you to {item.resource}.")
        return redirect("connected-apps")
    return render(request, "oauth/connected_app_revoke.html", {"consent": item})
