"""Risk pages: risky agents, an agent's detections, administrators' decisions and automatic remediation."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Case, Count, IntegerField, Max, Q, Value, When
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from governance.conditional_access.choices import RiskLevel
from governance.risk import services as risk
from governance.risk.choices import DetectionStatus
from governance.risk.forms import LEVELS, CompromisedForm, RemediationForm
from governance.risk.models import RiskDetection
from portal import change_views, rbac
from portal.viewutils import act, flash_errors, flash_form_errors, page

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
    return render(request, "governance/risk/risk_list.html", _list_context(request))

@login_required
@require_GET
def risk_agent(request, agent_id: int):
    _require_reader(request.user)
    agent = _visible_agent(request.user, agent_id)
    detections = RiskDetection.objects.filter(agent=agent).select_related("resolved_by").order_by("-detected_at",
                                                                                                 "-pk")
    return render(request, "governance/risk/risk_agent.html", {
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
        try:
            saved = risk.remediation_policy_save(actor=request.user, enabled=form.cleaned_data["enabled"],
                                                 min_level=form.cleaned_data["min_level"],
                                                 **change_views.break_glass_from(request))
        except ValidationError as error:
            flash_errors(request, error)
            saved = None
        if (waiting := change_views.pending_redirect(request, saved)) is not None:
            return waiting
        if saved is not None:
            messages.success(request, "Automatic remediation is on: agents at or above "
                                      f"{saved.get_min_level_display().lower()} risk are disabled and their tokens "
                                      "revoked." if saved.enabled else "Automatic remediation is off.")
            return redirect("risk-list")
    return render(request, "governance/risk/risk_list.html", _list_context(request, form), status=200)
