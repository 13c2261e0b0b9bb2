"""Conditional access for agents (R20): which policies apply to an agent in a context, and the decision.

``evaluate`` is the one decision point: the token endpoint, run starts and the what-if view
call it with the same inputs, so what-if matches real issuance. It is a pure function of the policies, the agent's
facts and the context; ``agent_facts`` and ``active_policies`` load those in a fixed number of queries.

Semantics: a policy that is off is skipped. A *block* policy blocks when it targets the agent and all its
conditions hold. An *allow* policy is an allow-list: when it targets the agent, the agent is allowed only while
its conditions hold, and blocked otherwise. Block wins. A report-only policy is evaluated and recorded with what it
would have done, but never blocks.
"""

from __future__ import annotations

import functools
import ipaddress
import time as clock
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from agents import policy as agent_policy
from agents.choices import CredentialType
from agents.models import Agent, AgentUser, AttributeValue
from governance.conditional_access.choices import PolicyGrant, PolicyState, RiskLevel
from governance.conditional_access.models import ConditionalAccessPolicy
from portal import audit, changes

RISK_ORDER = {RiskLevel.NONE: 0, RiskLevel.LOW: 1, RiskLevel.MEDIUM: 2, RiskLevel.HIGH: 3}
AGENT_USER_KIND = "agent_user"
ATTRIBUTE_OPS = ("equals", "in", "starts_with")


@dataclass(frozen=True)
class AgentFacts:
    """What policies look at, loaded once per decision."""

    agent_id: int
    kind: str
    publisher_kind: str
    risk_level: str
    has_agent_user: bool
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccessContext:
    ip: str | None = None
    at: datetime | None = None
    scopes: frozenset[str] = frozenset()
    resource: str = ""  # the audience asked for (R26): a policy can target resources
    credential_type: str = ""  # how the client authenticated (R28): secret, key or federated; "" when unknown


@dataclass(frozen=True)
class PolicyVerdict:
    policy_id: int
    name: str
    state: str
    outcome: str  # "block", "allow" or "not_applicable"
    reason: str

    @property
    def enforced(self) -> bool:
        return self.state == PolicyState.ON


@dataclass(frozen=True)
class Evaluation:
    allowed: bool
    verdicts: tuple[PolicyVerdict, ...]

    @property
    def blocking(self) -> list[PolicyVerdict]:
        return [v for v in self.verdicts if v.enforced and v.outcome == "block"]

    def applied(self) -> list[dict]:
        """The verdicts of the policies that applied, as the sign-in log and run records keep them."""
        return [{"id": v.policy_id, "name": v.name, "state": v.state, "outcome": v.outcome, "reason": v.reason}
                for v in self.verdicts if v.outcome != "not_applicable"]

    @property
    def blocked_by(self) -> str:
        """The names of the enforced policies that block, for refusal messages."""
        return ", ".join(v.name for v in self.blocking)

    @property
    def report_only_blocks(self) -> list[PolicyVerdict]:
        """What report-only policies would have blocked (recorded, never enforced)."""
        return [v for v in self.verdicts if v.state == PolicyState.REPORT_ONLY and v.outcome == "block"]


def agent_facts(agent: Agent, policies: Sequence[ConditionalAccessPolicy] | None = None) -> AgentFacts:
    """The agent's kind, publisher kind, risk, agent user and attributes.

    With ``policies`` given, only the facts some of them look at are loaded (the token endpoint passes the active
    ones: usually no query at all); without, everything (two queries). Facts no policy reads cannot change a
    decision, so both give the same evaluation."""
    wants_attributes = policies is None or any(p.attribute_rules for p in policies)
    wants_agent_user = policies is None or any(AGENT_USER_KIND in (p.agent_kinds or []) for p in policies)
    attributes = getattr(agent, "prefetched_attributes", None)  # read with the client on PostgreSQL
    if attributes is None:
        attributes = dict(AttributeValue.objects.filter(agent=agent).values_list("key", "value")) \
            if wants_attributes else {}
    has_agent_user = getattr(agent, "prefetched_has_agent_user", None)
    if has_agent_user is None:
        has_agent_user = wants_agent_user and AgentUser.objects.filter(identity__agent=agent).exists()
    publisher_kind = getattr(agent, "publisher_kind", None) or agent.blueprint.publisher_kind
    return AgentFacts(agent_id=agent.pk, kind=agent.kind, publisher_kind=publisher_kind,
                      risk_level=agent.risk_level or RiskLevel.NONE, has_agent_user=has_agent_user,
                      attributes=attributes)


def active_policies() -> list[ConditionalAccessPolicy]:
    """Every policy that is on or report-only, with its named and excluded agents (three queries)."""
    return list(ConditionalAccessPolicy.objects.exclude(state=PolicyState.OFF)
                .prefetch_related("agents", "excluded_agents").order_by("name", "pk"))


POLICY_VERSION_KEY = "aip:ca-policies:version"  # the cache key of the policies' version (an integer)
_POLICY_VERSION = POLICY_VERSION_KEY
_cached: dict = {"version": None, "loaded_at": 0.0, "policies": [], "decisions": {}}
CACHE_SECONDS = 5.0
DECISIONS_KEPT = 4096  # distinct inputs whose evaluation of the cached policies is kept until they are reloaded


def policies_changed() -> None:
    """Tell every process (through the shared cache) to reload the policies at its next decision."""
    cache.set(_POLICY_VERSION, clock.time_ns(), None)


def cached_active_policies(version: int | None = None) -> list[ConditionalAccessPolicy]:
    """``active_policies()`` kept per process: reloaded when a policy is saved (one cache read per call) and at
    least every ``CACHE_SECONDS`` — the token endpoint evaluates policies on every request. ``version``: the
    policies' version (``POLICY_VERSION_KEY``) as the caller has just read it from the cache, if it has (the token
    endpoint reads it in the round trip of its rate limits); otherwise it is read here."""
    if version is None:
        version = cache.get(_POLICY_VERSION)
    now = clock.monotonic()
    if version is None or version != _cached["version"] or now - _cached["loaded_at"] > CACHE_SECONDS:
        if version is None:
            version = clock.time_ns()
            cache.add(_POLICY_VERSION, version, None)
            version = cache.get(_POLICY_VERSION, version)
        policies = active_policies()
        for policy in policies:  # compiled once per load: the token endpoint evaluates these on every request
            policy.__dict__["_compiled"] = (id(policy), _compile(policy))
        _cached.update(version=version, loaded_at=now, policies=policies, decisions={})
    return _cached["policies"]


def evaluate_cached(facts: AgentFacts, context: AccessContext,
                    policies: Sequence[ConditionalAccessPolicy]) -> Evaluation:
    """``evaluate``, kept for the policies ``cached_active_policies`` returned until they are reloaded: an agent
    asking again from the same address, for the same resource, with the same kind of credential, in the same
    minute gets the same evaluation without the policies being walked again (the token endpoint's case). The key
    is everything ``evaluate`` reads: the agent's facts as read for this request (its risk and attributes
    included, so a change to them is a new key at once), the address, the resource, the credential type and the
    weekday, hour and minute (time windows are whole minutes; the requested scopes are read by no condition).
    Any other list of policies, or a context without a time, is evaluated afresh."""
    decisions = _cached["decisions"]
    if policies is not _cached["policies"] or context.at is None:
        return evaluate(facts, context, policies)
    at = context.at.astimezone(UTC)
    key = (facts.agent_id, facts.kind, facts.publisher_kind, facts.risk_level, facts.has_agent_user,
           frozenset(facts.attributes.items()), context.ip, context_resource(context), context.credential_type,
           at.weekday(), at.hour, at.minute)
    evaluation = decisions.get(key)
    if evaluation is None:
        if len(decisions) >= DECISIONS_KEPT:
            decisions.clear()
        evaluation = decisions[key] = evaluate(facts, context, policies)
    return evaluation


# --- targets ---------------------------------------------------------------------------------------------------
def _ids(policy: ConditionalAccessPolicy, relation: str) -> frozenset[int]:
    """The ids of a policy's named (or excluded) agents, computed once per loaded policy object."""
    cached = policy.__dict__.setdefault("_target_ids", {})
    if relation not in cached:
        cached[relation] = frozenset(a.pk for a in getattr(policy, relation).all())
    return cached[relation]


@dataclass(frozen=True)
class _AttributeRule:
    key: str
    op: str
    expected: object  # the value compared, in the form its operator reads (a tuple for "in", a string for
    # "starts_with")
    reason: str


@dataclass(frozen=True)
class _Compiled:
    """A policy's conditions in the form ``_verdict`` reads them: sets built, address ranges parsed, time windows
    and attribute rules read once, the reasons' fixed text written. The policies the token endpoint evaluates on
    every request (``cached_active_policies``) are compiled once per load; any other policy (what-if, replay, an
    unsaved form) is compiled when it is evaluated, so a changed policy object is never judged by its old
    conditions."""

    off: bool
    block: bool
    all_agents: bool
    excluded: frozenset[int]
    named: frozenset[int]
    kinds: frozenset[str]
    agent_user_kind: bool
    publisher_kinds: frozenset[str]
    attribute_rules: tuple[_AttributeRule, ...]
    min_risk_level: str
    networks: tuple
    ranges_text: str
    windows: tuple[tuple[frozenset[int], time, time], ...]
    resources: tuple[str, ...]
    resources_text: str
    credential_types: tuple[str, ...]
    credential_types_text: str


def _compile_rule(rule: dict) -> _AttributeRule:
    op, expected = rule.get("op", "equals"), rule.get("value")
    if op == "in":
        expected = tuple(expected) if isinstance(expected, list) else \
            tuple(v.strip() for v in str(expected).split(","))
    elif op == "starts_with":
        expected = str(expected)
    reason = f"matches the attribute rule {rule.get('key')} {rule.get('op', 'equals')} {rule.get('value')}"
    return _AttributeRule(rule.get("key", ""), op, expected, reason)


def _compile(policy: ConditionalAccessPolicy) -> _Compiled:
    kinds = frozenset(policy.agent_kinds or [])
    return _Compiled(
        off=policy.state == PolicyState.OFF, block=policy.grant == PolicyGrant.BLOCK, all_agents=policy.all_agents,
        excluded=_ids(policy, "excluded_agents"), named=_ids(policy, "agents"), kinds=kinds,
        agent_user_kind=AGENT_USER_KIND in kinds, publisher_kinds=frozenset(policy.publisher_kinds or []),
        attribute_rules=tuple(_compile_rule(rule) for rule in policy.attribute_rules or []),
        min_risk_level=policy.min_risk_level,
        networks=_networks(policy) if policy.ip_ranges else (), ranges_text=", ".join(policy.ip_ranges or []),
        windows=tuple((frozenset(w.get("days", range(7))), _parse_time(w["start"]), _parse_time(w["end"]))
                      for w in policy.time_windows or []),
        resources=tuple(policy.resources or []), resources_text=", ".join(policy.resources or []),
        credential_types=tuple(policy.credential_types or []),
        credential_types_text=", ".join(policy.credential_types or []))


def _compiled(policy: ConditionalAccessPolicy) -> _Compiled:
    """The compiled form kept with a cached policy (not with a copy of it: replay copies a policy to change it), or
    the policy compiled now."""
    kept = policy.__dict__.get("_compiled")
    return kept[1] if kept is not None and kept[0] == id(policy) else _compile(policy)


def _attribute_matches(rule: dict, attributes: dict[str, str]) -> bool:
    return _rule_matches(_compile_rule(rule), attributes)


def _rule_matches(rule: _AttributeRule, attributes: dict[str, str]) -> bool:
    value = attributes.get(rule.key)
    if value is None:
        return False
    if rule.op == "equals":
        return value == rule.expected
    if rule.op == "in":
        return value in rule.expected
    if rule.op == "starts_with":
        return value.startswith(rule.expected)
    return False


def _target_reason(policy: ConditionalAccessPolicy, facts: AgentFacts) -> str | None:
    """Why the policy targets the agent, or None when it does not (exclusions win)."""
    return _targets(_compiled(policy), facts)


def _targets(policy: _Compiled, facts: AgentFacts) -> str | None:
    if facts.agent_id in policy.excluded:
        return None
    if policy.all_agents:
        return "targets every agent"
    if facts.agent_id in policy.named:
        return "names this agent"
    if facts.kind in policy.kinds:
        return f"targets {facts.kind} agents"
    if policy.agent_user_kind and facts.has_agent_user:
        return "targets agents with an agent user"
    if facts.publisher_kind in policy.publisher_kinds:
        return f"targets {facts.publisher_kind}-published agents"
    for rule in policy.attribute_rules:
        if _rule_matches(rule, facts.attributes):
            return rule.reason
    return None


# --- conditions --------------------------------------------------------------------------------------------------
def _networks(policy: ConditionalAccessPolicy) -> tuple:
    """A policy's address ranges, parsed once per loaded policy object (the token endpoint evaluates the cached
    policies on every request)."""
    networks = policy.__dict__.get("_networks")
    if networks is None:
        networks = policy.__dict__["_networks"] = tuple(ipaddress.ip_network(r, strict=False)
                                                        for r in policy.ip_ranges)
    return networks


@functools.lru_cache(maxsize=4096)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _parse_time(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _in_window(window: dict, at: datetime) -> bool:
    days, start, end = frozenset(window.get("days", range(7))), _parse_time(window["start"]), \
        _parse_time(window["end"])
    return _in_compiled_window(days, start, end, at.astimezone(UTC))


def _in_compiled_window(days: frozenset[int], start: time, end: time, at: datetime) -> bool:
    """``at`` (in UTC) inside a window of ``days`` from ``start`` to ``end``."""
    if at.weekday() not in days:
        return False
    now = at.time()
    return start <= now < end if start <= end else (now >= start or now < end)  # a window may wrap midnight


def _unmet_conditions(policy: ConditionalAccessPolicy | _Compiled, facts: AgentFacts,
                      context: AccessContext) -> list[str]:
    if not isinstance(policy, _Compiled):
        policy = _compiled(policy)
    unmet = []
    if policy.min_risk_level and RISK_ORDER[facts.risk_level] < RISK_ORDER[policy.min_risk_level]:
        unmet.append(f"agent risk {facts.risk_level} is below {policy.min_risk_level}")
    if policy.networks:
        address = _address(context.ip or "")
        if address is None or not any(address in network for network in policy.networks):
            unmet.append(f"client address {context.ip or 'unknown'} is outside {policy.ranges_text}")
    if policy.windows:
        at = (context.at or timezone.now()).astimezone(UTC)
        if not any(_in_compiled_window(days, start, end, at) for days, start, end in policy.windows):
            unmet.append(f"{at:%a %H:%M} UTC is outside the policy's time windows")
    if policy.resources:
        resource = context_resource(context)
        if resource not in policy.resources:
            unmet.append(f"the resource {resource} is not one of {policy.resources_text}")
    if policy.credential_types and context.credential_type not in policy.credential_types:
        unmet.append(f"credential type {context.credential_type or 'unknown'} is not one of "
                     f"{policy.credential_types_text}")
    return unmet


def context_resource(context: AccessContext) -> str:
    """The resource a request is for (R26): the audience asked for, or the portal API (``PORTAL_BASE_URL``, its
    identifier) when none is named — a run's token and a request without ``resource`` are for the portal API."""
    return context.resource or settings.PORTAL_BASE_URL


def _verdict(policy: ConditionalAccessPolicy, facts: AgentFacts, context: AccessContext) -> PolicyVerdict:
    compiled = _compiled(policy)
    if compiled.off:
        return PolicyVerdict(policy.pk, policy.name, policy.state, "not_applicable", "the policy is off")
    targeted = _targets(compiled, facts)
    if targeted is None:
        return PolicyVerdict(policy.pk, policy.name, policy.state, "not_applicable", "does not target this agent")
    unmet = _unmet_conditions(compiled, facts, context)
    if compiled.block:
        if unmet:
            outcome, reason = "not_applicable", f"{targeted}, but {'; '.join(unmet)}"
        else:
            outcome, reason = "block", f"{targeted} and every condition holds"
    elif unmet:
        outcome, reason = "block", f"{targeted}; allowed only when its conditions hold, and {'; '.join(unmet)}"
    else:
        outcome, reason = "allow", f"{targeted} and every condition holds"
    return PolicyVerdict(policy.pk, policy.name, policy.state, outcome, reason)


def evaluate(facts: AgentFacts, context: AccessContext,
             policies: Sequence[ConditionalAccessPolicy] | None = None) -> Evaluation:
    """Each policy's verdict with its reason, and the decision: blocked when any enforced policy blocks."""
    verdicts = tuple(_verdict(p, facts, context) for p in (active_policies() if policies is None else policies))
    return Evaluation(allowed=not any(v.enforced and v.outcome == "block" for v in verdicts), verdicts=verdicts)


def attribute_keys_in_rules() -> dict[str, list[str]]:
    """``{key: [policy names]}`` of the attribute keys any policy's attribute rules match on, whatever its state
    (one query). The registry treats these keys as protected (R20, "Protected attributes"): an attribute a policy
    targets is not the agent owners' to change, or they could move their agent out of the policy."""
    keys: dict[str, list[str]] = {}
    for name, rules in ConditionalAccessPolicy.objects.values_list("name", "attribute_rules"):
        for rule in rules or []:
            if isinstance(rule, dict) and rule.get("key"):
                keys.setdefault(rule["key"], []).append(name)
    return keys


def validate_policy(policy: ConditionalAccessPolicy) -> None:
    """Check the JSON parts of a policy before it is saved (the policy services call this)."""
    problems = []
    for rule in policy.attribute_rules or []:
        if not rule.get("key") or rule.get("op", "equals") not in ATTRIBUTE_OPS:
            problems.append(f"Attribute rule {rule!r}: give a key and one of {', '.join(ATTRIBUTE_OPS)}.")
    for network in policy.ip_ranges or []:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            problems.append(f"'{network}' is not an IP range (CIDR, e.g. 10.0.0.0/8).")
    for window in policy.time_windows or []:
        try:
            _parse_time(window["start"]), _parse_time(window["end"])
            if not set(window.get("days", [])) <= set(range(7)):
                raise ValueError
        except (KeyError, ValueError, TypeError):
            problems.append(f"Time window {window!r}: days 0–6 (Monday = 0), start and end as HH:MM.")
    if policy.min_risk_level and policy.min_risk_level not in RISK_ORDER:
        problems.append(f"Unknown risk level '{policy.min_risk_level}'.")
    for resource in policy.resources or []:
        if not isinstance(resource, str) or not resource or len(resource) > 300 \
                or any(ord(c) <= 0x20 or ord(c) >= 0x7f for c in resource) or "://" not in resource:
            problems.append(f"'{str(resource)[:60]}' is not a resource identifier (an absolute URI, e.g. "
                            f"https://api.example.com).")
    if not isinstance(policy.credential_types, list):
        problems.append("Credential types are a list (secret, key, federated).")
    else:
        for credential_type in policy.credential_types:
            if credential_type not in CredentialType.values:
                problems.append(f"'{str(credential_type)[:60]}' is not a credential type (one of "
                                f"{', '.join(CredentialType.values)}).")
    if problems:
        raise ValidationError(problems)



# --- policy services (audited) --------------------------------------------------------------------------------------

POLICY_FIELDS = ("name", "description", "state", "grant", "all_agents", "agent_kinds", "publisher_kinds",
                 "attribute_rules", "min_risk_level", "ip_ranges", "time_windows", "resources", "credential_types")


def can_manage_policies(user) -> bool:
    """Conditional access is tenant-wide: Global and Security Administrators manage it."""
    from portal import rbac

    return bool(rbac.role_keys(user) & {rbac.GLOBAL_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR})


def _snapshot(policy: ConditionalAccessPolicy) -> dict:
    return {**{name: getattr(policy, name) for name in POLICY_FIELDS},
            "agents": sorted(a.name for a in policy.agents.all()),
            "excluded_agents": sorted(a.name for a in policy.excluded_agents.all())}


def _require_owned_report_only(actor, data: dict, agents: Sequence[Agent], excluded_agents: Sequence[Agent],
                               policy: ConditionalAccessPolicy | None) -> None:
    """What a non-administrator may save with ``report_only_for_owners``: a new report-only policy that names
    only agents the actor manages (a report-only policy never blocks, so it changes no one's access)."""
    if policy is not None:
        raise PermissionDenied("Only Global and Security Administrators change conditional access policies.")
    if data.get("state") != PolicyState.REPORT_ONLY:
        raise PermissionDenied("Owners create conditional access policies in report-only only; an administrator "
                               "turns them on.")
    if any(data.get(name) for name in ("all_agents", "agent_kinds", "publisher_kinds", "attribute_rules")) \
            or excluded_agents:
        raise PermissionDenied("An owner's report-only policy names its agents; wider targets and exclusions are "
                               "for administrators.")
    not_managed = sorted(a.name for a in agents if not agent_policy.can_manage_agent(actor, a))
    if not_managed:
        raise PermissionDenied(f"You may create a report-only policy only for agents you own; you do not own "
                               f"{', '.join(not_managed)}.")


BLOCK_ALL_CHANGE = "conditional_access.block_all"


def _blocks_every_agent(values: dict) -> bool:
    return (values.get("state") == PolicyState.ON and values.get("grant") == PolicyGrant.BLOCK
            and bool(values.get("all_agents")))


def turns_on_block_for_all(data: dict, policy: ConditionalAccessPolicy | None) -> bool:
    """Does this save turn a block policy on for every agent (a high-impact change, R31)?"""
    current = {name: getattr(policy, name) for name in ("state", "grant", "all_agents")} if policy else \
        {"state": PolicyState.REPORT_ONLY, "grant": PolicyGrant.BLOCK, "all_agents": False}
    return _blocks_every_agent({**current, **data}) and not (policy is not None and _blocks_every_agent(current))


def policy_save(*, actor, data: dict, agents: Sequence[Agent] = (), excluded_agents: Sequence[Agent] = (),
                policy: ConditionalAccessPolicy | None = None, report_only_for_owners: bool = False,
                break_glass: bool = False, justification: str = "") -> ConditionalAccessPolicy | changes.ChangeRequest:
    """Create or change a policy (``_policy_save_now``). Turning a block policy on for every agent is high-impact
    (R31; docs/four-eyes.md): it waits for a second administrator, unless ``break_glass``, and the pending request
    is returned instead of the policy."""
    if actor is not None and turns_on_block_for_all(data, policy):
        payload = {"policy_id": policy.pk if policy else None, "data": data,
                   "agent_ids": [a.pk for a in agents], "excluded_agent_ids": [a.pk for a in excluded_agents],
                   "report_only_for_owners": report_only_for_owners}
        return changes.gate(actor=actor, kind=BLOCK_ALL_CHANGE, payload=payload, break_glass=break_glass,
                            justification=justification)
    return _policy_save_now(actor=actor, data=data, agents=agents, excluded_agents=excluded_agents, policy=policy,
                            report_only_for_owners=report_only_for_owners)


def _apply_block_all(*, actor, payload: dict) -> ConditionalAccessPolicy:
    """Apply an approved (or break-glass) save with the payload that was asked for; the service's rules run again
    for the approver."""
    policy = None
    if payload["policy_id"] is not None:
        policy = ConditionalAccessPolicy.objects.filter(pk=payload["policy_id"]).first()
        if policy is None:
            raise ValidationError("The policy no longer exists.")
    agents = list(Agent.objects.filter(pk__in=payload["agent_ids"]))
    excluded = list(Agent.objects.filter(pk__in=payload["excluded_agent_ids"]))
    return _policy_save_now(actor=actor, data=payload["data"], agents=agents, excluded_agents=excluded,
                            policy=policy, report_only_for_owners=payload.get("report_only_for_owners", False))


def _describe_block_all(payload: dict) -> str:
    name = payload["data"].get("name")
    if name:
        return f"policy '{name}'"
    policy = ConditionalAccessPolicy.objects.filter(pk=payload["policy_id"]).only("name").first()
    return f"policy '{policy.name}'" if policy else "a policy"


changes.register(BLOCK_ALL_CHANGE, label="Turn on a block policy for every agent", apply=_apply_block_all,
                 describe=_describe_block_all, outcome=lambda policy: f"Policy {policy.name} saved.")


@transaction.atomic
def _policy_save_now(*, actor, data: dict, agents: Sequence[Agent] = (), excluded_agents: Sequence[Agent] = (),
                     policy: ConditionalAccessPolicy | None = None,
                     report_only_for_owners: bool = False) -> ConditionalAccessPolicy:
    """Create or change a policy (Global and Security Administrators; R20); one audit event.

    With ``report_only_for_owners`` an effective owner of every named agent may also create a new report-only
    policy naming only those agents (the Conditional Access Optimization Agent's suggestions). ``state_changed_at``
    follows the state: set on creation and whenever the state changes."""
    if actor is not None and not can_manage_policies(actor):
        if not report_only_for_owners:
            raise PermissionDenied("Only Global and Security Administrators manage conditional access.")
        _require_owned_report_only(actor, data, agents, excluded_agents, policy)
    before = None
    if policy is None:
        policy = ConditionalAccessPolicy(created_by=actor)
    else:
        policy = ConditionalAccessPolicy.objects.select_for_update().get(pk=policy.pk)
        before = _snapshot(policy)
    for name in POLICY_FIELDS:
        if name in data:
            setattr(policy, name, data[name])
    validate_policy(policy)
    if ConditionalAccessPolicy.objects.filter(name=policy.name).exclude(pk=policy.pk).exists():
        raise ValidationError(f"A policy called '{policy.name}' already exists.")
    targets = (policy.all_agents or policy.agent_kinds or policy.publisher_kinds or policy.attribute_rules
               or agents)
    if not targets:
        raise ValidationError("Choose whom the policy targets (every agent, kinds, publishers, attributes or agents).")
    if before is None or before["state"] != policy.state:
        policy.state_changed_at = timezone.now()
    policy.save()
    policy.agents.set(agents)
    policy.excluded_agents.set(excluded_agents)
    audit.record(actor=actor, action="policy.update" if before else "policy.create", target=policy,
                 before=before, after=_snapshot(policy))
    policies_changed()  # now, and again once committed: no process keeps the old set under the new version
    transaction.on_commit(policies_changed)
    return policy


def can_read_policies(user) -> bool:
    """Administrators of conditional access, audit readers and workspace owners read the policies."""
    from portal import rbac

    return can_manage_policies(user) or rbac.can_view_audit(user)


def policies_for_reader(*, user=None, agents_in_reach=None):
    """Every policy, each naming only the agents its reader may know of (R20, "Who reads policies").

    Policies are tenant-wide, so every reader sees every policy, but the agents a policy names (targets and
    exclusions) are another workspace's business: conditional-access administrators and organisation-wide readers
    (audit readers: inherited owners, Security and Global Readers) see every name; anyone else — a workspace owner —
    the agents visible to them. An agent's own token passes ``agents_in_reach`` (its workspace's agents, or every
    agent with ``Portal.Read.All``). Each policy carries ``shown_agents`` and ``shown_excluded_agents`` and, in
    ``hidden_agents``, how many named agents were left out (two queries for the names, whatever the count)."""
    from django.db.models import Count, Prefetch

    from portal import rbac

    if agents_in_reach is None and user is not None and not (can_manage_policies(user)
                                                              or rbac.can_read_all_audit(user)):
        agents_in_reach = agent_policy.agents_visible_to(user)
    shown = Agent.objects.order_by("name") if agents_in_reach is None else \
        Agent.objects.filter(pk__in=agents_in_reach.values("pk")).order_by("name")
    return (ConditionalAccessPolicy.objects
            .annotate(named_count=Count("agents", distinct=True) + Count("excluded_agents", distinct=True))
            .prefetch_related(Prefetch("agents", queryset=shown, to_attr="shown_agents"),
                              Prefetch("excluded_agents", queryset=shown, to_attr="shown_excluded_agents"))
            .order_by("name", "pk"))


def hidden_agent_count(policy: ConditionalAccessPolicy) -> int:
    """How many agents a policy from ``policies_for_reader`` names that its reader may not know of."""
    return policy.named_count - len(policy.shown_agents) - len(policy.shown_excluded_agents)
