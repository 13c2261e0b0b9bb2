"""Accepted sponsorship (R30; docs/sponsorship.md): naming a sponsor asks them, they accept or decline, they confirm
again on a schedule, and a transfer waits for the new sponsor.

The guardian ``sponsor_agent`` permission keeps meaning "named sponsor" (it lets the person see the agent and
answer); a ``Sponsorship`` row says whether they accepted. Only an accepted, not overdue sponsorship of an active
person makes an agent sponsored (``selectors.accepted_sponsorships``). Naming is part of the registry's services
(``registry.agent_person_add``, ``registry.agents_provision``), which write the audit event; accepting, declining,
confirming and transferring are the services below, one audit event each. The job ``attest_sponsorships``
reminds, lapses overdue sponsorships and escalates transfers nobody accepted in time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Permission as AuthPermission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from agents import policy
from agents.choices import SPONSORSHIP_CURRENT, SponsorshipState
from agents.models import Agent, AgentUserObjectPermission, Sponsorship
from portal import audit, bulkrows, jobs, notifications
from portal.choices import UserKind
from portal.models import User

MY_SPONSORSHIPS = "/agents/sponsorships/"


def link(sponsorship: Sponsorship | int) -> str:
    """The page where the named person answers or confirms (a notification's link): a sponsorship, or its id."""
    return f"{MY_SPONSORSHIPS}{sponsorship if isinstance(sponsorship, int) else sponsorship.pk}/"


def due_after(when: datetime) -> datetime:
    return when + timedelta(days=settings.SPONSOR_ATTESTATION_DAYS)


def _owners(agent: Agent) -> list[User]:
    """The agent's active owners (one query)."""
    return list(User.objects.filter(
        pk__in=AgentUserObjectPermission.objects.filter(content_object=agent, permission__codename=policy.OWN_AGENT)
        .values("user_id"), is_active=True))


def _snapshot(sponsorship: Sponsorship) -> dict:
    return {"agent": sponsorship.agent.name, "user": sponsorship.user.username, "state": sponsorship.state,
            "due_at": sponsorship.due_at}


def _unname(agent_id: int, user_id: int) -> None:
    """The person is no longer a named sponsor (declined, or handed over): the guardian permission goes."""
    AgentUserObjectPermission.objects.filter(content_object_id=agent_id, user_id=user_id,
                                             permission__codename=policy.SPONSOR_AGENT).delete()


def _tell_asked(pending: Iterable[tuple[int, Agent, User]], note: str = "") -> None:
    """Ask each named person, given (sponsorship id, agent, person) of the pending sponsorships: one notification
    per sponsorship, or one per person when a bulk file named them for many agents; all in one insert (inside the
    caller's transaction)."""
    by_user: dict[int, list[tuple[int, Agent, User]]] = {}
    for row in pending:
        by_user.setdefault(row[2].pk, []).append(row)
    messages = []
    for rows in by_user.values():
        pk, agent, user = rows[0]
        if len(rows) == 1:
            messages.append(notifications.Message(
                [user], f"You are asked to sponsor {agent.name}",
                f"{note} Accept or decline: until a sponsor accepts, the agent has no sponsor.".strip(),
                link(pk)))
        else:
            messages.append(notifications.Message(
                [user], f"You are asked to sponsor {len(rows)} agents",
                "Accept or decline each one on your sponsorships page.", MY_SPONSORSHIPS))
    notifications.notify_many(messages)


def _new_pairs(actor: User | None, pairs: Sequence[tuple[Agent, User]], skip: set[tuple[int, int]]) \
        -> list[tuple[Agent, User, bool]]:
    """(agent, person, named themself) for each pair once, leaving out those in ``skip``."""
    found, seen = [], set(skip)
    for agent, user in pairs:
        if (agent.pk, user.pk) in seen:
            continue
        seen.add((agent.pk, user.pk))
        found.append((agent, user, actor is not None and actor.pk == user.pk))
    return found


def sponsorships_open(*, actor: User | None, pairs: Sequence[tuple[Agent, User]], now: datetime | None = None,
                      note: str = "") -> list[Sponsorship]:
    """Create the sponsorships of newly named sponsors (part of the registry's naming services, which audit the
    naming). A person who names themself has accepted at once; anyone else is asked. Pairs already holding a
    current sponsorship are skipped. Must run inside the caller's transaction."""
    now = now or timezone.now()
    if not pairs:
        return []
    current = set(Sponsorship.objects.filter(agent_id__in={a.pk for a, _ in pairs}, state__in=SPONSORSHIP_CURRENT)
                  .values_list("agent_id", "user_id"))
    rows = [Sponsorship(
        agent=agent, user=user, requested_by=actor, requested_at=now,
        state=SponsorshipState.ACCEPTED if self_named else SponsorshipState.PENDING,
        decided_at=now if self_named else None, attested_at=now if self_named else None,
        due_at=due_after(now) if self_named else None) for agent, user, self_named in _new_pairs(actor, pairs, current)]
    created = Sponsorship.objects.bulk_create(rows, batch_size=2000)
    _tell_asked([(r.pk, r.agent, r.user) for r in created if r.state == SponsorshipState.PENDING], note)
    return created


def sponsorships_open_for_new_agents(*, actor: User | None, pairs: Sequence[tuple[Agent, User]],
                                     now: datetime) -> int:
    """``sponsorships_open`` for agents just created (a bulk file, the wizard): they have no sponsorship yet, so
    nothing is looked up, and the rows are written without a model instance each (docs/design.md, "Bulk inserts
    without model instances"). The same rows and the same notifications; returns how many were opened."""
    found = _new_pairs(actor, pairs, set())
    if not found:
        return 0
    due = due_after(now)
    actor_id = actor.pk if actor is not None else None
    pks = bulkrows.insert_rows(
        Sponsorship, ("agent_id", "user_id", "requested_by_id", "requested_at", "state", "decided_at",
                      "attested_at", "due_at"),
        [(agent.pk, user.pk, actor_id, now, SponsorshipState.ACCEPTED, now, now, due) if self_named
         else (agent.pk, user.pk, actor_id, now, SponsorshipState.PENDING, None, None, None)
         for agent, user, self_named in found],
        returning_pk=not all(self_named for _agent, _user, self_named in found))
    if pks:
        _tell_asked([(pk, agent, user) for pk, (agent, user, self_named) in zip(pks, found, strict=True)
                     if not self_named])
    return len(found)


def sponsorship_close(*, agent: Agent, user: User) -> None:
    """The registry removed a named sponsor: their current sponsorship ends (audited by the removal)."""
    Sponsorship.objects.filter(agent=agent, user=user, state__in=SPONSORSHIP_CURRENT).update(
        state=SponsorshipState.REMOVED, decided_at=timezone.now())


def _lock(actor: User, sponsorship: Sponsorship, states: Sequence[str], doing: str) -> Sponsorship:
    """Lock the row; only the named person may answer or confirm it, and only from ``states``."""
    sponsorship = (Sponsorship.objects.select_for_update(of=("self",))
                   .select_related("agent__workspace", "user", "replaces__user").get(pk=sponsorship.pk))
    if actor is None or actor.pk != sponsorship.user_id or not actor.is_active:
        raise PermissionDenied(f"Only the person named sponsor can {doing} this sponsorship.")
    if sponsorship.state not in states:
        raise ValidationError(f"This sponsorship is {sponsorship.get_state_display().lower()}; there is nothing "
                              f"to {doing} now.")
    return sponsorship


def _supersede(new: Sponsorship, now: datetime) -> Sponsorship | None:
    """A transfer was accepted: the sponsorship it replaces ends and its person is no longer named."""
    old = new.replaces
    if old is None or old.state not in (SponsorshipState.ACCEPTED, SponsorshipState.EXPIRED):
        return None
    Sponsorship.objects.filter(pk=old.pk).update(state=SponsorshipState.SUPERSEDED, decided_at=now)
    if old.user_id != new.user_id:
        _unname(old.agent_id, old.user_id)
    return old


@transaction.atomic
def sponsorship_accept(*, actor: User, sponsorship: Sponsorship) -> Sponsorship:
    """The named person accepts: the agent is sponsored from now until the next confirmation is due. Accepting a
    transfer ends the sponsorship it replaces."""
    sponsorship = _lock(actor, sponsorship, (SponsorshipState.PENDING,), "accept")
    now = timezone.now()
    sponsorship.state, sponsorship.decided_at, sponsorship.attested_at = SponsorshipState.ACCEPTED, now, now
    sponsorship.due_at, sponsorship.reminded_at = due_after(now), None
    sponsorship.save(update_fields=["state", "decided_at", "attested_at", "due_at", "reminded_at"])
    old = _supersede(sponsorship, now)
    if old is not None:
        notifications.notify(recipients=[old.user], subject=f"{actor.username} now sponsors {sponsorship.agent.name}",
                             body="They accepted the sponsorship you handed over.",
                             link=f"/agents/{sponsorship.agent_id}/")
    audit.record(actor=actor, action="sponsorship.accept", target=sponsorship.agent,
                 workspace=sponsorship.agent.workspace, before={"state": SponsorshipState.PENDING},
                 after={**_snapshot(sponsorship), "replaces": old.user.username if old else None})
    return sponsorship


@transaction.atomic
def sponsorship_decline(*, actor: User, sponsorship: Sponsorship, reason: str = "") -> Sponsorship:
    """The named person declines: they are no longer named, and whoever named them and the agent's owners are
    told. A declined transfer leaves the current sponsor in place."""
    sponsorship = _lock(actor, sponsorship, (SponsorshipState.PENDING,), "decline")
    reason = (reason or "").strip()[:500]
    now = timezone.now()
    sponsorship.state, sponsorship.decided_at = SponsorshipState.DECLINED, now
    sponsorship.save(update_fields=["state", "decided_at"])
    _unname(sponsorship.agent_id, sponsorship.user_id)
    agent = sponsorship.agent
    told = _owners(agent) + ([sponsorship.requested_by] if sponsorship.requested_by else [])
    notifications.notify(recipients=[u for u in told if u.pk != actor.pk],
                         subject=f"{actor.username} declined to sponsor {agent.name}",
                         body=(f"Their reason: {reason}" if reason else "They gave no reason.")
                         + " Name another sponsor if the agent has none.", link=f"/agents/{agent.pk}/")
    audit.record(actor=actor, action="sponsorship.decline", target=agent, workspace=agent.workspace,
                 before={"state": SponsorshipState.PENDING}, after={**_snapshot(sponsorship), "reason": reason})
    return sponsorship


@transaction.atomic
def sponsorship_attest(*, actor: User, sponsorship: Sponsorship) -> Sponsorship:
    """The sponsor confirms they still sponsor the agent (also after it lapsed): due again in
    ``SPONSOR_ATTESTATION_DAYS``."""
    sponsorship = _lock(actor, sponsorship, (SponsorshipState.ACCEPTED, SponsorshipState.EXPIRED), "confirm")
    before = {"state": sponsorship.state, "due_at": sponsorship.due_at}
    now = timezone.now()
    sponsorship.state, sponsorship.attested_at = SponsorshipState.ACCEPTED, now
    sponsorship.due_at, sponsorship.reminded_at = due_after(now), None
    sponsorship.save(update_fields=["state", "attested_at", "due_at", "reminded_at"])
    audit.record(actor=actor, action="sponsorship.attest", target=sponsorship.agent,
                 workspace=sponsorship.agent.workspace, before=before, after=_snapshot(sponsorship))
    return sponsorship


@transaction.atomic
def sponsorship_transfer(*, actor: User, sponsorship: Sponsorship, to_user: User) -> Sponsorship:
    """Hand a sponsorship to someone else: they are asked, and the current sponsor stays until they accept (or
    the hand-over is done at once when the actor names themself). The sponsor themself or the agent's managers
    may transfer; not accepted within ``SPONSOR_TRANSFER_DAYS``, the owners are told (``attest_sponsorships``)."""
    sponsorship = (Sponsorship.objects.select_for_update(of=("self",))
                   .select_related("agent__workspace", "user").get(pk=sponsorship.pk))
    agent = sponsorship.agent
    Agent.objects.select_for_update(of=("self",)).filter(pk=agent.pk).first()  # one naming at a time per agent
    if actor is None or not (actor.pk == sponsorship.user_id or policy.can_manage_agent(actor, agent)):
        raise PermissionDenied("Only the sponsor and the agent's owners can hand this sponsorship over.")
    if sponsorship.state not in (SponsorshipState.ACCEPTED, SponsorshipState.EXPIRED):
        raise ValidationError("Only an accepted sponsorship can be handed over.")
    if to_user is None or not to_user.is_active or to_user.kind != UserKind.HUMAN:
        raise ValidationError("Hand the sponsorship to an active person.")
    if Sponsorship.objects.filter(agent=agent, user=to_user, state__in=SPONSORSHIP_CURRENT).exists():
        raise ValidationError(f"{to_user.username} is already named sponsor of {agent.name}.")
    now = timezone.now()
    self_named = actor.pk == to_user.pk
    new = Sponsorship.objects.create(
        agent=agent, user=to_user, requested_by=actor, requested_at=now, replaces=sponsorship,
        state=SponsorshipState.ACCEPTED if self_named else SponsorshipState.PENDING,
        decided_at=now if self_named else None, attested_at=now if self_named else None,
        due_at=due_after(now) if self_named else None)
    AgentUserObjectPermission.objects.get_or_create(
        permission=AuthPermission.objects.get(content_type__app_label="agents", codename=policy.SPONSOR_AGENT),
        user=to_user, content_object=agent)
    if self_named:
        _supersede(new, now)
    else:
        notifications.notify(recipients=[to_user], subject=f"You are asked to take over sponsoring {agent.name}",
                             body=f"{sponsorship.user.username} stays its sponsor until you accept.",
                             link=link(new))
    audit.record(actor=actor, action="sponsorship.transfer", target=agent, workspace=agent.workspace,
                 before=_snapshot(sponsorship), after={**_snapshot(new), "from": sponsorship.user.username})
    return new


# --- the job (docs/design.md, Scheduled jobs) -----------------------------------------------------------------


def _each_batch(queryset, handle) -> tuple[int, int]:
    """Lock rows of ``queryset`` in batches (``SKIP LOCKED``: two workers share the work), handle each batch in
    its own transaction; ``handle`` must take the rows out of ``queryset`` so the loop ends."""
    size, pause = settings.JOB_BATCH_SIZE, settings.JOB_BATCH_PAUSE_SECONDS
    done = batches = 0
    while True:
        with transaction.atomic():
            batch = list(queryset().select_for_update(skip_locked=True, of=("self",))
                         .select_related("agent__workspace", "user").order_by("pk")[:size])
            if not batch:
                return done, batches
            handle(batch, timezone.now())
        done += len(batch)
        batches += 1
        if pause:
            time.sleep(pause)


def _remind(batch: list[Sponsorship], now: datetime) -> None:
    Sponsorship.objects.filter(pk__in=[s.pk for s in batch]).update(reminded_at=now)
    for s in batch:
        notifications.notify(recipients=[s.user], subject=f"Confirm you still sponsor {s.agent.name}",
                             body=f"Confirm by {s.due_at:%Y-%m-%d}, or the sponsorship lapses.", link=link(s))
    audit.record_many(actor=None, changes=[
        audit.Change("sponsorship.remind", s.agent, s.agent.workspace, after={**_snapshot(s), "reminded_at": now})
        for s in batch])


def _lapse(batch: list[Sponsorship], now: datetime) -> None:
    Sponsorship.objects.filter(pk__in=[s.pk for s in batch]).update(state=SponsorshipState.EXPIRED)
    for s in batch:
        notifications.notify(recipients=[s.user], subject=f"Your sponsorship of {s.agent.name} lapsed",
                             body="You did not confirm it in time. Confirm it again if you still sponsor the agent.",
                             link=link(s))
    audit.record_many(actor=None, changes=[
        audit.Change("sponsorship.expire", s.agent, s.agent.workspace, before={"state": SponsorshipState.ACCEPTED},
                     after={**_snapshot(s), "state": SponsorshipState.EXPIRED}) for s in batch])


def _escalate(batch: list[Sponsorship], now: datetime) -> None:
    Sponsorship.objects.filter(pk__in=[s.pk for s in batch]).update(escalated_at=now)
    for s in batch:
        notifications.notify(recipients=_owners(s.agent),
                             subject=f"{s.user.username} has not accepted to sponsor {s.agent.name}",
                             body=f"A hand-over asked {settings.SPONSOR_TRANSFER_DAYS} or more days ago is still "
                                  f"waiting; the current sponsor stays until it is accepted.",
                             link=f"/agents/{s.agent_id}/")
    audit.record_many(actor=None, changes=[
        audit.Change("sponsorship.escalate", s.agent, s.agent.workspace, after={**_snapshot(s), "escalated_at": now})
        for s in batch])


@jobs.register("attest_sponsorships", "Remind sponsors to confirm, lapse unconfirmed sponsorships, escalate "
                                      "hand-overs nobody accepted.")
def attest_sponsorships() -> dict:
    """Idempotent: each step takes only rows it has not handled (reminded, lapsed, escalated) in locked batches."""
    def due_soon():
        now = timezone.now()
        return Sponsorship.objects.filter(state=SponsorshipState.ACCEPTED, reminded_at__isnull=True, due_at__gt=now,
                                          due_at__lte=now + timedelta(days=settings.SPONSOR_REMINDER_DAYS))

    def overdue():
        return Sponsorship.objects.filter(state=SponsorshipState.ACCEPTED, due_at__lte=timezone.now())

    def stale_transfers():
        limit = timezone.now() - timedelta(days=settings.SPONSOR_TRANSFER_DAYS)
        return Sponsorship.objects.filter(state=SponsorshipState.PENDING, replaces__isnull=False,
                                          escalated_at__isnull=True, requested_at__lte=limit)

    reminded, b1 = _each_batch(due_soon, _remind)
    lapsed, b2 = _each_batch(overdue, _lapse)
    escalated, b3 = _each_batch(stale_transfers, _escalate)
    return {"reminded": reminded, "lapsed": lapsed, "escalated": escalated, "batches": b1 + b2 + b3}
