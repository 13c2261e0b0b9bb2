"""Client registration over HTTP (RFC 7591, RFC 7592) and the registered-clients pages with the approval queue
(R27; docs/oauth.md, "Client registration"). Thin: parse, call one service, answer."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from governance.oauth import registration
from governance.oauth.choices import AuthMethod, ClientApproval, ClientSource
from governance.oauth.client_metadata import ClientError, parse
from governance.oauth.models import OAuthClient
from governance.signin.oauth import client_ip
from portal import change_views, rbac
from portal.viewutils import flash_errors, page

MAX_BODY_BYTES = 16 * 1024
RATE_WINDOW = 60


# --- RFC 7591 / RFC 7592 -------------------------------------------------------------------------------------------
def _json(data: dict, status: int, **headers: str) -> JsonResponse:
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _error(error: str, description: str, status: int = 400, **headers: str) -> JsonResponse:
    return _json({"error": error, "error_description": description[:200]}, status, **headers)


def _rate_limited(request: HttpRequest) -> int:
    """Registrations per address per minute (``OAUTH_REGISTRATION_RATE_PER_IP``); seconds to wait, or 0."""
    limit = getattr(settings, "OAUTH_REGISTRATION_RATE_PER_IP", 20)
    if limit <= 0:
        return 0
    now = int(time.time())
    key = f"aip:register:{client_ip(request) or '-'}:{now // RATE_WINDOW}"
    cache.add(key, 0, RATE_WINDOW + 5)
    try:
        count = cache.incr(key)
    except ValueError:
        count = 1
    return RATE_WINDOW - now % RATE_WINDOW if count > limit else 0


def registration_client_uri(client: OAuthClient) -> str:
    return settings.PORTAL_BASE_URL + reverse("oauth-register-client", args=[client.client_id])


@csrf_exempt
@sensitive_variables("registered")
def register(request: HttpRequest) -> HttpResponse:
    """RFC 7591: register a client from its JSON metadata; answers 201 with the metadata, the client id, a secret
    for confidential clients (shown once) and an RFC 7592 registration access token."""
    if request.method != "POST":
        return _error("invalid_request", "use POST with a JSON body", 405, Allow="POST")
    if settings.OAUTH_DYNAMIC_REGISTRATION == "off":
        return _error("access_denied", "dynamic client registration is turned off on this portal", 403)
    wait = _rate_limited(request)
    if wait:
        return _error("slow_down", "too many registrations from this address", 429, Retry_After=str(wait))
    if request.content_type != "application/json":
        return _error("invalid_client_metadata", "send the client metadata as application/json")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    body = b"" if declared > MAX_BODY_BYTES else request.read(MAX_BODY_BYTES + 1)
    if declared > MAX_BODY_BYTES or len(body) > MAX_BODY_BYTES:
        return _error("invalid_client_metadata", f"the client metadata is larger than {MAX_BODY_BYTES} bytes")
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return _error("invalid_client_metadata", "the body is not JSON")
    try:
        registered = registration.client_register(actor=None, metadata=parse(raw), source=ClientSource.DYNAMIC)
    except ClientError as error:
        return _error(error.error, error.description, 403 if error.error == "access_denied" else 400)
    client = registered.client
    answer = registration.public_metadata(client)
    if registered.client_secret:
        answer["client_secret"] = registered.client_secret
        answer["client_secret_expires_at"] = registered.client_secret_expires_at
    answer["registration_access_token"] = registered.registration_access_token
    answer["registration_client_uri"] = registration_client_uri(client)
    return _json(answer, 201)


def _bearer(request: HttpRequest) -> str:
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and 0 < len(value) <= 512 else ""


@csrf_exempt
def registration_client(request: HttpRequest, client_id: str) -> HttpResponse:
    """RFC 7592: read (GET) or delete (DELETE) a registration with its registration access token. Deleting retires
    the client's agent through the registry (R5)."""
    if request.method not in ("GET", "DELETE"):
        return _error("invalid_request", "use GET or DELETE", 405, Allow="GET, DELETE")
    token = _bearer(request)
    client = OAuthClient.objects.select_related("agent").filter(client_id=client_id[:300]).first()
    if client is None or not token or not registration.registration_token_matches(client, token):
        return _error("invalid_token", "the registration access token is not valid for this client", 401,
                      WWW_Authenticate='Bearer error="invalid_token"')
    if request.method == "DELETE":
        try:
            registration.client_retire(actor=None, client=client, via="registration_access_token")
        except ValidationError:
            pass  # already retired: the registration is gone either way
        response = HttpResponse(status=204)
        response["Cache-Control"] = "no-store"
        return response
    answer = registration.public_metadata(client)
    answer["registration_client_uri"] = registration_client_uri(client)
    return _json(answer, 200)


# --- pages ---------------------------------------------------------------------------------------------------------
def clients_visible_to(user) -> QuerySet[OAuthClient]:
    """Clients of the workspaces the user owns (Global and Security Administrators: every workspace, R11)."""
    return OAuthClient.objects.filter(agent__workspace__in=rbac.workspaces_owned_by(user).values("pk")) \
        .select_related("agent", "agent__workspace", "decided_by")


def _visible_client(request: HttpRequest, pk: int) -> OAuthClient:
    client = clients_visible_to(request.user).filter(pk=pk).first()
    if client is None:
        raise Http404("No such client.")
    return client


class StaticClientForm(forms.Form):
    client_name = forms.CharField(label="Name", max_length=200)
    redirect_uris = forms.CharField(label="Redirect URIs", widget=forms.Textarea(attrs={"rows": 3}),
                                    help_text="One per line: https, or http on 127.0.0.1 / localhost for native apps.")
    client_type = forms.ChoiceField(label="Client type", choices=[
        ("public", "Public (PKCE, no secret: native and browser apps)"),
        ("confidential", "Confidential (a client secret, shown once)")])
    application_type = forms.ChoiceField(label="Application type", choices=[("web", "Web"), ("native", "Native")])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs.setdefault("class", "form-select" if isinstance(field, forms.ChoiceField)
                                          else "form-control")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        method = AuthMethod.CLIENT_SECRET_BASIC if data["client_type"] == "confidential" else AuthMethod.NONE
        try:
            data["metadata"] = parse({"client_name": data["client_name"],
                                      "redirect_uris": data["redirect_uris"].split(),
                                      "application_type": data["application_type"],
                                      "grant_types": ["authorization_code", "refresh_token"],
                                      "token_endpoint_auth_method": method})
        except ClientError as error:
            raise ValidationError(error.description) from error
        return data


@login_required
@require_http_methods(["GET", "POST"])
@sensitive_variables("registered")
def client_list(request: HttpRequest) -> HttpResponse:
    """Registered clients with the approval queue filter (``?approval=pending``), search and pagination; an
    administrator may register a static client here (the secret is shown once)."""
    rbac.require(rbac.owns_any_workspace(request.user), "Registered OAuth clients are for workspace owners.")
    may_register = registration.can_register_static(request.user)
    form = StaticClientForm(request.POST or None) if may_register else None
    registered = None
    if request.method == "POST":
        rbac.require(may_register, "Only owners of the registration workspace register clients.")
        if form.is_valid():
            try:
                registered = registration.client_register(actor=request.user, metadata=form.cleaned_data["metadata"],
                                                          source=ClientSource.STATIC)
                form = StaticClientForm()
            except ValidationError as error:
                form.add_error(None, error)
            except ClientError as error:
                form.add_error(None, error.description)
    clients = clients_visible_to(request.user)
    query = (request.GET.get("q") or "").strip()[:200]
    if query:
        clients = clients.filter(Q(client_name__icontains=query) | Q(client_id__icontains=query)
                                 | Q(agent__name__icontains=query))
    approval = request.GET.get("approval", "")
    if approval in ClientApproval.values:
        clients = clients.filter(approval=approval)
    else:
        approval = ""
    response = render(request, "oauth/clients/client_list.html", {
        "page": page(request, clients), "q": query, "approval": approval,
        "query": urlencode({k: v for k, v in (("q", query), ("approval", approval)) if v}),
        "approvals": ClientApproval.choices, "form": form, "registered": registered,
        "pending_count": clients_visible_to(request.user).filter(approval=ClientApproval.PENDING).count(),
        "mode": settings.OAUTH_DYNAMIC_REGISTRATION})
    response["Cache-Control"] = "no-store"
    return response


@login_required
def client_detail(request: HttpRequest, pk: int) -> HttpResponse:
    client = _visible_client(request, pk)
    consents = client.consents.filter(revoked_at__isnull=True).aggregate(n=Count("pk"))["n"]
    metadata = registration.public_metadata(client)
    return render(request, "oauth/clients/client_detail.html", {
        "client": client, "agent": client.agent, "consents": consents,
        "metadata_json": json.dumps(metadata, indent=2, sort_keys=True),
        "can_decide": registration.can_decide(request.user, client)})


def _decide(request: HttpRequest, pk: int, service, message: str, **arguments) -> HttpResponse:
    client = _visible_client(request, pk)
    try:
        result = service(actor=request.user, client=client, **arguments)
    except PermissionDenied:
        raise
    except ValidationError as error:
        flash_errors(request, error)
    else:
        if (waiting := change_views.pending_redirect(request, result)) is not None:
            return waiting
        messages.success(request, message.format(client=client))
    return redirect("oauth-client-detail", pk=client.pk)


@login_required
@require_POST
def client_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, registration.client_approve, "{client} is approved: people may now sign in to it.",
                   **change_views.break_glass_from(request))


@login_required
@require_POST
def client_deny(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, registration.client_deny, "{client} is denied and disabled.",
                   reason=request.POST.get("reason", "")[:300])


@login_required
@require_POST
def client_retire(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, registration.client_retire, "{client} is retired: no credential or token remains.")
