"""Bulk actions on the agents list: disable, enable, add a sponsor or retire many agents at once.

Each agent goes through the same service as on its own page (``registry.agent_disable`` …), so each writes its own
audit event and keeps every rule; the whole selection runs in one transaction, so a refusal for any agent changes
nothing (docs/design.md, "Bulk actions"). Before anything happens the confirmation page shows, per agent, what
ends: live tokens and access-package assignments (counted by the apps that hold them, through
``signals.ending_counts``) and the credentials retirement revokes."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from agents import policy, registry, signals
from agents.choices import AgentStatus
from agents.models import Agent, AgentIdentity, FederatedCredential
from portal import changes
from portal.models import User

ACTIONS = {"disable": "Disable", "enable": "Enable", "add_sponsor": "Add a sponsor", "retire": "Retire"}
#: At most this many agents in one bulk action (a page of the list is 50).
MAX_AGENTS = 200


def _credential_counts(agent_ids: Sequence[int]) -> dict[int, int]:
    """Active credentials (secrets, keys, federated credentials) per agent: one query."""
    now = timezone.now()
    rows = AgentIdentity.objects.filter(agent_id__in=agent_ids).annotate(
        secrets=Count("credentials", filter=Q(credentials__revoked_at__isnull=True,
                                              credentials__expires_at__gt=now), distinct=True),
        keys=Count("key_credentials", filter=Q(key_credentials__revoked_at__isnull=True,
                                               key_credentials__expires_at__gt=now), distinct=True),
    ).values_list("agent_id", "secrets", "keys")
    federated = dict(FederatedCredential.objects.filter(agent_id__in=agent_ids, revoked_at__isnull=True)
                     .values_list("agent_id").annotate(n=Count("pk")).order_by())
    counts = {agent_id: federated.get(agent_id, 0) for agent_id in agent_ids}
    for agent_id, secrets, keys in rows:
        counts[agent_id] += secrets + keys
    return counts


def allowed(user: User, agent: Agent, action: str) -> str:
    """Why ``user`` may not apply ``action`` to ``agent`` (in words), or "" when it may."""
    if action in ("disable", "enable"):
        if not policy.can_toggle_agent(user, agent):
            return "only its sponsors and owners may disable or enable it"
        if agent.status == AgentStatus.RETIRED:
            return "it is retired"
        if action == "enable" and agent.status != AgentStatus.DISABLED:
            return f"it is {agent.get_status_display().lower()}, not disabled"
        if action == "disable" and agent.status == AgentStatus.DISABLED:
            return "it is disabled already"
        return ""
    if not policy.can_manage_agent(user, agent):
        return "only its owners and the workspace's owners may do this"
    if agent.status == AgentStatus.RETIRED:
        return "it is retired"
    return ""


def bulk_preview(user: User, agents: Sequence[Agent], action: str) -> list[dict]:
    """Per agent: whether the action applies and what ends with it, in a fixed number of queries."""
    ids = [agent.pk for agent in agents]
    ending: dict[int, dict[str, int]] = {agent_id: {} for agent_id in ids}
    if action in ("disable", "retire"):
        for answer in signals.answers(signals.ending_counts, agent_ids=ids, action=action):
            for agent_id, counts in answer.items():
                ending.setdefault(agent_id, {}).update(counts)
    if action == "retire":
        for agent_id, n in _credential_counts(ids).items():
            ending[agent_id]["credentials"] = n
    return [{"agent": agent, "refused": allowed(user, agent, action), "ends": ending.get(agent.pk, {})}
            for agent in agents]


BULK_RETIRE_CHANGE = "agents.bulk_retire"


def agents_bulk_apply(*, actor: User, agents: Sequence[Agent], action: str, sponsor: User | None = None,
                      break_glass: bool = False, justification: str = "") -> int | changes.ChangeRequest:
    """Apply ``action`` to every agent (``_agents_bulk_apply_now``). Retiring more agents at once than the
    organisation's threshold is high-impact (R31; docs/four-eyes.md): it waits for a second administrator unless
    ``break_glass``, and the pending request is returned instead of the count."""
    if action == "retire" and len(agents) > changes.bulk_retire_threshold():
        return changes.gate(actor=actor, kind=BULK_RETIRE_CHANGE, break_glass=break_glass,
                            justification=justification, payload={"agent_ids": sorted(a.pk for a in agents)})
    return _agents_bulk_apply_now(actor=actor, agents=agents, action=action, sponsor=sponsor)


def _apply_bulk_retire(*, actor: User, payload: dict) -> int:
    agents = list(Agent.objects.filter(pk__in=payload["agent_ids"]).select_related("workspace").order_by("pk"))
    if len(agents) != len(payload["agent_ids"]):
        raise ValidationError("Some of the agents no longer exist. Nothing was changed.")
    return _agents_bulk_apply_now(actor=actor, agents=agents, action="retire")


changes.register(BULK_RETIRE_CHANGE, label="Retire many agents at once", apply=_apply_bulk_retire,
                 describe=lambda p: f"{len(p['agent_ids'])} agents",
                 outcome=lambda count: f"{count} agents retired.")


@transaction.atomic
def _agents_bulk_apply_now(*, actor: User, agents: Sequence[Agent], action: str,
                           sponsor: User | None = None) -> int:
    """Apply ``action`` to every agent through its own service (one audit event each), all or nothing: the first
    refusal raises (naming the agent) and rolls every change back. Returns how many agents were changed."""
    if action not in ACTIONS:
        raise ValidationError("Choose disable, enable, add a sponsor or retire.")
    if not agents:
        raise ValidationError("Select at least one agent.")
    if len(agents) > MAX_AGENTS:
        raise ValidationError(f"Select at most {MAX_AGENTS} agents at a time.")
    if action == "add_sponsor" and sponsor is None:
        raise ValidationError("Choose the sponsor to add.")
    for agent in agents:
        why = allowed(actor, agent, action)
        if why:
            error = PermissionDenied if why.startswith("only") else ValidationError
            raise error(f"{agent.name}: {why}. Nothing was changed.")
        try:
            if action == "disable":
                registry.agent_disable(actor=actor, agent=agent, reason="bulk action on the agents list")
            elif action == "enable":
                registry.agent_enable(actor=actor, agent=agent)
            elif action == "add_sponsor":
                registry.agent_person_add(actor=actor, agent=agent, user=sponsor, role=policy.SPONSOR_AGENT)
            else:
                registry.agent_retire(actor=actor, agent=agent)
        except ValidationError as error:
            raise ValidationError([f"{agent.name}: {message} Nothing was changed." for message in error.messages]) \
                from error
    return len(agents)
