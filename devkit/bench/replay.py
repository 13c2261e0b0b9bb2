"""``policy_replay`` (docs/policy-replay.md, "At volume"): n sign-ins of 30 agents over the last 29 days, loaded by SQL
as ``signin_scale`` loads them, then a report-only policy with an address range, a credential type and office-hour
windows replayed over the last 30 days — against a plain ``COUNT(*)`` of the same rows, the floor of reading them.
The goal: 1,000,000 sign-ins replayed in at most 10 s on PostgreSQL. Needs the demo data (``manage.py seed_demo``).
"""

from __future__ import annotations

from devkit.bench.portal import scenario, timed
from devkit.bench.signin import Measured, _fleet, load
from governance.conditional_access import services as conditional_access
from governance.replay import replay

DAYS = 30
GOAL_SECONDS = 10.0


@scenario("policy_replay")
def policy_replay(n):
    _workspace, _owners, agents = _fleet("policy-replay")
    load_seconds = load(agents, n, oldest_days=DAYS - 1)
    policy = conditional_access.policy_save(actor=None, data={
        "name": "Bench: office network in office hours", "state": "report_only", "grant": "allow",
        "all_agents": True, "ip_ranges": ["10.0.0.0/14", "10.5.0.0/16"], "credential_types": ["secret", "key"],
        "time_windows": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}]})
    since, until = replay.window(DAYS)
    rows = replay.signins_replayed(since, until)
    baseline = timed(rows.count)
    result = {}
    measured = timed(lambda: result.update(replayed=replay.policy_replay(policy, days=DAYS)))
    replayed = result["replayed"]
    if replayed.sign_ins_replayed != rows.count():
        raise AssertionError(f"policy_replay: replayed {replayed.sign_ins_replayed} of {rows.count()} rows")
    extra = {"sign_ins_replayed": replayed.sign_ins_replayed, "blocked_sign_ins": replayed.sign_ins,
             "agents": replayed.agents, "groups_evaluated": replayed.groups_evaluated,
             "load_seconds": round(load_seconds, 1), "goal": "1,000,000 sign-ins replayed in <= 10 s",
             "met": measured[0] <= GOAL_SECONDS if n >= 1_000_000 else None}
    return Measured(measured[0], measured[1], extra), "count_of_the_same_rows", baseline


policy_replay.default_n = 1_000_000
