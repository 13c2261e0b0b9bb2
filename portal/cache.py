"""The cache backend for production: Redis, and this process's memory while Redis does not answer
(docs/design.md, Faults).

Rate limits, the lock-out and the portal's small caches live in Redis so that every worker shares them. When Redis
stops answering, a request must not fail for it: agents across the organisation would stop authenticating because
a cache did. So each operation that meets a refused or timed-out connection is served by a per-process memory cache
instead, the failure is logged (once a minute per process, not once per request), and Redis is not asked again for
``RETRY_SECONDS`` so that a dead Redis costs one short timeout now and then rather than one on every request. The
first operation Redis answers after that goes back to the shared counters.
"""

from __future__ import annotations

import logging
import threading
import time

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

logger = logging.getLogger("portal.cache")

#: What "Redis does not answer" looks like to its client (a Redis still loading its data is a ConnectionError too).
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
RETRY_SECONDS = 1.0  # after a failure, Redis is left alone this long
WARN_EVERY_SECONDS = 60.0


class _Health:
    """Whether this process last found Redis answering; shared by the cache backend of every thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_until = 0.0  # monotonic time before which Redis is not asked
        self.degraded = False
        self.last_warning = float("-inf")


_health = _Health()


def redis_degraded() -> bool:
    """Whether this process is serving its cache from memory because Redis did not answer (``/healthz``)."""
    return _health.degraded


class _KeptClients(RedisCacheClient):
    """Django's Redis cache client, keeping one redis-py client per connection pool. Django builds a new client
    object on every operation; building one costs more CPU than the round trip it makes (redis-py fills its
    response-callback tables in the constructor), and the OAuth endpoints touch the cache on every request. A
    redis-py client is safe to share between threads: each command takes a connection from the pool."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class FailSoftRedisCache(RedisCache):
    """Django's Redis cache, falling back to a per-process memory cache while Redis does not answer."""

    def __init__(self, server, params):
        options = dict(params.get("OPTIONS") or {})
        # One immediate retry (a pooled connection Redis closed when it restarted) and no back-off: redis-py's
        # default retries three times with back-off, which would stall every request while Redis is down.
        options.setdefault("retry", Retry(NoBackoff(), 1))
        super().__init__(server, {**params, "OPTIONS": options})
        self._class = _KeptClients
        self._fallback = LocMemCache("portal-redis-fallback", {"TIMEOUT": params.get("TIMEOUT", 300),
                                                               "OPTIONS": {"MAX_ENTRIES": 10000}})

    @property
    def available(self) -> bool:
        """Whether Redis should be asked now (it answered last time, or ``RETRY_SECONDS`` have passed)."""
        return time.monotonic() >= _health.down_until

    def redis_failed(self, error: Exception) -> None:
        """Serve from memory for ``RETRY_SECONDS``; log it at most once a minute."""
        now = time.monotonic()
        with _health.lock:
            _health.down_until = now + RETRY_SECONDS
            _health.degraded = True
            warn = now - _health.last_warning >= WARN_EVERY_SECONDS
            if warn:
                _health.last_warning = now
        if warn:
            logger.warning("Redis does not answer (%s: %s): rate limits, lock-out and caches are kept per process "
                           "until it does", type(error).__name__, error)

    def redis_answered(self) -> None:
        if _health.degraded:
            with _health.lock:
                was_degraded, _health.degraded = _health.degraded, False
            if was_degraded:
                logger.warning("Redis answers again: rate limits, lock-out and caches are shared again")

    def _call(self, operation: str, *args, **kwargs):
        if self.available:
            try:
                result = getattr(super(), operation)(*args, **kwargs)
            except REDIS_UNAVAILABLE as error:
                self.redis_failed(error)
            else:
                self.redis_answered()
                return result
        return getattr(self._fallback, operation)(*args, **kwargs)

    def add(self, *args, **kwargs):
        return self._call("add", *args, **kwargs)

    def get(self, *args, **kwargs):
        return self._call("get", *args, **kwargs)

    def set(self, *args, **kwargs):
        return self._call("set", *args, **kwargs)

    def touch(self, *args, **kwargs):
        return self._call("touch", *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._call("delete", *args, **kwargs)

    def get_many(self, *args, **kwargs):
        return self._call("get_many", *args, **kwargs)

    def has_key(self, *args, **kwargs):
        return self._call("has_key", *args, **kwargs)

    def incr(self, *args, **kwargs):
        return self._call("incr", *args, **kwargs)

    def set_many(self, *args, **kwargs):
        return self._call("set_many", *args, **kwargs)

    def delete_many(self, *args, **kwargs):
        return self._call("delete_many", *args, **kwargs)

    def clear(self):
        return self._call("clear")
