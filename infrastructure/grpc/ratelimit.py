"""Rate limiting: a token bucket per (principal, graph, method class), per process.

Every call of an Edgewise method takes one token from the bucket of its caller (the
principal authentication found), its graph (the one authorization checked) and its method
class (``rpc_table.rate_class``: reads, writes or schema; a WatchEvents stream takes one at
open). An empty bucket answers RESOURCE_EXHAUSTED with RetryInfo (the time until the next
token) and QuotaFailure, before validation or the handler run. Health, reflection and
methods Edgewise does not serve are never limited, and a class whose rate is 0 is unlimited.

A principal also has one bucket per class for all its graphs together, ``principal_factor``
times the per-graph rate and burst (EDGEWISE_RATE_LIMIT_PRINCIPAL_FACTOR, default 10; 0 = no
such cap): a principal allowed ``team-*`` or ``*`` cannot multiply its rate by naming more
graphs, real or invented.

The buckets are per process and in memory: N query workers let a principal through N times
the configured rate, and a restart refills them. They keep one noisy caller from starving
the others of a process; the defence against floods is at the edge, Envoy's local rate limit
(``envoy.filters.http.local_ratelimit``) in the gateway in front of every process. The table is bounded (``RateLimitSettings.max_buckets``): the least
recently used bucket is dropped first, and a dropped bucket comes back full.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from grpc import aio

from domain.errors import QuotaViolation, RateLimited, Reason
from infrastructure.config import RateLimitSettings
from infrastructure.grpc.context import current_facts
from infrastructure.grpc.interceptors import _drain, _WrappingInterceptor
from infrastructure.security.rpc_table import rate_class

MIN_RETRY_SECONDS = 0.001  # RetryInfo never says "retry now" to a caller that was just refused

BucketKey = tuple[str, str, str]  # (principal, graph, rate class)
# The graph part of a principal's bucket for all its graphs together (no graph id holds "*").
ALL_GRAPHS = "*"


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` tokens per second; starts full.
    A rate of 0 (or less) is no limit: every ``take`` succeeds."""

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:  # a clock that stands still (or a stale ``now``) refills nothing
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available at ``now`` (0.0: one is); takes nothing."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def take(self, now: float) -> float:
        """Take one token at time ``now`` (seconds, any monotonic clock). Returns 0.0 when a
        token was taken, else the seconds until one is available (nothing is taken then)."""
        wait = self.wait(now)
        if wait == 0.0 and self.rate > 0:
            self._tokens -= 1.0
        return wait

    def tokens(self, now: float) -> float:
        """The tokens available at ``now`` (for tests and diagnostics; takes nothing)."""
        if self.rate <= 0:
            return float(self.burst)
        return min(float(self.burst), self._tokens + max(0.0, now - self._last) * self.rate)


class BucketTable:
    """At most ``max_buckets`` buckets, least recently used dropped first; O(1) per call."""

    def __init__(self, max_buckets: int) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be positive, got {max_buckets}")
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[BucketKey, TokenBucket] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def find(self, key: BucketKey) -> TokenBucket | None:
        """The bucket of ``key`` (now the most recently used), or None."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
        return bucket

    def add(self, key: BucketKey, bucket: TokenBucket) -> TokenBucket:
        """Keep ``bucket`` for ``key`` (absent), dropping the least recently used past the bound."""
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
            self.evictions += 1
        return bucket

    def get(self, key: BucketKey, create: Callable[[], TokenBucket]) -> TokenBucket:
        """The bucket of ``key`` (now the most recently used), created by ``create`` if absent."""
        bucket = self.find(key)
        return bucket if bucket is not None else self.add(key, create())


class RateLimitInterceptor(_WrappingInterceptor):
    """One token per call from the (principal, graph, class) bucket; RateLimited when empty.

    Sits inside authentication and authorization (chain.py): the principal and the graph
    are the call's facts they filled in (``""`` when unset, e.g. dev mode without a graph).
    ``clock``: seconds, monotonic (tests inject one)."""

    def __init__(self, settings: RateLimitSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._settings = settings
        self._clock = clock
        self.buckets = BucketTable(settings.max_buckets)

    def check(self, method: str) -> None:
        """Take a token for a call of ``method`` now, or raise RateLimited."""
        method_class = rate_class(method)
        if method_class is None:  # open (health, reflection) or not an Edgewise method
            return
        rate, burst = self._settings.limit(method_class)
        if rate <= 0:
            return
        facts = current_facts()
        principal, graph = facts.principal_name, facts.graph
        now = self._clock()
        buckets = self.buckets
        key = (principal, graph, method_class)
        bucket = buckets.find(key)
        if bucket is None:
            bucket = buckets.add(key, TokenBucket(rate, burst, now))
        wait = bucket.wait(now)
        limit, limit_burst, overall_refused = rate, burst, False
        overall = None
        factor = self._settings.principal_factor
        if factor:
            # A principal allowed many graphs (``team-*``, ``*``) must not multiply its rate by
            # naming more of them, real or not: one more bucket for all its graphs together.
            overall_key = (principal, ALL_GRAPHS, method_class)
            overall = buckets.find(overall_key)
            if overall is None:
                overall = buckets.add(overall_key, TokenBucket(rate * factor, burst * factor, now))
            overall_wait = overall.wait(now)
            if overall_wait > wait:
                wait, limit, limit_burst, overall_refused = overall_wait, rate * factor, burst * factor, True
        if wait <= 0:
            bucket.take(now)
            if overall is not None:
                overall.take(now)
            return
        retry_after = max(MIN_RETRY_SECONDS, wait)
        subject, scope = ((f"principal:{principal}", " across all graphs") if overall_refused
                          else (f"principal:{principal}/graph:{graph}", ""))
        raise RateLimited(
            f"rate limit exceeded: {method_class} allow {limit:g} calls per second (burst {limit_burst}) per principal"
            f"{scope or ' and graph'}; retry in {retry_after:.3f} s",
            reason=Reason.RATE_LIMITED, retry_after_seconds=retry_after,
            metadata={"rate_class": method_class, "limit_per_second": f"{limit:g}", "burst": str(limit_burst),
                      "principal": principal, "graph": graph, "scope": "principal" if scope else "graph"},
            violations=[QuotaViolation(subject=subject,
                                       description=f"{method_class}: {limit:g} calls per second, burst "
                                                   f"{limit_burst}{scope}")])

    async def around_unary(self, method: str, behavior: Callable[..., Awaitable[Any]], request: Any,
                           context: aio.ServicerContext) -> Any:
        self.check(method)
        return await behavior(request, context)

    async def around_stream(self, method: str, behavior: Callable[..., Any], request: Any,
                            context: aio.ServicerContext) -> AsyncIterator[Any]:
        self.check(method)  # a stream takes one token, at open
        async for item in _drain(behavior, request, context):
            yield item
