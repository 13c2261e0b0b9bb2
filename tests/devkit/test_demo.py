"""``seed_demo``'s steps (devkit.demo) run in a fixed order, whichever demo module a process imported first."""

from __future__ import annotations


def test_demo_steps_run_in_module_order_whatever_was_imported_first(monkeypatch):
    """A test that imports one step (the risk step, say) before ``seed_demo`` runs registers it first; the risk
    step must still run after the registry step, or it finds no agent to raise detections on and the demo is only
    complete the second time it is seeded."""
    from devkit import demo
    from devkit.demo import agents, governance, risk, runs  # noqa: F401  (imported: nothing registers later)

    monkeypatch.setattr(demo, "STEPS", [])
    demo.register("built-in agents")(runs.seed_built_in_agents)
    demo.register("risky agents")(risk.seed_risk)
    demo.register("agent registry")(agents.seed_registry)
    demo.register("sponsorship request")(agents.seed_sponsorship_request)
    assert [name for name, _step in demo.load()] == [
        "agent registry", "sponsorship request", "risky agents", "built-in agents"]


def test_every_demo_step_is_loaded_once_and_the_risk_step_follows_the_registry():
    from devkit import demo

    names = [name for name, _step in demo.load()]
    assert len(names) == len(set(names))
    assert names.index("agent registry") < names.index("risky agents")
    assert names.index("conditional access") < names.index("risky agents") < names.index("built-in agents")
