"""Demo data for ``seed_demo``: the built-in agents, set up and scheduled, with a first run and a session.

The two built-in blueprints are installed (catalog skills + manifests, ``builtin_agents.install``); soc gets an
*Agent Hygiene Agent* and a *Conditional Access Optimization Agent*, identity gets a hygiene agent too. Their
schedules come from the manifests' triggers, so ``make run``'s beat starts them; the first run of each is executed
here, in-process, so the dashboard has findings at once. The report-only demo policy is dated back 45 days, which the
optimizer reports. A contributor's session with the hygiene agent shows what a session looks like. Idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from agents import registry, sponsorship
from agents.choices import SponsorshipState
from agents.models import Agent, Blueprint, Sponsorship
from agents.registry import AgentSpec
from devkit.demo import register
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.runs import builtin as builtin_agents
from governance.runs import services as runs
from governance.runs.choices import RunStatus
from governance.runs.models import Run, Session
from portal.models import User, Workspace

BUILT_IN = [
    # workspace, agent name, blueprint, sponsors, owners
    ("soc", "agent-hygiene", "AgentHygieneAgent", ["owner", "owner2"], ["owner"]),
    ("soc", "ca-optimizer", "ConditionalAccessOptimizationAgent", ["owner"], ["owner2"]),
    ("identity", "agent-hygiene-id", "AgentHygieneAgent", ["idowner", "idowner2"], ["idowner"]),
]


@register("built-in agents")
def seed_built_in_agents(write: Callable[[str], None]) -> None:
    builtin_agents.install(write)
    users = {u.username: u for u in User.objects.all()}
    ConditionalAccessPolicy.objects.filter(name="Block high-risk agents", state="report_only").update(
        state_changed_at=timezone.now() - timedelta(days=45))  # demo history: report-only for weeks
    for slug, name, blueprint_name, sponsors, owners in BUILT_IN:
        workspace = Workspace.objects.get(slug=slug)
        agent = Agent.objects.filter(workspace=workspace, name=name).first()
        if agent is None:
            blueprint = Blueprint.objects.filter(name=blueprint_name).order_by("-version").first()
            agent = registry.agent_create(actor=users[owners[0]], workspace=workspace, spec=AgentSpec(
                blueprint=blueprint, name=name, identity_type="agent_identity", scope="workspace",
                sponsors=[users[u] for u in sponsors], owners=[users[u] for u in owners])).agent
            for asked in Sponsorship.objects.filter(agent=agent, state=SponsorshipState.PENDING) \
                    .select_related("user"):
                sponsorship.sponsorship_accept(actor=asked.user, sponsorship=asked)  # R30: the sponsors said yes
            write(f"  {name} ({blueprint.display_name}) in {slug}, every {agent.schedule_period_seconds} s")
        # One first run, whatever its outcome: seeding again never repeats it (a failed one is shown, not retried).
        if not Run.objects.filter(agent=agent).exists():
            run = runs.scheduled_run_start(agent)
            run = runs.run_execute(run.pk)
            Agent.objects.filter(pk=agent.pk).update(
                next_run_at=timezone.now() + timedelta(seconds=agent.schedule_period_seconds))
            write(f"  first run of {name}: {run.status}, {len(run.findings)} findings {run.error}".rstrip())
    hygiene = Agent.objects.get(workspace__slug="soc", name="agent-hygiene")
    contributor = users["contributor"]
    if not Session.objects.filter(agent=hygiene, opened_by=contributor).exists():
        session = runs.session_open(actor=contributor, agent=hygiene, title="Weekly clean-up")
        run = runs.run_start(actor=contributor, session=session, inputs={"ExpiringWithinDays": "30"})
        run = runs.run_execute(run.pk)
        if run.status == RunStatus.SUCCEEDED:
            runs.feedback_give(actor=contributor, run=run, rating=4,
                               comment="Useful: the expired secrets were real. Too many unused-permission items.")
        write(f"  session '{session.title}' by contributor: run {run.status}")
