"""The edge's settings, from the environment, validated once (the style of
``infrastructure.config``: every problem named at once, nothing falls back silently).

| Variable | Default | Meaning |
|---|---|---|
| ``EDGEWISE_EDGE_GRPC_ADDR`` | ``127.0.0.1:8080`` | the gRPC listener (both services, health, reflection) |
| ``EDGEWISE_EDGE_REST_ADDR`` | ``127.0.0.1:8081`` | the REST/JSON listener (grpc_json_transcoder) |
| ``EDGEWISE_EDGE_ADMIN_ADDR`` | ``127.0.0.1:9901`` | Envoy's admin; loopback only |
| ``EDGEWISE_COMMAND_ADDRS`` | ``EDGEWISE_COMMAND_ADDR`` or ``127.0.0.1:50051`` | command service upstream(s), comma-separated |
| ``EDGEWISE_QUERY_ADDRS`` | ``EDGEWISE_QUERY_ADDR`` or ``127.0.0.1:50052`` | query worker upstreams, comma-separated: one endpoint each |
| ``EDGEWISE_EDGE_{COMMAND,QUERY}_TIMEOUT_MS`` | 15000 / 10000 | deadline when the caller sends no ``grpc-timeout`` |
| ``EDGEWISE_EDGE_{COMMAND,QUERY}_MAX_TIMEOUT_MS`` | 60000 / 60000 | cap on the caller's ``grpc-timeout`` |
| ``EDGEWISE_EDGE_{COMMAND,QUERY}_PER_TRY_TIMEOUT_MS`` | 15000 / 10000 | one attempt's limit on a retried route |
| ``EDGEWISE_EDGE_TLS_CERT`` / ``EDGEWISE_EDGE_TLS_KEY`` | empty | PEM files: TLS on both listeners (both or neither) |
| ``EDGEWISE_EDGE_ACCESS_LOG`` | empty (stdout) | file for Envoy's JSON access log |
| ``EDGEWISE_EDGE_LOG_LEVEL`` | ``warning`` | Envoy's own log level |
| ``EDGEWISE_EDGE_CONCURRENCY`` | ``0`` (one worker thread per core) | Envoy worker threads |
| ``EDGEWISE_EDGE_DESCRIPTOR_SET`` | ``build/edgewise.pb`` | the protos' descriptor set for the transcoder |
| ``EDGEWISE_EDGE_LOCAL_RATE_LIMIT`` | ``0`` (off) | ``<requests per second>[,<burst>]`` for each listener, all callers together: |
|  |  | Envoy's local rate limit, the edge's defence before any worker (RESOURCE_EXHAUSTED) |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from infrastructure.config import DEFAULT_COMMAND_ADDR, DEFAULT_QUERY_ADDR, ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DESCRIPTOR_SET = ROOT / "build" / "edgewise.pb"

DEFAULT_GRPC_ADDR = "127.0.0.1:8080"
DEFAULT_REST_ADDR = "127.0.0.1:8081"
DEFAULT_ADMIN_ADDR = "127.0.0.1:9901"
ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
# A typo guard: an hour is longer than any unary call this service should ever make.
MAX_TIMEOUT_MS = 3_600_000

COMMAND_SERVICE = "edgewise.graph.v1.GraphCommandService"
QUERY_SERVICE = "edgewise.graph.v1.GraphQueryService"
# A caller that sends this header with the same value as the request body's ``request_id``
# marks a command safe to retry: Envoy cannot read the protobuf body (ADR 0013), and the
# command service refuses a call whose header and body disagree.
IDEMPOTENCY_HEADER = "x-edgewise-request-id"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def is_unspecified(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    @classmethod
    def parse(cls, text: str) -> "Address":
        """``host:port`` or ``[v6]:port``; ValueError says what is wrong."""
        host, sep, port = text.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(f"must be host:port with a port from 1 to 65535, got {text!r}")
        if ":" in host:
            ipaddress.IPv6Address(host)  # a bare v6 without brackets is ambiguous: refuse it
            if not text.strip().startswith("["):
                raise ValueError(f"an IPv6 address needs brackets ([::1]:8080), got {text!r}")
        return cls(host, int(port))


@dataclass(frozen=True)
class Breakers:
    """Envoy circuit-breaker thresholds of one cluster (priority DEFAULT). With a retry
    budget set, Envoy ignores ``max_retries`` in favour of the budget: concurrent retries
    may be at most ``budget_percent`` % of the active and pending requests, but never
    fewer than ``min_retry_concurrency``."""

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    budget_percent: float = 20.0  # DESIGN §7: retries <= 20 % of calls
    min_retry_concurrency: int = 3


@dataclass(frozen=True)
class OutlierDetection:
    """Passive ejection. gRPC statuses count as their HTTP equivalents: UNAVAILABLE is a
    503 (a gateway failure), DEADLINE_EXCEEDED a 504, INTERNAL/UNKNOWN a 500."""

    consecutive_gateway_failure: int = 3
    consecutive_5xx: int = 5
    interval_ms: int = 2_000
    base_ejection_time_ms: int = 10_000
    max_ejection_percent: int = 50


@dataclass(frozen=True)
class HealthCheck:
    """Active gRPC health checks (grpc.health.v1, the cluster's service name)."""

    interval_ms: int = 2_000
    timeout_ms: int = 1_000
    unhealthy_threshold: int = 2
    healthy_threshold: int = 1


@dataclass(frozen=True)
class ServicePolicy:
    """Timeouts and retries of one service's routes, and its cluster's protection."""

    default_timeout_ms: int
    max_timeout_ms: int
    per_try_timeout_ms: int
    num_retries: int = 2
    retry_base_interval_ms: int = 25
    retry_max_interval_ms: int = 250
    breakers: Breakers = field(default_factory=Breakers)
    outlier: OutlierDetection = field(default_factory=OutlierDetection)
    health: HealthCheck = field(default_factory=HealthCheck)


def default_command_policy() -> ServicePolicy:
    # One process owns every write (SQLite's single writer): fewer concurrent requests.
    return ServicePolicy(default_timeout_ms=15_000, max_timeout_ms=60_000, per_try_timeout_ms=15_000,
                         breakers=Breakers(max_pending_requests=512, max_requests=512))


def default_query_policy() -> ServicePolicy:
    return ServicePolicy(default_timeout_ms=10_000, max_timeout_ms=60_000, per_try_timeout_ms=10_000)


def _addresses(*text: Address | str) -> tuple[Address, ...]:
    return tuple(a if isinstance(a, Address) else Address.parse(a) for a in text)


@dataclass(frozen=True)
class GatewaySettings:
    grpc_addr: Address = field(default_factory=lambda: Address.parse(DEFAULT_GRPC_ADDR))
    rest_addr: Address = field(default_factory=lambda: Address.parse(DEFAULT_REST_ADDR))
    admin_addr: Address = field(default_factory=lambda: Address.parse(DEFAULT_ADMIN_ADDR))
    command_addrs: tuple[Address, ...] = field(default_factory=lambda: _addresses(DEFAULT_COMMAND_ADDR))
    query_addrs: tuple[Address, ...] = field(default_factory=lambda: _addresses(DEFAULT_QUERY_ADDR))
    command: ServicePolicy = field(default_factory=default_command_policy)
    query: ServicePolicy = field(default_factory=default_query_policy)
    tls_cert: str = ""
    tls_key: str = ""
    access_log: str = ""  # empty: stdout
    log_level: str = "warning"
    concurrency: int = 0  # 0: Envoy's default, one worker thread per core
    descriptor_set: str = str(DEFAULT_DESCRIPTOR_SET)
    # Envoy's local rate limit per listener (all callers together): requests per second and
    # burst; 0 = off. The services' own buckets are per (principal, graph) and per process.
    local_rate_limit: int = 0
    local_rate_limit_burst: int = 0

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def problems(self) -> list[str]:
        """What makes these settings unusable (from_env raises on them; a caller building
        settings in code gets the same checks from ``check``)."""
        found: list[str] = []
        if not self.admin_addr.is_loopback:
            found.append(f"EDGEWISE_EDGE_ADMIN_ADDR must be a loopback address (127.0.0.1 or [::1]): "
                         f"Envoy's admin can stop the edge and change its state, got {self.admin_addr}")
        listeners = {"EDGEWISE_EDGE_GRPC_ADDR": self.grpc_addr, "EDGEWISE_EDGE_REST_ADDR": self.rest_addr,
                     "EDGEWISE_EDGE_ADMIN_ADDR": self.admin_addr}
        seen: dict[tuple[str, int], str] = {}
        for name, addr in listeners.items():
            key = (addr.host, addr.port)
            if key in seen:
                found.append(f"{name} and {seen[key]} are the same address {addr}")
            seen[key] = name
        for name, addrs in (("EDGEWISE_COMMAND_ADDRS", self.command_addrs), ("EDGEWISE_QUERY_ADDRS", self.query_addrs)):
            if not addrs:
                found.append(f"{name} must name at least one host:port")
            for addr in addrs:
                if addr.is_unspecified:
                    found.append(f"{name}: {addr} is a listen-on-every-interface address, not one to connect "
                                 f"to; name the host the service runs on")
            if len(set(addrs)) != len(addrs):
                found.append(f"{name} names an address twice: {', '.join(map(str, addrs))}")
        for service, policy in (("COMMAND", self.command), ("QUERY", self.query)):
            prefix = f"EDGEWISE_EDGE_{service}"
            for suffix, value in (("TIMEOUT_MS", policy.default_timeout_ms), ("MAX_TIMEOUT_MS", policy.max_timeout_ms),
                                  ("PER_TRY_TIMEOUT_MS", policy.per_try_timeout_ms)):
                if not 0 < value <= MAX_TIMEOUT_MS:
                    found.append(f"{prefix}_{suffix} must be from 1 to {MAX_TIMEOUT_MS} milliseconds, got {value}")
            if policy.default_timeout_ms > policy.max_timeout_ms:
                found.append(f"{prefix}_TIMEOUT_MS ({policy.default_timeout_ms}) must not exceed "
                             f"{prefix}_MAX_TIMEOUT_MS ({policy.max_timeout_ms})")
            if policy.per_try_timeout_ms > policy.max_timeout_ms:
                found.append(f"{prefix}_PER_TRY_TIMEOUT_MS ({policy.per_try_timeout_ms}) must not exceed "
                             f"{prefix}_MAX_TIMEOUT_MS ({policy.max_timeout_ms})")
            if not 0 < policy.breakers.budget_percent <= 100:
                found.append(f"{service.lower()} retry budget must be a percentage in (0, 100], "
                             f"got {policy.breakers.budget_percent}")
        if bool(self.tls_cert) != bool(self.tls_key):
            found.append("EDGEWISE_EDGE_TLS_CERT and EDGEWISE_EDGE_TLS_KEY go together: set both or neither")
        for name, path in (("EDGEWISE_EDGE_TLS_CERT", self.tls_cert), ("EDGEWISE_EDGE_TLS_KEY", self.tls_key)):
            if path and not os.path.isfile(path):
                found.append(f"{name}: no such file {path!r}")
        if self.access_log and not os.path.isdir(os.path.dirname(os.path.abspath(self.access_log))):
            found.append(f"EDGEWISE_EDGE_ACCESS_LOG: the directory of {self.access_log!r} does not exist")
        if self.log_level not in ENVOY_LOG_LEVELS:
            found.append(f"EDGEWISE_EDGE_LOG_LEVEL must be one of {', '.join(ENVOY_LOG_LEVELS)}, got {self.log_level!r}")
        if self.concurrency < 0:
            found.append(f"EDGEWISE_EDGE_CONCURRENCY must be >= 0 (0: one per core), got {self.concurrency}")
        if self.local_rate_limit < 0 or (self.local_rate_limit and self.local_rate_limit_burst < 1):
            found.append(f"EDGEWISE_EDGE_LOCAL_RATE_LIMIT must be 0 (off) or '<requests per second>[,<burst>]' "
                         f"with both positive, got {self.local_rate_limit},{self.local_rate_limit_burst}")
        return found

    def check(self) -> "GatewaySettings":
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def with_upstreams(self, command: list[str] | tuple[str, ...], query: list[str] | tuple[str, ...]
                       ) -> "GatewaySettings":
        """A copy in front of other processes (a launcher that chose the ports)."""
        return replace(self, command_addrs=_addresses(*command), query_addrs=_addresses(*query))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "GatewaySettings":
        env = os.environ if env is None else env
        problems: list[str] = []

        def get(key: str) -> str:
            return env.get(key, "").strip()

        def address(key: str, default: str) -> Address:
            try:
                return Address.parse(get(key) or default)
            except ValueError as exc:
                problems.append(f"{key} {exc}")
                return Address.parse(default)

        def address_list(key: str, fallback_key: str, default: str) -> tuple[Address, ...]:
            used, text = (key, get(key)) if get(key) else (fallback_key, get(fallback_key) or default)
            found: list[Address] = []
            bad = False
            for part in text.split(","):
                try:
                    found.append(Address.parse(part))
                except ValueError as exc:
                    problems.append(f"{used} {exc}")
                    bad = True
            return _addresses(default) if bad else tuple(found)  # one message per mistake

        def millis(key: str, default: int) -> int:
            text = get(key)
            if not text:
                return default
            if not text.isdigit():
                problems.append(f"{key} must be a whole number of milliseconds, got {text!r}")
                return default
            return int(text)

        def policy(service: str, base: ServicePolicy) -> ServicePolicy:
            prefix = f"EDGEWISE_EDGE_{service}"
            return replace(base, default_timeout_ms=millis(f"{prefix}_TIMEOUT_MS", base.default_timeout_ms),
                           max_timeout_ms=millis(f"{prefix}_MAX_TIMEOUT_MS", base.max_timeout_ms),
                           per_try_timeout_ms=millis(f"{prefix}_PER_TRY_TIMEOUT_MS", base.per_try_timeout_ms))

        concurrency_text = get("EDGEWISE_EDGE_CONCURRENCY") or "0"
        if not concurrency_text.isdigit():
            problems.append(f"EDGEWISE_EDGE_CONCURRENCY must be a whole number (0: one per core), "
                            f"got {concurrency_text!r}")
        limit_text = get("EDGEWISE_EDGE_LOCAL_RATE_LIMIT") or "0"
        rate_text, _, burst_text = limit_text.partition(",")
        rate_text, burst_text = rate_text.strip(), burst_text.strip() or rate_text.strip()
        if not (rate_text.isdigit() and burst_text.isdigit()):
            problems.append(f"EDGEWISE_EDGE_LOCAL_RATE_LIMIT must be 0 (off) or '<requests per second>[,<burst>]' "
                            f"in whole numbers, got {limit_text!r}")
            rate_text = burst_text = "0"
        settings = cls(
            local_rate_limit=int(rate_text),
            local_rate_limit_burst=int(burst_text),
            grpc_addr=address("EDGEWISE_EDGE_GRPC_ADDR", DEFAULT_GRPC_ADDR),
            rest_addr=address("EDGEWISE_EDGE_REST_ADDR", DEFAULT_REST_ADDR),
            admin_addr=address("EDGEWISE_EDGE_ADMIN_ADDR", DEFAULT_ADMIN_ADDR),
            command_addrs=address_list("EDGEWISE_COMMAND_ADDRS", "EDGEWISE_COMMAND_ADDR", DEFAULT_COMMAND_ADDR),
            query_addrs=address_list("EDGEWISE_QUERY_ADDRS", "EDGEWISE_QUERY_ADDR", DEFAULT_QUERY_ADDR),
            command=policy("COMMAND", default_command_policy()),
            query=policy("QUERY", default_query_policy()),
            tls_cert=get("EDGEWISE_EDGE_TLS_CERT"),
            tls_key=get("EDGEWISE_EDGE_TLS_KEY"),
            access_log=get("EDGEWISE_EDGE_ACCESS_LOG"),
            log_level=(get("EDGEWISE_EDGE_LOG_LEVEL") or "warning").lower(),
            concurrency=int(concurrency_text) if concurrency_text.isdigit() else 0,
            descriptor_set=get("EDGEWISE_EDGE_DESCRIPTOR_SET") or str(DEFAULT_DESCRIPTOR_SET),
        )
        problems.extend(settings.problems())
        if problems:
            raise ConfigError(problems)
        return settings
