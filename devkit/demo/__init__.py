"""Demo data for ``manage.py seed_demo``: each module registers its steps here; ``load`` runs them in the order of
``MODULES`` (the modules' own order within each), whichever module happened to be imported first.

Every step is idempotent. Nothing here is imported by a web or worker process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

Step = Callable[[Callable[[str], None]], None]
#: The demo modules in the order their steps run: a later module's steps read what an earlier one made (the risk
#: step raises detections on the registry step's agents, so it must not run before them).
MODULES = ("agents", "governance", "risk", "runs")
STEPS: list[tuple[str, Step]] = []


def register(name: str):
    def decorator(step: Step) -> Step:
        if name not in {n for n, _ in STEPS}:
            STEPS.append((name, step))
        return step

    return decorator


def _position(module: str) -> int:
    short = module.rpartition(".")[2]
    return MODULES.index(short) if short in MODULES else len(MODULES)


def load() -> list[tuple[str, Step]]:
    """The registry's, governance's, risk's and the built-in agents' demo steps, in that order.

    Registration order alone is not enough: a module imported before ``load`` (a test importing one step, say)
    registers its steps first, and the risk step then ran before the registry had made its agents."""
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return sorted(STEPS, key=lambda entry: _position(entry[1].__module__))  # stable: a module's own order stays
