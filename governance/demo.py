"""Demo data for ``seed_demo``: a partner blueprint that reads Defender data, with one approved and one pending
approval request, so a Global Administrator signing in has a queue. Idempotent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agents import manifests, registry
from agents.models import Agent, Blueprint
from governance import approvals
from governance.choices import ApprovalStatus
from governance.models import ApprovalRequest
from portal import seeding
from portal.models import User, Workspace

MANIFEST = Path(__file__).resolve().parent / "data" / "TaniumDefenderTriageAgent.yaml"


def _partner_agent(users, workspace, blueprint, name: str, creator: str, justification: str) -> Agent:
    agent = Agent.objects.filter(workspace=workspace, name=name).first()
    if agent is not None:
        return agent
    person = users[creator]
    spec = registry.AgentSpec(blueprint=blueprint, name=name, identity_type="user_account", run_as_user=person,
                              scope="user", sponsors=[person], owners=[person], justification=justification)
    return registry.agent_create(actor=person, workspace=workspace, spec=spec).agent


@seeding.register("partner approvals")
def seed_approvals(write: Callable[[str], None]) -> None:
    name = "TaniumDefenderTriageAgent"
    if not Blueprint.objects.filter(name=name).exists():
        manifests.blueprint_import(actor=None, data=MANIFEST.read_bytes(), filename=MANIFEST.name)
    blueprint = Blueprint.objects.get(name=name, version=1)
    write(f"  partner blueprint {blueprint}")
    users = {u.username: u for u in User.objects.filter(kind="human")}
    soc = Workspace.objects.get(slug="soc")
    approved_agent = _partner_agent(users, soc, blueprint, "tanium-triage", "owner",
                                    "Correlate Defender incidents with Tanium endpoint data for the SOC night shift.")
    first = ApprovalRequest.objects.filter(agent=approved_agent).order_by("pk").first()
    if first is not None and first.status == ApprovalStatus.PENDING:
        approvals.approval_decide(actor=users["ga"], approval=first, approve=True)
        registry.agent_activate(actor=users["owner"], agent=approved_agent)
        write("  approved tanium-triage and completed its setup")
    # A second version reads more Defender data: its new permission set waits for a decision.
    if not Blueprint.objects.filter(name=name, version=2).exists():
        v2_manifest = MANIFEST.read_text().replace("          - GetDefenderIncidentReport\n",
                                                   "          - GetDefenderIncidentReport\n"
                                                   "          - GetDefenderDeviceSummary\n")
        manifests.blueprint_import(actor=None, data=v2_manifest.encode(), filename=MANIFEST.name)
    v2 = Blueprint.objects.get(name=name, version=2)
    pending = _partner_agent(users, soc, v2, "tanium-triage-devices", "contributor",
                             "Add device summaries to the Tanium triage for my investigations.")
    write(f"  {pending.name}: {pending.get_status_display().lower()}")
