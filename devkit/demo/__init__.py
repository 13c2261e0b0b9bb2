"""Demo data for ``manage.py seed_demo``: each module registers its steps here, in the order ``load`` imports them.

Every step is idempotent. Nothing here is imported by a web or worker process.
"""

from __future__ import annotations

from collections.abc import Callable

Step = Callable[[Callable[[str], None]], None]
STEPS: list[tuple[str, Step]] = []


def register(name: str):
    def decorator(step: Step) -> Step:
        if name not in {n for n, _ in STEPS}:
            STEPS.append((name, step))
        return step

    return decorator


def load() -> list[tuple[str, Step]]:
    """The registry's, governance's, risk's and the built-in agents' demo steps, in that order."""
    from devkit.demo import agents, governance, risk, runs  # noqa: F401  (each registers its steps)

    return list(STEPS)
