"""The interceptor chain both services run, assembled from configuration in one place.

Order, outermost first (DESIGN §6):

    request context → access log → metrics → error mapping → storage cost →
    authentication → authorization → rate limiting → validation → handler

Why this order: the access log and the metrics see every outcome, including the statuses the
inner interceptors raise (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED), and read
who called from the call's facts the inner ones fill in. Authentication comes before
authorization (no principal, no decision), authorization before rate limiting (a stranger
cannot drain a principal's bucket, and an unauthenticated call that would also be limited is
UNAUTHENTICATED) and before validation (an invalid request about a graph the caller may not use
is PERMISSION_DENIED, so nothing about that graph leaks through validation or NOT_FOUND).

Adding a concern is one class and one entry in ``CHAIN``: handlers and servicers never change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grpc import aio

from infrastructure.config import RateLimitSettings, Settings
from infrastructure.grpc.authn import AuthenticationInterceptor
from infrastructure.grpc.authz import AuthorizationInterceptor
from infrastructure.grpc.interceptors import (
    AccessLogInterceptor,
    ErrorMappingInterceptor,
    RequestContextInterceptor,
    StorageCostInterceptor,
    ValidationInterceptor,
)
from infrastructure.grpc.ratelimit import RateLimitInterceptor
from infrastructure.security.jwt import build_authenticator
from infrastructure.telemetry.rpc_metrics import MetricsInterceptor


@dataclass(frozen=True)
class ChainInputs:
    """What the entries are built from. ``settings`` None: an in-process server in tests
    (dev authentication, default limits)."""

    settings: Settings | None = None
    metrics: Any = None  # infrastructure.telemetry.rpc_metrics.RpcMetrics, or None: no metrics


Factory = Callable[[ChainInputs], aio.ServerInterceptor | None]

# (name, factory) outermost first; a factory returning None leaves its concern out.
CHAIN: tuple[tuple[str, Factory], ...] = (
    ("request_context", lambda inputs: RequestContextInterceptor()),
    ("access_log", lambda inputs: AccessLogInterceptor()),
    ("metrics", lambda inputs: MetricsInterceptor(inputs.metrics) if inputs.metrics is not None else None),
    ("error_mapping", lambda inputs: ErrorMappingInterceptor()),
    ("storage_cost", lambda inputs: StorageCostInterceptor()),
    ("authentication", lambda inputs: AuthenticationInterceptor(
        build_authenticator(inputs.settings.auth if inputs.settings is not None else None))),
    ("authorization", lambda inputs: AuthorizationInterceptor()),
    ("rate_limit", lambda inputs: RateLimitInterceptor(
        inputs.settings.rate_limits if inputs.settings else RateLimitSettings())),
    ("validation", lambda inputs: ValidationInterceptor()),
)


def chain_names() -> list[str]:
    return [name for name, _ in CHAIN]


def build_interceptors(settings: Settings | None = None, *, metrics: Any = None) -> list[aio.ServerInterceptor]:
    """The chain for one server, outermost first."""
    inputs = ChainInputs(settings=settings, metrics=metrics)
    built = (factory(inputs) for _, factory in CHAIN)
    return [interceptor for interceptor in built if interceptor is not None]


def default_interceptors() -> list[aio.ServerInterceptor]:
    """The chain of an in-process test server: every concern, dev authentication."""
    return build_interceptors(None)
