"""Lifecycle jobs (docs/design.md, Scheduled jobs; R7, R8, R18): access and agents end on time, exactly once.

Each job takes its rows in batches with ``SELECT … FOR UPDATE SKIP LOCKED``, so two workers share the work and
neither repeats the other's; each batch commits on its own, so a worker killed part-way leaves finished batches
finished and the next run does the rest. Every change writes its audit event in the batch's transaction;
reminders and orphan notices are sent after commit (an assignment simply ending notifies nobody: the sponsors
were reminded before).
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents import policy as agent_policy
from agents import registry
from agents import selectors as agent_selectors
from agents.choices import AgentStatus
from agents.models import Agent, AgentUserObjectPermission
from governance.access import signals
from governance.access.choices import AssignmentStatus
from governance.access.ends import assignment_ends
from governance.access.models import Assignment
from governance.access.services import _link as assignment_link
from portal import audit, jobs, notifications
from portal.choices import UserKind
from portal.models import User
from portal.timefmt import when


def _batches():
    """Batch size and the pause between batches (a test slows a run down to kill it part-way)."""
    return settings.JOB_BATCH_SIZE, settings.JOB_BATCH_PAUSE_SECONDS


def _end_due(status_from: str, due_field: str, status_to: str, action: str, reason: str) -> tuple[int, int]:
    size, pause = _batches()
    done = batches = 0
    while True:
        with transaction.atomic():
            now = timezone.now()
            batch = list(Assignment.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(status=status_from, **{f"{due_field}__lte": now})
                         .select_related("package__workspace", "agent").order_by(due_field)[:size])
            if not batch:
                return done, batches
            Assignment.objects.filter(pk__in=[a.pk for a in batch]).update(status=status_to, ended_at=now,
                                                                           end_reason=reason, extension_until=None)
            if status_from == AssignmentStatus.ACTIVE:  # R18: the tokens that carried them end with them
                signals.assignments_ended.send(sender=Assignment, assignments=batch, reason=reason)
            audit.record_many(actor=None, changes=[
                audit.Change(action, a, a.package.workspace, before={"status": status_from},
                             after={"status": status_to, "package": a.package.name, "agent": a.agent.name,
                                    "due": getattr(a, due_field)})
                for a in batch])
        done += len(batch)
        batches += 1
        if pause:
            time.sleep(pause)


@jobs.register("expire_assignments", "End access-package assignments past their end; expire undecided requests.")
def expire_assignments() -> dict:
    expired, batches = _end_due(AssignmentStatus.ACTIVE, "expires_at", AssignmentStatus.EXPIRED,
                                "assignment.expire", "expired")
    requests, request_batches = _end_due(AssignmentStatus.PENDING, "request_expires_at",
                                         AssignmentStatus.REQUEST_EXPIRED, "assignment.request_expire",
                                         "nobody decided in time")
    return {"expired": expired, "requests_expired": requests, "batches": batches + request_batches}


def _sponsors(agent_ids) -> dict[int, list[User]]:
    rows = AgentUserObjectPermission.objects.filter(content_object_id__in=agent_ids,
                                                    permission__codename=agent_policy.SPONSOR_AGENT,
                                                    user__is_active=True).select_related("user")
    sponsors: dict[int, list[User]] = {}
    for row in rows:
        sponsors.setdefault(row.content_object_id, []).append(row.user)
    return sponsors


@jobs.register("send_expiry_reminders", "Tell sponsors "
               f"{' and '.join(str(d) for d in sorted(settings.EXPIRY_REMINDER_DAYS, reverse=True))} day(s) before "
               "an assignment ends.")
def send_expiry_reminders() -> dict:
    """One notice per threshold crossed: an assignment already inside several thresholds (say 14 and 1 days) gets
    one notice, for the smallest, saying the real time left, and the larger thresholds count as done."""
    size, _pause = _batches()
    thresholds = sorted(settings.EXPIRY_REMINDER_DAYS)
    sent = 0
    last_pk = 0
    while True:
        with transaction.atomic():
            now = timezone.now()
            batch = list(Assignment.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(status=AssignmentStatus.ACTIVE, expires_at__gt=now,
                                 expires_at__lte=now + timedelta(days=thresholds[-1]), pk__gt=last_pk)
                         .select_related("package__workspace", "agent").order_by("pk")[:size])
            if not batch:
                break
            last_pk = batch[-1].pk
            due = []
            for assignment in batch:
                crossed = [d for d in thresholds if assignment.expires_at <= now + timedelta(days=d)]
                if min(crossed) not in assignment.reminded_days:
                    assignment.reminded_days = sorted(set(assignment.reminded_days) | set(crossed))
                    due.append(assignment)
            sponsors = _sponsors([a.agent_id for a in due])
            for assignment in due:
                ends = assignment_ends(assignment)  # its agent's expiry may come first
                left = ends - now
                within = f"{left.days} day(s)" if left.days else f"{max(1, left.seconds // 3600)} hour(s)"
                notifications.notify(
                    recipients=sponsors.get(assignment.agent_id, []),
                    subject=f"{assignment.package.name} for {assignment.agent.name} ends in {within}",
                    body=f"It ends {when(ends)}. Request an extension from the "
                         f"assignment's page if the agent still needs it.",
                    link=assignment_link(assignment))
            Assignment.objects.bulk_update(due, ["reminded_days"])
            audit.record_many(actor=None, changes=[
                audit.Change("assignment.reminder", a, a.package.workspace, after={"reminded_days": a.reminded_days})
                for a in due])
            sent += len(due)
    return {"reminders": sent}


@jobs.register("expire_agents", "Disable agents at their expiry; retire them "
               f"{settings.RETIRE_GRACE_DAYS} days later.")
def expire_agents() -> dict:
    now = timezone.now()
    disabled = retired = 0
    # Each agent is locked by the service; a second worker waits, then finds the work done and changes nothing.
    for agent in Agent.objects.filter(status=AgentStatus.ACTIVE, expires_at__lte=now):
        try:
            if registry.agent_disable(actor=None, agent=agent, reason="expired").status == AgentStatus.DISABLED:
                disabled += 1
        except ValidationError:  # retired meanwhile
            continue
    grace = now - timedelta(days=settings.RETIRE_GRACE_DAYS)
    for agent in Agent.objects.filter(status=AgentStatus.DISABLED, expires_at__lte=grace):
        try:
            registry.agent_retire(actor=None, agent=agent)
            retired += 1
        except ValidationError:  # retired meanwhile by another worker
            continue
    return {"disabled": disabled, "retired": retired}


@jobs.register("sweep_orphans", "Replace deactivated sponsors by their manager, else flag and later disable.")
def sweep_orphans() -> dict:
    counts = {"replaced": 0, "orphaned": 0, "cleared": 0, "disabled": 0}
    gone = (AgentUserObjectPermission.objects.filter(permission__codename=agent_policy.SPONSOR_AGENT,
                                                     user__is_active=False)
            .exclude(content_object__status=AgentStatus.RETIRED).select_related("user__manager", "content_object"))
    for row in gone:
        agent, former = row.content_object, row.user
        manager = former.manager
        if manager is not None and manager.is_active and manager.kind == UserKind.HUMAN:
            # R30: the manager is asked to sponsor it (the request tells them why), like anyone named.
            registry.agent_person_add(actor=None, agent=agent, user=manager, role=agent_policy.SPONSOR_AGENT,
                                      note=f"{former.username} was deactivated; as their manager you replace them.")
            try:
                registry.agent_person_remove(actor=None, agent=agent, user=former, role=agent_policy.SPONSOR_AGENT)
            except ValidationError:
                continue
            counts["replaced"] += 1
    live = Agent.objects.exclude(status=AgentStatus.RETIRED)
    # R30 (docs/sponsorship.md, "Unsponsored"): only accepted sponsors count, and named sponsors who have not
    # answered yet for ORPHAN_GRACE_DAYS after they were asked.
    with_sponsor = set(agent_selectors.agents_sponsored_or_waiting().values_list("pk", flat=True))
    for agent in live.filter(orphaned_at__isnull=True).exclude(pk__in=with_sponsor):
        with transaction.atomic():
            if not registry.agent_set_orphaned(actor=None, agent=agent, orphaned=True):
                continue  # another worker flagged it first
            owners = [u for u in registry.people_of(agent)[agent_policy.OWN_AGENT] if u.is_active]
            notifications.notify(recipients=owners, subject=f"{agent.name} has no active sponsor",
                                 body=f"Nobody has accepted to sponsor it. Add a sponsor who accepts within "
                                      f"{settings.ORPHAN_GRACE_DAYS} days or it is disabled.",
                                 link=f"/agents/{agent.pk}/")
        counts["orphaned"] += 1
    for agent in live.filter(orphaned_at__isnull=False, pk__in=with_sponsor):
        if registry.agent_set_orphaned(actor=None, agent=agent, orphaned=False):
            counts["cleared"] += 1
    limit = timezone.now() - timedelta(days=settings.ORPHAN_GRACE_DAYS)
    for agent in live.filter(status=AgentStatus.ACTIVE, orphaned_at__lte=limit).exclude(pk__in=with_sponsor):
        try:
            registry.agent_disable(actor=None, agent=agent, reason="orphaned past the grace period")
        except ValidationError:  # retired meanwhile
            continue
        counts["disabled"] += 1
    return counts
