"""Prometheus metrics on a side HTTP port (``/metrics`` on 127.0.0.1), one registry per process:
the RPC metrics of both services (rpc_metrics.py) and, on query processes, the read cache's
and the projection's.

Hot paths keep plain integer counters; collectors read them only when scraped, so a cache
hit costs no lock and no label lookup. Labels stay bounded (a cache entry's kind, never a
graph id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from infrastructure.telemetry.rpc_metrics import RpcMetrics

_log = logging.getLogger("edgewise.metrics")

METRICS_HOST = "127.0.0.1"


class ReadCacheCollector(Collector):
    """``edgewise_read_cache_*`` from ``stats()``, any object with ``hits``/``misses`` (dicts
    by kind), ``evictions``, ``bytes``, ``entries`` and ``max_bytes``
    (query_service.cache.CacheStats)."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Any]:
        s = self._stats()
        hits = CounterMetricFamily("edgewise_read_cache_hits", "Read cache lookups served from the cache",
                                   labels=["kind"])
        misses = CounterMetricFamily("edgewise_read_cache_misses", "Read cache lookups that read the store",
                                     labels=["kind"])
        for kind, value in sorted(s.hits.items()):
            hits.add_metric([kind], value)
        for kind, value in sorted(s.misses.items()):
            misses.add_metric([kind], value)
        yield hits
        yield misses
        yield CounterMetricFamily("edgewise_read_cache_evictions", "Entries evicted to stay within the size bound",
                                  value=s.evictions)
        yield GaugeMetricFamily("edgewise_read_cache_bytes", "Estimated size of the cached entries", value=s.bytes)
        yield GaugeMetricFamily("edgewise_read_cache_entries", "Cached entries", value=s.entries)
        yield GaugeMetricFamily("edgewise_read_cache_max_bytes", "The cache's size bound", value=s.max_bytes)


@dataclass
class MetricsServer:
    port: int
    _httpd: Any

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def start_metrics_server(port: int, collectors: Iterable[Collector] = (), *, metrics: RpcMetrics | None = None,
                         host: str = METRICS_HOST) -> MetricsServer:
    """Serve ``metrics``' registry (the RPC metrics, infrastructure.telemetry.rpc_metrics) and
    ``collectors`` on http://host:port/metrics (a daemon thread); port 0 picks a free one."""
    registry = metrics.registry if metrics is not None else CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    try:
        httpd, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # one line and exit 4 (infrastructure.process), like a taken gRPC port
        from infrastructure.grpc.server import BindError

        raise BindError(f"EDGEWISE_METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror or exc}); each "
                        f"process needs a port of its own (make run: command on the base port, query worker i "
                        f"on base + 1 + i)") from None
    bound = httpd.server_address[1]
    _log.info("metrics listening", extra={"fields": {"address": f"{host}:{bound}", "path": "/metrics"}})
    return MetricsServer(port=bound, _httpd=httpd)
