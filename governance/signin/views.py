"""Sign-in pages: the sign-in log, risky agents, personal tokens and resource servers."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import policy as agent_policy
from governance.signin import exports, resource_servers, signins, tokens
from governance.signin.forms import AgentResourceForm, PersonalTokenForm, ResourceServerForm, SignInFilterForm
from governance.signin.models import ResourceServer, SignInExport
from portal import change_views, rbac
from portal.viewutils import PAGE_SIZE, act, flash_errors, page, streamed_export


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
            result = tokens.resource_server_create(actor=request.user, name=form.cleaned_data["name"],
                                                   identifier=form.cleaned_data["identifier"] or None,
                                                   scopes=form.cleaned_data["scopes"],
                                                   **change_views.break_glass_from(request))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if (waiting := change_views.pending_redirect(request, result)) is not None:
                return waiting
            created, secret = result
            form = ResourceServerForm()
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
    if not form.is_bound:
        rows = signins.signins_filtered(rows, {})  # the default window: the last 24 hours
    elif form.is_valid():
        rows = signins.signins_filtered(rows, form.cleaned_data)
    else:
        rows = rows.none()
    return form, rows


@login_required
@require_GET
def signin_list(request):
    form, rows = _signin_queryset(request)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    paginator = signins.LogPaginator(signins.signins_for_page(rows), PAGE_SIZE)
    signin_page = paginator.get_page(request.GET.get("page"))
    linkable = signins.visible_agent_ids(request.user, (row.agent_id for row in signin_page))
    agent_resources = signins.resource_agents() if any(row.resource for row in signin_page) else {}
    for row in signin_page:
        row.resource_agent = agent_resources.get(row.resource, "")
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    dated = bool(filters.get("since") or filters.get("until"))
    period = "" if dated else (filters.get("period") or signins.DEFAULT_PERIOD)
    widen = request.GET.copy()
    for name in ("page", "format", "period", "from", "to"):
        widen.pop(name, None)
    return render(request, "governance/signin/signins.html", {
        "form": form, "page": signin_page, "query": query.urlencode(), "linkable": linkable,
        "period": period, "period_label": PERIOD_LABELS.get(period, ""), "periods": PERIOD_LABELS,
        "widen_query": widen.urlencode(),
        "count_label": signins.about(paginator.count) if paginator.estimated else f"{paginator.count:,}",
        "retention_days": settings.SIGNIN_RETENTION_DAYS,
    })


PERIOD_LABELS = {"24h": "the last 24 hours", "7d": "the last 7 days", "30d": "the last 30 days",
                 "all": "everything kept"}


@login_required
@require_GET
def signin_export(request):
    """Stream the filtered log as CSV or JSON (memory stays flat whatever the row count) up to
    ``EXPORT_MAX_ROWS`` rows; a larger export is offered as a background job instead (nothing starts on a GET)."""
    form, rows = _signin_queryset(request)
    query = request.GET.copy()
    query.pop("page", None)
    file_format = "json" if query.pop("format", ["csv"])[-1] == "json" else "csv"
    if form.is_valid() and exports.is_large(request.user, query.dict()):
        return render(request, "governance/signin/export_start.html", {
            "filters": query, "file_format": file_format, "limit": settings.EXPORT_MAX_ROWS,
            "hours": settings.EXPORT_FILE_HOURS})
    return streamed_export(request, signins.export_rows(rows), signins.EXPORT_COLUMNS, "sign-ins",
                           csv_cell=signins.csv_cell)


@login_required
@require_POST
def signin_export_start(request):
    """Start a large export as a background job for the filters posted (the log's query string)."""
    rbac.require(signins.can_view_signins(request.user), FORBIDDEN)
    filters = request.POST.copy()
    filters.pop("csrfmiddlewaretoken", None)
    file_format = filters.pop("format", ["csv"])[-1]
    try:
        export = exports.signin_export_start(actor=request.user, filters=filters.dict(), file_format=file_format)
    except ValidationError as error:
        flash_errors(request, error)
        return redirect("signin-list")
    return redirect("signin-export-job", export_id=export.pk)


def _own_export(request, export_id: int) -> SignInExport:
    """An export is its requester's alone: anyone else gets a 404."""
    rbac.require(signins.can_view_signins(request.user), FORBIDDEN)
    return get_object_or_404(SignInExport, pk=export_id, requested_by=request.user)


@login_required
@require_GET
def signin_export_job(request, export_id: int):
    export = _own_export(request, export_id)
    template = ("governance/signin/partials/export_progress.html" if request.htmx
                else "governance/signin/export_job.html")
    return render(request, template, {"export": export})


@login_required
@never_cache
@require_POST
def signin_export_download(request, export_id: int):
    """The export's file, once: a second download is 410 Gone, with the reason."""
    export = _own_export(request, export_id)
    try:
        handle = exports.signin_export_download(actor=request.user, export=export)
    except exports.ExportGone as gone:
        return render(request, "governance/signin/export_job.html", {"export": export, "gone": str(gone)},
                      status=410)
    content_type = "application/json" if export.file_format == "json" else "text/csv"
    response = FileResponse(handle, content_type=content_type, as_attachment=True,
                            filename=f"sign-ins-{export.pk}.{export.file_format}")
    response["Cache-Control"] = "no-store"
    return response
