"""Demo data for ``seed_demo``: risky agents (R21), so the Risky agents page has something to decide.

ca-drift-hq in soc gets a new-scope detection (low) and a request burst (medium), so its risk is medium; a fleet
agent gets a new-scope detection only (low). Automatic remediation is left off. Idempotent: the detections' keys
are fixed, and ``record_detection`` raises a (agent, kind, key) once.
"""

from __future__ import annotations

from collections.abc import Callable

from agents.models import Agent
from devkit.demo import register
from governance.conditional_access.choices import RiskLevel
from governance.risk import services as risk
from governance.risk.choices import DetectionKind

DETECTIONS = [
    ("ca-drift-hq", DetectionKind.NEW_SCOPE, RiskLevel.LOW, "Policy.ReadWrite.ConditionalAccess",
     "Policy.ReadWrite.ConditionalAccess granted for the first time"),
    ("ca-drift-hq", DetectionKind.REQUEST_BURST, RiskLevel.MEDIUM, "demo-burst",
     "184 token requests in one minute (more than 120)"),
    ("workload-hygiene-03", DetectionKind.NEW_SCOPE, RiskLevel.LOW, "Application.Read.All",
     "Application.Read.All granted for the first time"),
]


@register("risky agents")
def seed_risk(write: Callable[[str], None]) -> None:
    agents = {a.name: a for a in Agent.objects.filter(workspace__slug="soc", name__in={d[0] for d in DETECTIONS})
              .select_related("workspace")}
    raised = 0
    for name, kind, level, key, detail in DETECTIONS:
        agent = agents.get(name)
        if agent is None:  # the registry step did not make it (a trimmed-down demo)
            continue
        if risk.record_detection(agent=agent, kind=kind, level=level, key=key, detail=detail) is not None:
            raised += 1
    levels = dict(Agent.objects.filter(pk__in=[a.pk for a in agents.values()]).values_list("name", "risk_level"))
    write(f"  risk detections: {raised} raised; " + ", ".join(f"{n} at {levels[n]} risk" for n in sorted(levels)))
