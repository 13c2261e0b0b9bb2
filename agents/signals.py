"""What the registry announces to the apps above it, and what it asks them.

The registry never imports governance (imports flow downward: docs/design.md, "Layers"). Where governance must
react to a registry change, or add to what the registry shows, the registry sends one of these Django signals and
governance's sub-apps connect a receiver in their ``AppConfig.ready()``. Receivers run in the sender's thread,
inside its transaction: a receiver that fails rolls the whole change back.

Events (sent inside the service's transaction, after the change is written):

- ``agent_created(actor, created)``: agents were provisioned; ``created`` is a list of ``(agent, spec)``.
- ``agent_disabled(agent, retiring)``: an agent was disabled (or is being retired: ``retiring`` is True); its tokens
  and runs must stop.
- ``agent_retired(agent, now)``: an agent is being retired; each receiver ends what it holds and answers a dict of
  counts ("assignments_ended": 2), which the retirement records in its audit event.
- ``credential_revoked(agent, credential)``: one of the agent's own credentials (secret, key or federated
  credential) was revoked.

Questions (each receiver answers; empty answers are dropped):

- ``initial_status(blueprint, workspace)``: a status other than active for a new agent (pending approval), or None.
- ``activation_problems(agent, blueprint)``: why the agent may not become active on that blueprint version, or "".
- ``setup_notices(blueprint)``: a sentence the set-up wizard shows before the user starts, or None.
- ``status_notes(agent)``: a note for the agent's page as ``(text, link or "")``, or None.
- ``extra_grants(agent)``: permission rows the agent holds from elsewhere (access packages), as dicts.
- ``detail_panels(user, agent)``: panels for the agent's page (dicts with ``template`` and ``slot``), in a fixed
  number of queries.
- ``timeline_lanes(user, agent, start, end)``: lanes for the agent's timeline as a list of ``(name, events)`` where
  an event is ``(at, what, count or None)`` between ``start`` and ``end``, in a fixed number of queries.
- ``ending_counts(agent_ids, action)``: for a bulk disable or retire, ``{agent_id: {"tokens": n, …}}`` of what the
  receiver holds that the action ends, in a fixed number of queries.
- ``last_used(agent_ids)``: ``{agent_id: datetime}`` of the latest use known to the receiver.
- ``blast_radius(user, agents, action)``: for the confirmation of a disable or retire of one or many agents, what
  stops (docs/blast-radius.md), as a dict with the ``template`` that shows it, in a fixed number of queries.
- ``attribute_keys_in_rules()``: ``{key: [rule names]}`` of the custom security attribute keys the receiver's rules
  match on (conditional-access policies); those keys are protected like a protected set's (R20).
"""

from __future__ import annotations

from django.dispatch import Signal

agent_created = Signal()
agent_disabled = Signal()
agent_retired = Signal()
credential_revoked = Signal()

initial_status = Signal()
activation_problems = Signal()
setup_notices = Signal()
status_notes = Signal()
extra_grants = Signal()
detail_panels = Signal()
timeline_lanes = Signal()
ending_counts = Signal()
last_used = Signal()
attribute_keys_in_rules = Signal()
blast_radius = Signal()


def answers(signal: Signal, **arguments) -> list:
    """Every receiver's non-empty answer, in the order the receivers were connected (the apps' order)."""
    return [answer for _receiver, answer in signal.send(sender=None, **arguments) if answer]
