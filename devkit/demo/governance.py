"""Demo data for ``seed_demo``: a partner blueprint that reads Defender data, with one approved and one pending
approval request, so a Global Administrator signing in has a queue. Idempotent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.utils import timezone

from agents import manifests, registry
from agents.models import Agent, Blueprint
from devkit.demo import register
from governance.approvals import services as approvals
from governance.approvals.choices import ApprovalStatus
from governance.approvals.models import ApprovalRequest
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


@register("partner approvals")
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


@register("access packages")
def seed_access_packages(write: Callable[[str], None]) -> None:
    """Two packages in soc (one needing the owners, one a named approver; incompatible with each other), an
    active, a pending and an ending-soon assignment, and an agent whose only sponsor left (for sweep_orphans)."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from agents import policy as agent_policy
    from governance.access import services as access_packages
    from governance.access.choices import ApproverKind, DurationKind
    from governance.access.models import AccessPackage, Assignment
    from portal import directory
    from portal.models import Permission

    @transaction.atomic  # request and decision together, or a failed decision would leave it pending for good
    def _demo_assignment(package, agent_name: str, requester: str, justification: str, approver: str | None = None):
        """Request (and with ``approver``, approve) the package for the agent once; None if seeded before."""
        agent = Agent.objects.get(workspace=package.workspace, name=agent_name)
        if Assignment.objects.filter(package=package, agent=agent).exists():  # whatever became of it since
            return None
        assignment = access_packages.assignment_request(actor=users[requester], package=package, agent=agent,
                                                        justification=justification)
        if approver is not None:
            assignment = access_packages.assignment_decide(actor=users[approver], assignment=assignment,
                                                           approve=True)
        return assignment

    soc = Workspace.objects.get(slug="soc")
    users = {u.username: u for u in User.objects.filter(kind="human")}

    def permissions(*names):
        return list(Permission.objects.filter(kind="application", name__in=names))

    responder = AccessPackage.objects.filter(workspace=soc, name="Incident responder").first()
    if responder is None:
        responder = access_packages.package_save(
            actor=None, workspace=soc, name="Incident responder",
            description="Work Defender incidents and hunt during an investigation.",
            permissions=permissions("SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All"),
            policy={"approver_kind": ApproverKind.WORKSPACE_OWNERS, "duration_kind": DurationKind.HOURS,
                    "duration_value": 8})
        write(f"  package {responder.name}")
    remediation = AccessPackage.objects.filter(workspace=soc, name="Device remediation").first()
    if remediation is None:
        remediation = access_packages.package_save(
            actor=None, workspace=soc, name="Device remediation",
            description="Wipe, retire or reconfigure managed devices.",
            permissions=permissions("DeviceManagementManagedDevices.ReadWrite.All"),
            policy={"approver_kind": ApproverKind.NAMED, "duration_kind": DurationKind.DAYS, "duration_value": 2},
            approvers=[users["owner2"]], incompatible_with=[responder])
        write(f"  package {remediation.name} (incompatible with {responder.name})")

    if _demo_assignment(responder, "workload-hygiene", "owner",
                        "Investigate the workload identities flagged in last night's incident.", approver="owner2"):
        write("  workload-hygiene holds Incident responder (requested by owner, approved by owner2)")
    # owner2 asks; the workspace's other owners decide (never the requester), so it waits in owner's inbox.
    if _demo_assignment(responder, "device-cleanup", "owner2",
                        "Check the devices in the open incident before cleaning them up."):
        write("  device-cleanup asks for Incident responder: pending for owner")
    with transaction.atomic():
        ending = _demo_assignment(remediation, "ca-drift-hq", "owner",
                                  "Reset the devices that drifted from the Conditional Access baseline.",
                                  approver="owner2")
        if ending is not None:
            # Demo data shaping, not a service path: move the assignment's clock so it "ends within a day" now
            # (the expiring-soon list and the reminder job have something to show).
            now = timezone.now()
            Assignment.objects.filter(pk=ending.pk).update(starts_at=now - timedelta(hours=4),
                                                           expires_at=now + timedelta(hours=20))
            write("  ca-drift-hq holds Device remediation, ending in 20 hours")

    # A sponsor who left: ca-drift-emea's only sponsor is deactivated and has no manager, so sweep_orphans
    # flags the agent (and disables it after ORPHAN_GRACE_DAYS).
    if not User.objects.filter(username="leaver").exists():
        with transaction.atomic():
            leaver = directory.user_create(actor=None, username="leaver", display_name="Lee Vance (has left)",
                                           email="leaver@example.test")
            agent = Agent.objects.get(workspace=soc, name="ca-drift-emea")
            registry.agent_person_add(actor=None, agent=agent, user=leaver, role=agent_policy.SPONSOR_AGENT)
            for sponsor in registry.people_of(agent)[agent_policy.SPONSOR_AGENT]:
                if sponsor.pk != leaver.pk:
                    registry.agent_person_remove(actor=None, agent=agent, user=sponsor,
                                                 role=agent_policy.SPONSOR_AGENT)
            directory.user_deactivate(actor=None, user=leaver)
    write("  leaver (deactivated, no manager) was the only sponsor of ca-drift-emea: sweep_orphans has work")


@register("access reviews")
def seed_access_reviews(write: Callable[[str], None]) -> None:
    """An open monthly review of soc's agents by their sponsors (R19), one agent idle for 45 days so a "deny"
    recommendation shows next to the "approve" ones. Seeded once; later runs leave it as it became."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from governance.reviews.campaigns import review_create
    from governance.reviews.models import AccessReview

    soc = Workspace.objects.get(slug="soc")
    if AccessReview.objects.filter(workspace=soc, name="Monthly SOC agent review").exists():
        return
    users = {u.username: u for u in User.objects.filter(kind="human")}
    now = timezone.now()
    with transaction.atomic():
        # Demo data shaping, not a service path: the agent's last use (a successful sign-in, governance.usage's
        # definition) 45 days ago, and set up before that.
        from agents.models import Agent
        from governance.signin.models import SignIn

        idle = Agent.objects.filter(workspace=soc, name="workload-hygiene").select_related("identity").first()
        if idle is not None:
            Agent.objects.filter(pk=idle.pk).update(created_at=now - timedelta(days=60))
            SignIn.objects.create(agent=idle, at=now - timedelta(days=45), client_id=idle.identity.client_id,
                                  actor_kind="agent", grant_type="client_credentials", outcome="success",
                                  granted_scopes=[], ip="10.0.0.5")
        campaign = review_create(
            actor=users["owner"], workspace=soc, name="Monthly SOC agent review",
            description="Do the SOC's agents still need their identities and permissions?",
            scope_kind="workspace_agents", reviewer_kind="sponsors", fallback_reviewer=users["owner"],
            recurrence="monthly", starts_at=now - timedelta(hours=1), duration_days=14, auto_apply=True,
            no_response="keep")
    instance = campaign.instances.first()
    write(f"  access review {campaign.name}: {instance.items.count() if instance else 0} item(s) open for the "
          f"sponsors")


@register("conditional access")
def seed_conditional_access(write: Callable[[str], None]) -> None:
    """Two policies: partner agents only from the corporate network (on), and a report-only high-risk block."""
    from governance.conditional_access import services as conditional_access
    from governance.conditional_access.models import ConditionalAccessPolicy

    policies = [
        {"name": "Partner agents only from the corporate network", "state": "on", "grant": "allow",
         "publisher_kinds": ["partner"], "ip_ranges": ["10.0.0.0/8", "127.0.0.0/8", "::1/128"],
         "description": "Partner agents act only from inside the network."},
        {"name": "Block high-risk agents", "state": "report_only", "grant": "block", "all_agents": True,
         "min_risk_level": "high", "description": "Report-only until the risk signals are tuned."},
    ]
    for data in policies:
        if not ConditionalAccessPolicy.objects.filter(name=data["name"]).exists():
            conditional_access.policy_save(actor=None, data=data)
            write(f"  policy {data['name']} ({data['state']})")


@register("agent sign-in")
def seed_agent_sign_in(write: Callable[[str], None]) -> None:
    """One demo agent's client id and secret, printed with a curl line that gets a token from ``make run``.

    A secret cannot be shown twice, so the demo one is derived from this installation's ``SECRET_KEY`` (demo data
    only): every run prints the same working secret, and only the first run issues it."""
    import hashlib
    import hmac
    from datetime import timedelta

    from django.conf import settings

    from agents import credentials
    from agents.models import Credential

    agent = Agent.objects.filter(workspace__slug="soc", name="device-cleanup", status="active").first()
    if agent is None:
        return
    secret = credentials.SECRET_PREFIX + hmac.new(settings.SECRET_KEY.encode(), b"demo client secret",
                                                  hashlib.sha256).hexdigest()
    credential = Credential.objects.filter(identity__agent=agent, secret_hash=credentials.hash_secret(secret),
                                           revoked_at__isnull=True, expires_at__gt=timezone.now()).first()
    if credential is None:
        Credential.objects.filter(secret_hash=credentials.hash_secret(secret)).delete()  # an expired demo one
        credential, secret = registry.credential_rotate(actor=None, agent=agent, overlap=timedelta(0), secret=secret)
    client_id = credential.identity.client_id
    write(f"  agent {agent.name} can get tokens — client id {client_id}, client secret {secret}")
    write(f"  curl -s -u '{client_id}:{secret}' -d grant_type=client_credentials "
          f"{settings.PORTAL_BASE_URL}/oauth/token/")
