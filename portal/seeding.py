"""Demo-data steps contributed by higher layers (DESIGN §2: imports flow down, so they register here).

``seed_demo`` runs the portal's own step (workspaces and users) and then every registered step in order.
Each step must be idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

DEMO_STEPS: list[tuple[str, Callable[[Callable[[str], None]], None]]] = []


def register(name: str):
    def decorator(step: Callable[[Callable[[str], None]], None]):
        if name not in {n for n, _ in DEMO_STEPS}:
            DEMO_STEPS.append((name, step))
        return step

    return decorator
