"""Resource indicators (RFC 8707): which audience a token is for, and the scopes that audience accepts (R26).

A token is issued for exactly one resource. No ``resource`` parameter means the portal's own API, whose identifier
is ``PORTAL_BASE_URL`` and which accepts any permission of the catalog; any other identifier must be a registered
``ResourceServer`` (matched byte for byte), else the request is ``invalid_target``. The registered resources are
kept per process and reloaded when one changes (``resources_changed``, through the shared cache) and at least every
``CACHE_SECONDS``: the token endpoint resolves one on every request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from governance.signin.models import ResourceServer

CACHE_SECONDS = 30
_VERSION = "aip:resources:version"
_cached: dict = {"version": None, "loaded_at": 0.0, "by_identifier": {}}


@dataclass(frozen=True)
class Resource:
    identifier: str
    name: str
    scopes: frozenset[str] | None  # None: the portal API (any permission of the catalog)
    server_id: int | None = None
    agent_id: int | None = None  # an agent that is itself a resource

    def accepts(self, scopes) -> frozenset[str]:
        """The scopes among ``scopes`` this resource accepts."""
        return frozenset(scopes) if self.scopes is None else frozenset(scopes) & self.scopes


def portal_identifier() -> str:
    return settings.PORTAL_BASE_URL


def portal_resource() -> Resource:
    return Resource(identifier=portal_identifier(), name="Agent Identity Portal API", scopes=None)


def resources_changed() -> None:
    """Tell every process to reload the registered resources at its next token request."""
    cache.set(_VERSION, time.time_ns(), None)


def _registered() -> dict[str, Resource]:
    version = cache.get(_VERSION)
    now = time.monotonic()
    if version is None or version != _cached["version"] or now - _cached["loaded_at"] > CACHE_SECONDS:
        if version is None:
            cache.add(_VERSION, time.time_ns(), None)
            version = cache.get(_VERSION)
        rows = ResourceServer.objects.filter(revoked_at__isnull=True, identifier__isnull=False) \
            .values_list("pk", "name", "identifier", "scopes", "agent_id")
        _cached.update(version=version, loaded_at=now, by_identifier={
            identifier: Resource(identifier, name, frozenset(scopes or ()), pk, agent_id)
            for pk, name, identifier, scopes, agent_id in rows})
    return _cached["by_identifier"]


def resolve(identifier: str | None) -> Resource | None:
    """The resource a request names (the portal API when it names none), or None when it is not registered."""
    if not identifier or identifier == portal_identifier():
        return portal_resource()
    return _registered().get(identifier)


def registered() -> list[Resource]:
    return sorted(_registered().values(), key=lambda r: r.identifier)
