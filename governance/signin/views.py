"""Sign-in pages: the sign-in log, risky agents, personal tokens and resource servers."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import policy as agent_policy
from governance.signin import resource_servers, signins, tokens
from governance.signin.forms import AgentResourceForm, PersonalTokenForm, ResourceServerForm, SignInFilterForm
from governance.signin.models import ResourceServer
from portal import rbac
from portal.viewutils import act, page, streamed_export


@login_required
@require_http_methods(["GET", "POST"])
@sensitive_variables("value")
def personal_token(request):
    """Issue yourself a short-lived token (shown once) that an agent may exchange to act for you."""
    form = PersonalTokenForm(request.POST or None)
    issued = value = None
    if request.method == "POST" and form.is_valid():
        try:
            issued, value = tokens.personal_token_issue(actor=request.user,
                                                        scopes=form.cleaned_data["scopes"].split() or None)
        except ValidationError as error:
            form.add_error(None, error)
    response = render(request, "governance/signin/personal_token.html", {
        "form": form, "issued": issued, "value": value, "rights": sorted(tokens.user_rights(request.user)),
        "active": "tokens", "can_manage_servers": tokens.can_manage_resource_servers(request.user)})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
@sensitive_variables("secret")
def resource_server_list(request):
    rbac.require(tokens.can_manage_resource_servers(request.user),
                 "Only Global and Security Administrators manage resource servers.")
    form = ResourceServerForm(request.POST or None)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        try:
            created, secret = tokens.resource_server_create(actor=request.user, name=form.cleaned_data["name"],
                                                            identifier=form.cleaned_data["identifier"] or None,
                                                            scopes=form.cleaned_data["scopes"])
            form = ResourceServerForm()
        except ValidationError as error:
            form.add_error(None, error)
    response = render(request, "governance/signin/resource_servers.html", {
        "form": form, "page": page(request, ResourceServer.objects.select_related("created_by", "agent")),
        "created": created,
        "secret": secret, "active": "tokens"})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def resource_server_revoke(request, server_id: int):
    rbac.require(tokens.can_manage_resource_servers(request.user),
                 "Only Global and Security Administrators manage resource servers.")
    server = get_object_or_404(ResourceServer, pk=server_id)
    act(request, tokens.resource_server_revoke, lambda s: f"{s.name} can no longer introspect tokens.",
        server=server)
    return redirect("resource-server-list")


@login_required
@require_http_methods(["GET", "POST"])
def agent_resource(request, agent_id: int):
    """Make an agent a resource other agents get tokens for (R26): its workspace's owners set its identifier and
    scopes (docs/oauth.md, "Resource indicators")."""
    agent = get_object_or_404(agent_policy.agents_visible_to(request.user).select_related("workspace"), pk=agent_id)
    rbac.require(resource_servers.can_make_resource(request.user, agent),
                 "Only the owners of the agent's workspace make it a resource.")
    server = ResourceServer.objects.filter(agent=agent).first()
    initial = {"identifier": server.identifier, "scopes": " ".join(server.scopes)} if server else {}
    form = AgentResourceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            resource_servers.agent_resource_set(actor=request.user, agent=agent, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"{agent.name} is a resource at {form.cleaned_data['identifier']}.")
            return redirect("agent-resource", agent_id=agent.pk)
    return render(request, "governance/signin/agent_resource.html", {
        "agent": agent, "server": server, "form": form, "jwks_url": settings.PORTAL_BASE_URL + "/oauth/jwks/",
        "issuer": settings.PORTAL_BASE_URL})


def agent_resource_panels(user, agent) -> list[dict]:
    """The agent page's "As a resource" card (``agents.signals.detail_panels``): the identifier and scopes when the
    agent is a resource, and the link to change them for its workspace's owners (one query)."""
    server = ResourceServer.objects.filter(agent=agent).only("identifier", "scopes", "revoked_at", "agent_id").first()
    can_manage = resource_servers.can_make_resource(user, agent)
    if server is None and not can_manage:
        return []
    return [{"template": "governance/signin/agent_resource_panel.html", "slot": "side", "agent": agent,
             "server": server, "can_manage": can_manage}]


FORBIDDEN = "The sign-in log is open to workspace owners and security readers."


def _signin_queryset(request):
    """The sign-ins this user may see, narrowed by the filters; invalid filters match nothing."""
    rbac.require(signins.can_view_signins(request.user), FORBIDDEN)
    rows = signins.signins_visible_to(request.user)
    form = SignInFilterForm(request.GET or None)
    if form.is_bound and form.is_valid():
        rows = signins.signins_filtered(rows, form.cleaned_data)
    elif form.is_bound:
        rows = rows.none()
    return form, rows


@login_required
@require_GET
def signin_list(request):
    form, rows = _signin_queryset(request)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    signin_page = page(request, signins.signins_for_page(rows))
    linkable = signins.visible_agent_ids(request.user, (row.agent_id for row in signin_page))
    agent_resources = signins.resource_agents() if any(row.resource for row in signin_page) else {}
    for row in signin_page:
        row.resource_agent = agent_resources.get(row.resource, "")
    return render(request, "governance/signin/signins.html", {
        "form": form, "page": signin_page, "query": query.urlencode(), "linkable": linkable,
    })


@login_required
@require_GET
def signin_export(request):
    """Stream the filtered log as CSV or JSON; memory stays flat whatever the row count."""
    _form, rows = _signin_queryset(request)
    return streamed_export(request, signins.export_rows(rows), signins.EXPORT_COLUMNS, "sign-ins",
                           csv_cell=_csv_cell)


def _csv_cell(column: str, value):
    if column in ("requested_scopes", "granted_scopes"):
        return " ".join(value)
    if column == "policies":
        return json.dumps(value, separators=(",", ":"))
    return value


