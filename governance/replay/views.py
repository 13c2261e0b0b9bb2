"""Replay pages (docs/policy-replay.md): what a policy would have blocked, by day and by agent, with the sign-ins
behind each; the confirmation that turns a policy on shows it first."""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from agents import policy as agent_policy
from governance.conditional_access import services as conditional_access
from governance.conditional_access.choices import PolicyState
from governance.conditional_access.forms import PolicyForm
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.replay import replay, selectors
from portal import change_views, charts, rbac

MANAGE_ONLY = "Only Global and Security Administrators manage conditional access."
TURN_ON_DAYS = 7


def _days(value) -> int:
    try:
        days = int(value or replay.WINDOWS[0])
    except (TypeError, ValueError):
        return replay.WINDOWS[0]
    return days if days in replay.WINDOWS else replay.WINDOWS[0]


def _day(value) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _int(value) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def replay_chart(result: replay.Replay, link: str | None = None) -> charts.Chart:
    """Would-be-blocked sign-ins and run starts per UTC day, with its table; with ``link`` (the replay page's URL)
    each day's column leads to the sign-ins behind it."""
    chart = charts.columns(
        links=[f"{link}?days={result.days}&day={row.day:%Y-%m-%d}#replay-drill" if link and row.sign_ins else None
               for row in result.by_day],
        chart_id="policy-replay", title=f"Would have been blocked, per day (UTC, last {result.days} days)",
        buckets=[f"{row.day:%d %b}" for row in result.by_day],
        series=[("sign-ins", [row.sign_ins for row in result.by_day]),
                ("run starts", [row.run_starts for row in result.by_day])],
        classes=["chart-bad", "chart-warn"], unit="requests", bucket_header="Day", width=1000, height=150,
        labels=10 if result.days > 10 else result.days)
    if chart.empty:
        chart.summary = "Nothing would have been blocked in this window."
    return chart


def _edited(request, policy: ConditionalAccessPolicy | None):
    """The editor's unsaved values as a policy object and its named agents, or the bound form with its errors."""
    form = PolicyForm(request.POST)
    if not form.is_valid():
        return form, None, (), ()
    data = dict(form.cleaned_data)
    try:
        agents = agent_policy.agents_named(request.user, data.pop("agents"))
        excluded = agent_policy.agents_named(request.user, data.pop("excluded_agents"))
        edited = ConditionalAccessPolicy(pk=policy.pk if policy else None,
                                         **{name: data[name] for name in conditional_access.POLICY_FIELDS
                                            if name in data})
        conditional_access.validate_policy(edited)
    except ValidationError as error:
        form.add_error(None, error)
        return form, None, (), ()
    return form, edited, agents, excluded


@login_required
@require_http_methods(["GET", "POST"])
def policy_replay(request, policy_id: int | None = None):
    """GET: a saved policy's replay. POST (from the editor): the unsaved values' replay, nothing saved."""
    rbac.require(selectors.can_replay(request.user),
                 "Conditional access is open to workspace owners, audit readers and its administrators.")
    policy = get_object_or_404(ConditionalAccessPolicy, pk=policy_id) if policy_id else None
    params = request.POST if request.method == "POST" else request.GET
    days, day, agent_id = _days(params.get("days")), _day(params.get("day")), _int(params.get("agent"))
    agent_ids = selectors.replay_agent_ids(request.user)
    form, agents, excluded = None, None, None
    if request.method == "POST":
        rbac.require(conditional_access.can_manage_policies(request.user), MANAGE_ONLY)
        form, replayed, agents, excluded = _edited(request, policy)
        if replayed is None:
            return render(request, "governance/replay/policy_replay.html",
                          {"policy": policy, "form": form, "preview": True, "errors": True}, status=200)
    elif policy is None:
        return redirect("policy-list")
    else:
        replayed = policy
    result = replay.policy_replay(replayed, days=days, agent_ids=agent_ids, agents=agents, excluded_agents=excluded)
    drill = None
    if day is not None or agent_id is not None:
        drill = list(replay.blocked_sign_ins(replayed, days=days, day=day, agent_id=agent_id, agent_ids=agent_ids,
                                             agents=agents, excluded_agents=excluded))
    drilled_agent = next((a.name for a in result.by_agent if a.agent_id == agent_id), None)
    return render(request, "governance/replay/policy_replay.html", {
        "policy": policy, "replayed": replayed, "result": result, "days": days,
        "chart": replay_chart(result, None if request.method == "POST" else request.path),
        "blocked_days": [row for row in reversed(result.by_day) if row.total],  # newest first; the chart has them all
        "windows": replay.WINDOWS, "day": day, "agent_id": agent_id, "drilled_agent": drilled_agent, "drill": drill,
        "drill_limit": replay.DRILL_LIMIT, "form": form, "preview": request.method == "POST",
        "can_manage": conditional_access.can_manage_policies(request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def policy_turn_on(request, policy_id: int):
    """Turning a policy on: first what it would have blocked in the last 7 days, then the confirmation."""
    rbac.require(conditional_access.can_manage_policies(request.user), MANAGE_ONLY)
    policy = get_object_or_404(ConditionalAccessPolicy, pk=policy_id)
    if policy.state == PolicyState.ON:
        messages.info(request, f"Policy {policy.name} is already on.")
        return redirect("policy-list")
    if request.method == "POST":
        try:
            saved = conditional_access.policy_save(
                actor=request.user, data={"state": PolicyState.ON}, policy=policy, agents=list(policy.agents.all()),
                excluded_agents=list(policy.excluded_agents.all()), **change_views.break_glass_from(request))
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return redirect("policy-turn-on", policy_id=policy.pk)
        if (waiting := change_views.pending_redirect(request, saved)) is not None:
            return waiting  # a high-impact change waits for a second administrator (docs/four-eyes.md)
        messages.success(request, f"Policy {saved.name} is on: it now blocks what it targets.")
        return redirect("policy-list")
    result = replay.policy_replay(policy, days=TURN_ON_DAYS)
    return render(request, "governance/replay/policy_turn_on.html", {
        "policy": policy, "result": result, "days": TURN_ON_DAYS,
        "chart": replay_chart(result, reverse("policy-replay", args=[policy.pk]))})
