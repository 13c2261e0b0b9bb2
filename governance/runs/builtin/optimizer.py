"""The built-in *Conditional Access Optimization Agent* (R20): deterministic, no language model.

It compares the active agents of the run's workspace with the conditional access policies and reports the gaps:

- ``agent_uncovered``: no enforced (on) policy targets the agent — one finding (medium) for all such agents of the
  workspace, whose suggested baseline policy covers them all, and one (high) per such agent at high risk;
- ``high_risk_unblocked``: a high-risk agent that no enforced, unconditional block policy targets (high);
- ``privileged_excluded``: an enforced policy excludes an agent holding a write permission or running as an
  administrator (high);
- ``report_only_stale``: a policy left in report-only for more than 30 days (low);
- ``report_only_ready``: a report-only policy whose replay over the last 30 days would have blocked nothing
  legitimate (low; docs/policy-replay.md, "The optimizer").

Each finding suggests a policy: a new *report-only* one (a report-only policy records and never blocks, so owners
of the agents may create it), or turning a report-only policy on (an administrator's decision) — proposed only when
its replay (``/api/v1/policies/<id>/replay/``) shows it would have blocked nothing legitimate: no success of an
active agent without an open risk detection. A stale policy that would have blocked legitimate requests is
reported for review, without the suggestion. ``execute`` reads ``/api/v1/agent-facts/``, ``/api/v1/policies/`` and
each report-only policy's replay with the run's token (its workspace's agents, or every agent with
``Portal.Read.All``); ``findings_from`` is the pure rule set; ``apply`` creates or turns on the suggested policy
through ``conditional_access.policy_save``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from agents.models import Agent
from governance.conditional_access import services as conditional_access
from governance.conditional_access.choices import PolicyGrant, PolicyState, RiskLevel
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.conditional_access.services import RISK_ORDER
from governance.runs.builtin import Applied, Output, count_by_level
from governance.runs.builtin import facts as agent_facts
from governance.runs.builtin.facts import parse_iso
from portal import changes

STALE_REPORT_ONLY_DAYS = 30
REPLAY_DAYS = 30  # the replay window the proposal to turn a report-only policy on rests on
UNCOVERED_NAMED = 10  # agents named in the detail of the "uncovered" finding; the suggestion lists them all
NAME_MAX = ConditionalAccessPolicy._meta.get_field("name").max_length
AUTHOR = "the Conditional Access Optimization Agent"


@dataclass(frozen=True)
class Finding:
    kind: str
    level: str
    detail: str
    action: str  # "create_policy" (a report-only one) or "enable_policy"
    suggested_policy: dict = field(default_factory=dict)
    agent_id: int | None = None
    agent: str = ""
    policy_id: int | None = None
    policy: str = ""

    def as_dict(self) -> dict:
        return {**asdict(self), "level": str(self.level)}


def _risk(level: str | None) -> int:
    return RISK_ORDER.get(level or RiskLevel.NONE, 0)


def _suggest(name: str, description: str, agents: list[dict], min_risk_level: str) -> dict:
    return {"name": name[:NAME_MAX], "description": description, "grant": PolicyGrant.BLOCK.value,
            "state": PolicyState.REPORT_ONLY.value, "agents": [a["id"] for a in agents],
            "agent_names": [a["name"] for a in agents], "min_risk_level": str(min_risk_level)}


def _unconditional(policy: dict | None) -> bool:
    """A block policy that applies whatever the network and time (risk is checked separately)."""
    return policy is None or not (policy.get("ip_ranges") or policy.get("time_windows"))


def _is_privileged(item: dict) -> bool:
    return bool(item.get(agent_facts.RUN_AS_ADMIN)) or any(p["write"] for p in item.get(agent_facts.PERMISSIONS, []))


def _replay_words(replay: dict) -> str:
    blocked = replay["blocked_sign_ins"] + replay["blocked_run_starts"]
    return (f"its replay over the last {replay['days']} days would have blocked {blocked} request"
            f"{'s' if blocked != 1 else ''} of {replay['agents']} agent{'s' if replay['agents'] != 1 else ''}")


def _report_only_findings(policy: dict, replay: dict | None, stale_before: datetime) -> list[Finding]:
    """A report-only policy: propose turning it on only when its replay blocked nothing legitimate; a stale one
    that would have is for review."""
    since = parse_iso(policy.get("state_changed_at"))
    stale = since is not None and since < stale_before
    ready = replay is not None and replay["legitimate_blocked"] == 0
    if ready:
        body = (f"would have blocked nothing legitimate: {_replay_words(replay)}, none of them a success of an "
                f"active agent without an open risk detection. It can be turned on")
        detail = (f"{policy['name']} has been report-only since {since:%Y-%m-%d}; it {body}" if stale
                  else f"{policy['name']} {body}")
        return [Finding("report_only_stale" if stale else "report_only_ready", RiskLevel.LOW, detail,
                        "enable_policy", {"enable_policy": policy["id"]}, policy_id=policy["id"],
                        policy=policy["name"])]
    if not stale:
        return []
    why = (f"{_replay_words(replay)}, {replay['legitimate_blocked']} of them legitimate" if replay is not None
           else "its replay could not be read")
    return [Finding("report_only_stale", RiskLevel.LOW,
                    f"{policy['name']} has been report-only since {since:%Y-%m-%d} (over {STALE_REPORT_ONLY_DAYS} "
                    f"days), and {why}: review it before turning it on", "review", {},
                    policy_id=policy["id"], policy=policy["name"])]


def findings_from(facts: list[dict], policies: list[dict], now: datetime,
                  replays: dict[int, dict] | None = None) -> list[Finding]:
    """The gaps between these agent facts (``/api/v1/agent-facts/`` items, with their ``policies`` section) and
    these policies (``/api/v1/policies/`` items), ranked by level, then agent or policy name. ``replays``: each
    report-only policy's replay (``/api/v1/policies/<id>/replay/``) by policy id."""
    by_id = {p["id"]: p for p in policies}
    found: list[Finding] = []
    uncovered: list[dict] = []
    for item in facts:
        entries = item.get(agent_facts.POLICIES)
        if entries is None:
            continue  # the token does not open the policies: coverage cannot be judged
        name, risk = item["name"], item["risk_level"]
        enforced = [e for e in entries if e["state"] == PolicyState.ON and not e["excluded"]]
        if not enforced and risk == RiskLevel.HIGH:
            trial = sorted(e["name"] for e in entries if e["state"] == PolicyState.REPORT_ONLY and not e["excluded"])
            note = f"; report-only, not enforced: {', '.join(trial)}" if trial else ""
            found.append(Finding(
                "agent_uncovered", RiskLevel.HIGH,
                f"no enforced conditional access policy targets {name} (risk {risk}){note}", "create_policy",
                _suggest(f"Baseline for {name}", f"Blocks {name} when its risk reaches medium. Suggested by "
                         f"{AUTHOR}: no enforced policy covered it.", [item], RiskLevel.MEDIUM),
                agent_id=item["id"], agent=name))
        elif not enforced:
            uncovered.append(item)  # one finding for all of them: one baseline policy covers them
        blocked = any(e["grant"] == PolicyGrant.BLOCK and _risk(e["min_risk_level"]) <= _risk(RiskLevel.HIGH)
                      and _unconditional(by_id.get(e["id"])) for e in enforced)
        if risk == RiskLevel.HIGH and not blocked:
            found.append(Finding(
                "high_risk_unblocked", RiskLevel.HIGH,
                f"{name} is at high risk and no enforced block policy stops it", "create_policy",
                _suggest(f"Block high-risk {name}", f"Blocks {name} while its risk is high. Suggested by {AUTHOR}: "
                         f"nothing enforced blocked it at high risk.", [item], RiskLevel.HIGH),
                agent_id=item["id"], agent=name))
        if _is_privileged(item):
            for entry in sorted((e for e in entries if e["state"] == PolicyState.ON and e["excluded"]),
                                key=lambda e: e["name"]):
                why = "runs as an administrator" if item.get(agent_facts.RUN_AS_ADMIN) else "holds write permissions"
                level = entry["min_risk_level"] or RiskLevel.MEDIUM
                found.append(Finding(
                    "privileged_excluded", RiskLevel.HIGH,
                    f"{name} {why} and is excluded from the enforced policy {entry['name']}", "create_policy",
                    _suggest(f"Cover {name} excluded from {entry['name']}",
                             f"{name} {why} but is excluded from {entry['name']}. This policy blocks it when its "
                             f"risk reaches {level}, to show what the exclusion lets through. Suggested by {AUTHOR}.",
                             [item], level),
                    agent_id=item["id"], agent=name, policy_id=entry["id"], policy=entry["name"]))
    if uncovered:
        names = [item["name"] for item in uncovered]
        shown = ", ".join(names[:UNCOVERED_NAMED]) + (f" and {len(names) - UNCOVERED_NAMED} more"
                                                       if len(names) > UNCOVERED_NAMED else "")
        workspace = uncovered[0].get("workspace") or "the workspace"
        found.append(Finding(
            "agent_uncovered", RiskLevel.MEDIUM,
            f"{len(names)} agent{'s are' if len(names) != 1 else ' is'} targeted by no enforced conditional "
            f"access policy: {shown}", "create_policy",
            _suggest(f"Baseline for {len(names)} uncovered agent{'s' if len(names) != 1 else ''} in {workspace}",
                     f"Blocks these agents when their risk reaches medium. Suggested by {AUTHOR}: no enforced "
                     f"policy covered them.", uncovered, RiskLevel.MEDIUM),
            agent_id=uncovered[0]["id"] if len(uncovered) == 1 else None,
            agent=names[0] if len(uncovered) == 1 else ""))
    stale_before = now - timedelta(days=STALE_REPORT_ONLY_DAYS)
    for policy in policies:
        if policy["state"] == PolicyState.REPORT_ONLY:
            found.extend(_report_only_findings(policy, (replays or {}).get(policy["id"]), stale_before))
    return sorted(found, key=lambda f: (-_risk(f.level), f.agent or f.policy, f.kind, f.policy))


def execute(client, run) -> Output:
    """One run: read the workspace's agent facts and the policies with the run's token, return the gaps."""
    workspace = run.agent.workspace.slug
    facts = client.get_all("/api/v1/agent-facts/", {"workspace": workspace})
    policies = client.get_all("/api/v1/policies/")
    replays = {p["id"]: client.get(f"/api/v1/policies/{p['id']}/replay/", {"days": REPLAY_DAYS})
               for p in policies if p["state"] == PolicyState.REPORT_ONLY}
    found = findings_from(facts, policies, timezone.now(), replays)
    summary = (f"Checked {len(facts)} active agent{'s' if len(facts) != 1 else ''} in {workspace} against "
               f"{len(policies)} conditional access polic{'ies' if len(policies) != 1 else 'y'}: {len(found)} "
               f"finding{'s' if len(found) != 1 else ''} ({count_by_level(found)}).")
    if facts and agent_facts.POLICIES not in facts[0]:
        summary += " Coverage not checked: the run's token does not open the agents' policies."
    if facts and agent_facts.PERMISSIONS not in facts[0]:
        summary += " Privileged exclusions not checked: the run's token does not open the agents' permissions."
    return Output(summary=summary, findings=[f.as_dict() for f in found])


def _enable(actor, suggestion: dict) -> Applied:
    policy = ConditionalAccessPolicy.objects.filter(pk=suggestion["enable_policy"]).first()
    if policy is None:
        raise ValidationError("That policy no longer exists.")
    if not conditional_access.can_manage_policies(actor):
        raise PermissionDenied("Turning a policy on is for Global and Security Administrators: it starts blocking.")
    if policy.state != PolicyState.REPORT_ONLY:
        raise ValidationError(f"'{policy.name}' is no longer report-only (it is {policy.get_state_display()}).")
    saved = conditional_access.policy_save(actor=actor, data={"state": PolicyState.ON}, policy=policy,
                                           agents=list(policy.agents.all()),
                                           excluded_agents=list(policy.excluded_agents.all()))
    if changes.is_pending(saved):  # a block policy for every agent waits for a second administrator (R31)
        return Applied(f"Turning on '{policy.name}' waits for a second administrator.")
    return Applied(f"Turned on '{policy.name}': it is now enforced.")


def apply(actor, run, finding: dict, params: dict) -> Applied:
    """Create the finding's suggested policy in report-only (administrators, or an effective owner of every agent
    it names: ``policy_save(report_only_for_owners=True)``), or turn on a stale report-only policy
    (administrators only). Refused when the policy names agents outside the run's workspace or its name is taken.
    """
    suggestion = finding.get("suggested_policy") or {}
    if "enable_policy" in suggestion:
        return _enable(actor, suggestion)
    try:
        ids = {int(i) for i in suggestion.get("agents") or []}
    except (TypeError, ValueError):
        raise ValidationError("This finding carries no usable policy suggestion.") from None
    agents = list(Agent.objects.filter(pk__in=ids).select_related("workspace").order_by("name"))
    if not ids or len(agents) != len(ids) or any(a.workspace_id != run.agent.workspace_id for a in agents):
        raise PermissionDenied("The suggested policy must name agents of the workspace this run checked.")
    grant = suggestion.get("grant", PolicyGrant.BLOCK)
    if grant not in PolicyGrant.values or not suggestion.get("name"):
        raise ValidationError("This finding carries no usable policy suggestion.")
    data = {"name": suggestion["name"], "description": suggestion.get("description", ""),
            "state": PolicyState.REPORT_ONLY, "grant": grant, "min_risk_level": suggestion.get("min_risk_level") or ""}
    policy = conditional_access.policy_save(actor=actor, data=data, agents=agents, report_only_for_owners=True)
    return Applied(f"Created the report-only policy '{policy.name}' for {', '.join(a.name for a in agents)}. It "
                   f"records what it would do and blocks nothing; a Global or Security Administrator can turn it on.")
