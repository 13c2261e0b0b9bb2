"""Sign-in pages: the sign-in log, risky agents, personal tokens and resource servers."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Case, Count, IntegerField, Max, Q, Value, When
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from governance.conditional_access.choices import RiskLevel
from governance.signin import risk, signins, tokens
from governance.signin.choices import DetectionStatus
from governance.signin.forms import (
    LEVELS,
    CompromisedForm,
    PersonalTokenForm,
    RemediationForm,
    ResourceServerForm,
    SignInFilterForm,
)
from governance.signin.models import ResourceServer, RiskDetection
from portal import rbac
from portal.viewutils import act, flash_form_errors, page, streamed_export


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
            created, secret = tokens.resource_server_create(actor=request.user, name=form.cleaned_data["name"])
            form = ResourceServerForm()
        except ValidationError as error:
            form.add_error(None, error)
    response = render(request, "governance/signin/resource_servers.html", {
        "form": form, "servers": ResourceServer.objects.select_related("created_by"), "created": created,
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


SEVERITY = Case(*(When(risk_level=level, then=Value(order)) for level, order in risk.RISK_ORDER.items()),
                default=Value(0), output_field=IntegerField())

REFUSAL = "Risk is for Global and Security Administrators, Security and Global Readers, and workspace owners."


def _require_reader(user) -> None:
    rbac.require(risk.can_view_risk(user), REFUSAL)


def _visible_agent(user, agent_id: int):
    agent = risk.agents_at_risk_visible_to(user).select_related("workspace").filter(pk=agent_id).first()
    if agent is None:
        raise Http404("No such agent.")
    return agent


def _list_context(request, form: RemediationForm | None = None) -> dict:
    level = request.GET.get("level", "")
    agents = risk.agents_at_risk_visible_to(request.user).exclude(risk_level=RiskLevel.NONE)
    if level in dict(LEVELS):
        agents = agents.filter(risk_level=level)
    else:
        level = ""
    agents = (agents.select_related("workspace")
              .annotate(open_detections=Count("risk_detections",
                                              filter=Q(risk_detections__status=DetectionStatus.OPEN)),
                        last_detected=Max("risk_detections__detected_at"), severity=SEVERITY)
              .order_by("-severity", "-last_detected", "name", "pk"))
    can_decide = risk.can_decide(request.user)
    policy = risk.remediation_policy()
    if form is None and can_decide:
        form = RemediationForm(initial={"enabled": "on" if policy.enabled else "off", "min_level": policy.min_level})
    return {"page": page(request, agents), "level": level, "levels": LEVELS, "query": f"level={level}" if level else "",
            "policy": policy, "can_decide": can_decide, "form": form, "active": "risk"}


@login_required
@require_GET
def risk_list(request):
    _require_reader(request.user)
    return render(request, "governance/signin/risk_list.html", _list_context(request))


@login_required
@require_GET
def risk_agent(request, agent_id: int):
    _require_reader(request.user)
    agent = _visible_agent(request.user, agent_id)
    detections = RiskDetection.objects.filter(agent=agent).select_related("resolved_by").order_by("-detected_at",
                                                                                                 "-pk")
    return render(request, "governance/signin/risk_agent.html", {
        "agent": agent, "page": page(request, detections), "can_decide": risk.can_decide(request.user),
        "compromised_form": CompromisedForm(), "active": "risk"})


@login_required
@require_POST
def risk_detection_decide(request, detection_id: int, decision: str):
    _require_reader(request.user)
    service = risk.DECISIONS.get(decision)
    detection = RiskDetection.objects.filter(
        pk=detection_id, agent__in=risk.agents_at_risk_visible_to(request.user)).first()
    if service is None or detection is None:
        raise Http404("No such detection.")
    rbac.require(risk.can_decide(request.user), risk.DECIDE_REFUSAL)
    act(request, service, lambda d: f"{d.get_kind_display()}: {d.get_status_display().lower()}. "
                                    f"{d.agent.name} is now at {d.agent.risk_level} risk.", detection=detection)
    return redirect("risk-agent", agent_id=detection.agent_id)


@login_required
@require_POST
def risk_agent_compromised(request, agent_id: int):
    _require_reader(request.user)
    agent = _visible_agent(request.user, agent_id)
    rbac.require(risk.can_decide(request.user), risk.DECIDE_REFUSAL)
    form = CompromisedForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("risk-agent", agent_id=agent.pk)
    act(request, risk.agent_confirm_compromised,
        lambda d: f"{d.agent.name} confirmed compromised: high risk, its tokens revoked"
                  f"{' and the agent disabled' if d.agent.status == 'disabled' else ''}.",
        agent=agent, reason=form.cleaned_data["reason"])
    return redirect("risk-agent", agent_id=agent.pk)


@login_required
@require_POST
def risk_remediation(request):
    rbac.require(risk.can_decide(request.user), "Only Global and Security Administrators set automatic remediation.")
    form = RemediationForm(request.POST)
    if form.is_valid():
        saved = act(request, risk.remediation_policy_save,
                    lambda p: ("Automatic remediation is on: agents at or above "
                               f"{p.get_min_level_display().lower()} risk are disabled and their tokens revoked."
                               if p.enabled else "Automatic remediation is off."),
                    enabled=form.cleaned_data["enabled"], min_level=form.cleaned_data["min_level"])
        if saved is not None:
            return redirect("risk-list")
    return render(request, "governance/signin/risk_list.html", _list_context(request, form), status=200)
