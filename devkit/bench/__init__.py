"""Benchmark scenarios for ``manage.py bench``. Nothing here is imported by a web or worker process."""

from __future__ import annotations


def load() -> dict:
    """Every scenario by name: the portal's, the registry's, governance's and the OAuth endpoints'."""
    from devkit.bench import agents, audit, governance, oauth, oauth_federated, oauth_jwt, replay, signin, usage  # noqa: F401, E501  (each registers its scenarios)
    from devkit.bench.portal import SCENARIOS

    return SCENARIOS
