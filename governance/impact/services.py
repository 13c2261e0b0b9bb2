"""Telling the people a disruptive change reaches (docs/blast-radius.md): the people each preview lists under
"people who will be told" are told, inside the change's own transaction (``portal.notifications.notify``)."""

from __future__ import annotations

from django.urls import reverse

from agents.models import Agent
from governance.access import signals as access_signals
from governance.access.models import Assignment
from governance.impact import previews
from portal import notifications


def tell_agent_stopped(agent: Agent, *, retiring: bool) -> int:
    """An agent was disabled or is being retired (``agents.signals.agent_disabled``): its owners, sponsors and the
    people whose runs and sessions stop are told. Connected ahead of the receivers that revoke and cancel, so the
    runs in progress are still there to read."""
    people = previews.people_told_for_agents([agent.pk])
    what = "retired" if retiring else "disabled"
    body = (f"{agent.name} was {what}. Its live access tokens were revoked and its queued and running runs were "
            f"cancelled{'; its credentials were revoked and its access packages ended' if retiring else ''}.")
    told = notifications.notify(recipients=[person.user for person in people], subject=f"{agent.name} was {what}",
                                body=body, link=reverse("agent-detail", args=[agent.pk]))
    return len(told)


def tell_credential_revoked(agent: Agent, credential) -> int:
    """One of the agent's credentials was revoked: its owners and sponsors are told, and whether it has any usable
    credential left."""
    left = previews.usable_credentials_left(agent, credential, credential.revoked_at)
    body = f"A credential of {agent.name} was revoked. " + (
        f"{agent.name} has no usable credential left: it gets no new token until one is added." if left == 0
        else f"{agent.name} still has {left} usable credential{'s' if left != 1 else ''}.")
    told = notifications.notify(recipients=[p.user for p in previews._people([agent.pk])],
                                subject=f"A credential of {agent.name} was revoked", body=body,
                                link=reverse("agent-credentials", args=[agent.pk]))
    return len(told)


def tell_assignments_revoked(assignments, reason: str) -> int:
    """Assignments ended early by a person (not by expiry, which sends its own reminders first): the agent's owners
    and sponsors and whoever requested the assignment are told."""
    if reason == access_signals.PACKAGE_REMOVED:
        return tell_package_removed(assignments)
    if reason != "assignment revoked":
        return 0
    told = 0
    for assignment in assignments:
        assignment = Assignment.objects.select_related("agent", "package", "requested_by").get(pk=assignment.pk)
        extra = [(assignment.requested_by, "requested the access")] if assignment.requested_by else []
        people = previews._people([assignment.agent_id], extra)
        told += len(notifications.notify(
            recipients=[p.user for p in people],
            subject=f"{assignment.agent.name} no longer has {assignment.package.name}",
            body=f"The assignment of {assignment.package.name} to {assignment.agent.name} was ended early; the "
                 f"access tokens that carried its permissions were revoked.",
            link=reverse("assignment-detail", args=[assignment.pk])))
    return told


def tell_package_removed(assignments) -> int:
    """An access package was removed and its open assignments just ended (``access.services.package_remove``): the
    people its preview listed are told once each — the agents' owners and sponsors, whoever requested an assignment
    and whoever started a run whose token is revoked. Read with the preview's own function before ``signin``
    revokes the tokens (``governance.impact.apps``); a fixed number of queries."""
    assignments = list(Assignment.objects.filter(pk__in=[a.pk for a in assignments])
                       .select_related("agent", "package", "requested_by").order_by("pk"))
    if not assignments:
        return 0
    package = assignments[0].package
    people = previews.people_told_for_assignments(assignments)
    agents = sorted({a.agent.name for a in assignments})
    told = notifications.notify(
        recipients=[person.user for person in people], subject=f"Access package {package.name} was removed",
        body=f"The access package {package.name} was removed. Its assignments ended for {', '.join(agents)}, and the "
             f"access tokens that carried its permissions were revoked.",
        link=reverse("package-detail", args=[package.pk]))
    return len(told)
