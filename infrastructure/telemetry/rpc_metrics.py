"""RPC metrics (Prometheus): what every call did, by service, method and code, per process.

``RpcMetrics`` owns one ``CollectorRegistry``; ``MetricsInterceptor`` (chain.py, right inside
the access log) records every call into it, and ``metrics.start_metrics_server`` serves it on
the process's side port (``/metrics``, 127.0.0.1 by default). The series:

- ``edgewise_rpc_handled_total{grpc_service,grpc_method,grpc_code}``: finished calls;
- ``edgewise_rpc_handling_seconds{grpc_service,grpc_method,grpc_code}``: their duration
  (histogram, 0.5 ms to 10 s; a stream's is its whole life);
- ``edgewise_rpc_in_flight{grpc_service,grpc_method}``: calls running now;
- ``edgewise_rpc_rate_limited_total{grpc_service,grpc_method,rate_class}``: calls refused by
  the rate limiter (RESOURCE_EXHAUSTED, reason RATE_LIMITED);
- ``edgewise_authentication_failures_total{reason}``: UNAUTHENTICATED calls by ErrorInfo reason;
- ``edgewise_authorization_denials_total{reason}``: PERMISSION_DENIED calls by ErrorInfo reason;
- query processes: ``edgewise_projection_position{shard}`` and ``edgewise_projection_lag_events{shard}``
  (``watch_projection``).

Every label value comes from a fixed set: methods Edgewise serves, health and reflection
(anything else, e.g. a name a caller invented for the UNIMPLEMENTED fallback, is
``grpc_service="unknown", grpc_method="unknown"``), the gRPC codes, the rate classes, the
authentication/authorization reason codes (others are ``OTHER``), and projection shards
only where an allow-list says so (see ``ProjectionCollector``). Never a graph id, a principal
or a request value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from domain.errors import DomainError, Reason
from infrastructure.grpc.context import CallFacts, current_facts
from infrastructure.grpc.interceptors import ObservingInterceptor, call_code
from infrastructure.grpc.server import EDGEWISE_METHODS
from infrastructure.security.rpc_table import rate_class

UNKNOWN = "unknown"
OTHER_REASON = "OTHER"
OTHER_SHARD = "_other"
# 0.5 ms (a cached GetNode) to 10 s (a deep traversal at its deadline)
HANDLING_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                            1.0, 2.5, 5.0, 10.0)

_REFLECTION_SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")
_HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]


def _known_methods() -> dict[str, tuple[str, str]]:
    """Full method path -> (service, method) label values, for every method a label may name."""
    known: dict[str, tuple[str, str]] = {}
    services: list[tuple[str, Iterable[str]]] = [*EDGEWISE_METHODS.items(),
                                                 (_HEALTH_SERVICE.full_name, _HEALTH_SERVICE.methods_by_name),
                                                 *((name, ("ServerReflectionInfo",)) for name in _REFLECTION_SERVICES)]
    for service, methods in services:
        for name in methods:
            known[f"/{service}/{name}"] = (service, name)
    return known


KNOWN_METHODS = _known_methods()

# The reasons authentication and authorization fail with (domain.errors.Reason); a reason
# outside these is counted as OTHER, so a new code cannot grow the label set unnoticed.
AUTHENTICATION_REASONS = frozenset({
    "UNAUTHENTICATED", Reason.TOKEN_MISSING, Reason.TOKEN_MALFORMED, Reason.TOKEN_SIGNATURE_INVALID,
    Reason.TOKEN_ALGORITHM_NOT_ALLOWED, Reason.TOKEN_KEY_UNKNOWN, Reason.TOKEN_EXPIRED,
    Reason.TOKEN_NOT_YET_VALID, Reason.TOKEN_AUDIENCE_INVALID, Reason.TOKEN_ISSUER_INVALID,
    Reason.TOKEN_CLAIMS_INVALID})
AUTHORIZATION_REASONS = frozenset({"PERMISSION_DENIED", Reason.SCOPE_MISSING, Reason.GRAPH_ACCESS_DENIED})


def method_labels(method: str) -> tuple[str, str]:
    """(grpc_service, grpc_method) of a full method path; ("unknown", "unknown") for any
    method Edgewise, health and reflection do not have."""
    return KNOWN_METHODS.get(method, (UNKNOWN, UNKNOWN))


def _bounded(reason: str, allowed: frozenset[str], default: str) -> str:
    reason = reason or default
    return reason if reason in allowed else OTHER_REASON


@dataclass
class _Call:
    method: str
    service_label: str
    method_label: str
    started: float
    facts: CallFacts


class RpcMetrics:
    """The process's RPC metrics and their registry (serve it with ``start_metrics_server``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ["grpc_service", "grpc_method", "grpc_code"]
        self.handled = Counter("edgewise_rpc_handled", "RPCs finished, by gRPC status code", labels,
                               registry=self.registry)
        self.handling_seconds = Histogram("edgewise_rpc_handling_seconds",
                                          "RPC duration from the server's first look to its status, in seconds",
                                          labels, buckets=HANDLING_SECONDS_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("edgewise_rpc_in_flight", "RPCs running now", ["grpc_service", "grpc_method"],
                               registry=self.registry)
        self.rate_limited = Counter("edgewise_rpc_rate_limited",
                                    "RPCs refused by the per-(principal, graph) rate limit (RESOURCE_EXHAUSTED)",
                                    ["grpc_service", "grpc_method", "rate_class"], registry=self.registry)
        self.authentication_failures = Counter("edgewise_authentication_failures",
                                               "RPCs refused as UNAUTHENTICATED, by ErrorInfo reason", ["reason"],
                                               registry=self.registry)
        self.authorization_denials = Counter("edgewise_authorization_denials",
                                             "RPCs refused as PERMISSION_DENIED, by ErrorInfo reason", ["reason"],
                                             registry=self.registry)
        # label children by key: a call costs dict lookups, not the library's label validation
        self._finished: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._running: dict[tuple[str, str], Any] = {}

    def register(self, collector: Collector) -> None:
        """Serve ``collector``'s metrics from this registry too (e.g. the read cache's)."""
        self.registry.register(collector)

    def watch_projection(self, *, positions: Callable[[], Mapping[str, int]],
                         heads: Callable[[], Mapping[str, int]], labelled: Callable[[str], bool]) -> None:
        """Serve the projection gauges of a query process (``ProjectionCollector``)."""
        self.registry.register(ProjectionCollector(positions=positions, heads=heads, labelled=labelled))

    def call_started(self, method: str) -> _Call:
        service_label, method_label = method_labels(method)
        gauge = self._running.get((service_label, method_label))
        if gauge is None:
            gauge = self._running[(service_label, method_label)] = self.in_flight.labels(service_label, method_label)
        gauge.inc()
        return _Call(method, service_label, method_label, time.perf_counter(), current_facts())

    def call_finished(self, call: _Call, code: str, exc: BaseException | None = None) -> None:
        """Record a call that ended with ``code`` (``call_code``); ``exc``: what it raised, if anything."""
        elapsed = time.perf_counter() - call.started
        self._running[(call.service_label, call.method_label)].dec()
        key = (call.service_label, call.method_label, code)
        children = self._finished.get(key)
        if children is None:
            children = self._finished[key] = (self.handled.labels(*key), self.handling_seconds.labels(*key))
        children[0].inc()
        children[1].observe(elapsed)
        if code in ("RESOURCE_EXHAUSTED", "UNAUTHENTICATED", "PERMISSION_DENIED"):
            reason = call.facts.error_reason or (exc.reason if isinstance(exc, DomainError) else "")
            self._count_refusal(call, code, reason)

    def _count_refusal(self, call: _Call, code: str, reason: str) -> None:
        if code == "RESOURCE_EXHAUSTED":
            if reason == Reason.RATE_LIMITED:
                self.rate_limited.labels(call.service_label, call.method_label,
                                         rate_class(call.method) or UNKNOWN).inc()
        elif code == "UNAUTHENTICATED":
            self.authentication_failures.labels(_bounded(reason, AUTHENTICATION_REASONS, "UNAUTHENTICATED")).inc()
        else:
            self.authorization_denials.labels(_bounded(reason, AUTHORIZATION_REASONS, "PERMISSION_DENIED")).inc()


class MetricsInterceptor(ObservingInterceptor):
    """Records every call into ``RpcMetrics``: in flight while it runs, then its code and
    duration (the same outcome the access log reports: ``interceptors.call_code``), and the
    refusals of the interceptors inside it (rate limit, authentication, authorization)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def started(self, method: str, request: Any, context: aio.ServicerContext) -> _Call:
        return self._metrics.call_started(method)

    def finished(self, method: str, request: Any, context: aio.ServicerContext, state: _Call,
                 exc: BaseException | None, messages: int | None) -> None:
        self._metrics.call_finished(state, call_code(context, exc), exc)


class ProjectionCollector(Collector):
    """``edgewise_projection_position{shard}`` and ``edgewise_projection_lag_events{shard}``,
    read at scrape time from values the query process keeps in memory anyway: ``positions``
    (its ProjectionProgress: how far the read model it serves got, per shard) and ``heads``
    (the log heads its projector read on its last poll, for the shards it projects). A scrape
    never touches the store.

    Shard label values stay bounded: a shard gets its own label only when ``labelled(shard)``
    says so — on SQLite the one shard "0"; on DynamoDB (a shard per graph) the shards of the
    graphs in ``EDGEWISE_METRICS_GRAPHS``. The lag of every other shard is summed into
    ``shard="_other"``, and their positions (not summable) are not reported.

    Lag is reported by the process that projects a shard (several query workers: one per shard,
    so summing the lag over processes counts each shard once); a worker that only follows
    another's projection reports its positions, no lag."""

    def __init__(self, *, positions: Callable[[], Mapping[str, int]], heads: Callable[[], Mapping[str, int]],
                 labelled: Callable[[str], bool]) -> None:
        self._positions = positions
        self._heads = heads
        self._labelled = labelled

    def describe(self) -> Iterable[Any]:
        return []  # the families depend on the shards: no fixed description

    def collect(self) -> Iterable[Any]:
        # Called on the HTTP server's thread: both sources hand out whole dicts that the event
        # loop replaces or copies under the GIL, never a dict being changed.
        positions = dict(self._positions())
        heads = dict(self._heads())
        position = GaugeMetricFamily("edgewise_projection_position",
                                     "The last event position the served read model holds, per log shard",
                                     labels=["shard"])
        lag = GaugeMetricFamily("edgewise_projection_lag_events",
                                "Events written to the log and not yet projected, per log shard this process "
                                "projects (unlisted shards summed into shard=\"_other\")", labels=["shard"])
        for shard in sorted(positions.keys() | heads.keys()):  # a shard with nothing projected yet is at 0
            if self._labelled(shard):
                position.add_metric([shard], positions.get(shard, 0))
        other: int | None = None
        for shard, head in sorted(heads.items()):
            behind = max(0, head - positions.get(shard, 0))
            if self._labelled(shard):
                lag.add_metric([shard], behind)
            else:
                other = (other or 0) + behind
        if other is not None:
            lag.add_metric([OTHER_SHARD], other)
        yield position
        yield lag
