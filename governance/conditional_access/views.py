"""Conditional-access pages: the policy list, the editor and what-if."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from agents import attributes as agent_attributes
from agents import policy as agent_policy
from governance.conditional_access import services as conditional_access
from governance.conditional_access.choices import PolicyState
from governance.conditional_access.forms import PolicyForm, WhatIfForm
from governance.conditional_access.models import ConditionalAccessPolicy
from portal import change_views, rbac


def _require_policy_reader(user) -> None:
    rbac.require(conditional_access.can_manage_policies(user) or rbac.can_view_audit(user),
                 "Conditional access is open to workspace owners, audit readers and its administrators.")


@login_required
@require_GET
def policy_list(request):
    _require_policy_reader(request.user)
    policies = list(conditional_access.policies_for_reader(user=request.user))
    for policy in policies:
        policy.hidden_agents = conditional_access.hidden_agent_count(policy)
    return render(request, "governance/conditional_access/policy_list.html", {
        "policies": policies, "can_manage": conditional_access.can_manage_policies(request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def policy_edit(request, policy_id: int | None = None):
    rbac.require(conditional_access.can_manage_policies(request.user),
                 "Only Global and Security Administrators manage conditional access.")
    policy = get_object_or_404(ConditionalAccessPolicy, pk=policy_id) if policy_id else None
    initial = {}
    if policy is not None:
        initial = {name: getattr(policy, name) for name in conditional_access.POLICY_FIELDS}
        initial.update({
            "agents": "; ".join(a.name for a in policy.agents.all()),
            "excluded_agents": "; ".join(a.name for a in policy.excluded_agents.all()),
            "attribute_rules": "\n".join(f"{r['key']} {r['op']} "
                                         f"{','.join(r['value']) if isinstance(r['value'], list) else r['value']}"
                                         for r in policy.attribute_rules),
            "ip_ranges": "\n".join(policy.ip_ranges),
            "time_windows": "\n".join(f"{','.join(str(d) for d in w['days'])} {w['start']}-{w['end']}"
                                      for w in policy.time_windows),
            "resources": "\n".join(policy.resources),
        })
    form = PolicyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            agents = agent_policy.agents_named(request.user, data.pop("agents"))
            excluded = agent_policy.agents_named(request.user, data.pop("excluded_agents"))
            # Turning a policy on goes through its confirmation, which shows what it would have blocked first
            # (docs/policy-replay.md); the rest of the form is saved now. An emergency (break-glass) applies at once.
            turning_on = (data.get("state") == PolicyState.ON and (policy is None or policy.state != PolicyState.ON)
                          and not request.POST.get("break_glass"))
            if turning_on:
                data["state"] = policy.state if policy else PolicyState.REPORT_ONLY
            saved = conditional_access.policy_save(actor=request.user, data=data, agents=agents,
                                                   excluded_agents=excluded, policy=policy,
                                                   **change_views.break_glass_from(request))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if (waiting := change_views.pending_redirect(request, saved)) is not None:
                return waiting
            if turning_on:
                messages.info(request, f"Policy {saved.name} saved. See what it would have blocked, then turn it on.")
                return redirect("policy-turn-on", policy_id=saved.pk)
            messages.success(request, f"Policy {saved.name} saved ({saved.get_state_display().lower()}).")
            return redirect("policy-list")
    return render(request, "governance/conditional_access/policy_form.html", {"form": form, "policy": policy})


@login_required
@require_GET
def policy_what_if(request):
    """Evaluate every policy for an agent and a context, with each verdict's reason and the decision (R20)."""
    _require_policy_reader(request.user)
    form = WhatIfForm(request.GET or None)
    evaluation = agent = resource = None
    attribute_rows = []
    if form.is_bound and form.is_valid():
        agent = agent_policy.agents_visible_to(request.user).select_related("blueprint").filter(
            name=form.cleaned_data["agent"]).first()
        if agent is None:
            form.add_error("agent", "No agent you can see has that name.")
        else:
            facts = conditional_access.agent_facts(agent)
            context = conditional_access.AccessContext(
                ip=form.cleaned_data["ip"] or None, at=form.cleaned_data["at"],
                scopes=frozenset(form.cleaned_data["scopes"].split()), resource=form.cleaned_data["resource"].strip(),
                credential_type=form.cleaned_data["credential_type"])
            resource = conditional_access.context_resource(context)
            evaluation = conditional_access.evaluate(facts, context)
            # The attributes the decision saw, each with its set and whether its owners could have changed it (R20).
            protection = agent_attributes.attribute_protection(facts.attributes)
            attribute_rows = [{"key": key, "value": value, "protection": protection[key]}
                              for key, value in sorted(facts.attributes.items())]
    return render(request, "governance/conditional_access/policy_what_if.html", {"form": form, "evaluation": evaluation,
                                                              "agent": agent, "attribute_rows": attribute_rows,
                                                              "resource": resource})
