"""Settings from the environment, validated once at start-up.

A missing or malformed required setting raises ConfigError naming every problem;
nothing falls back silently (EXAMPLES "not to copy").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_COMMAND_ADDR = "127.0.0.1:50051"
DEFAULT_QUERY_ADDR = "127.0.0.1:50052"
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_READ_CACHE_MB = 1024
DEFAULT_CYCLE_CHECK_MAX_NODES = 100_000
MAX_READ_CACHE_MB = 1 << 20  # 1 TiB: a typo guard, not a sizing hint
MIN_TOKEN_SECRET_BYTES = 16
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(Exception):
    """The configuration cannot run; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))
        self.problems = list(problems)


# The storage engine: one SQLite file (embedded, the default) or DynamoDB (DESIGN §5).
STORES = ("sqlite", "dynamodb")
DEFAULT_STORE = "sqlite"
DEFAULT_DYNAMODB_REGION = "us-east-1"
DEFAULT_DYNAMODB_TABLE_PREFIX = "edgewise-"
# A typo guard, not a list of regions: "us-east-1", "eu-west-3", "us-gov-west-1", "cn-north-1".
_REGION_PATTERN = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,4}")
# DynamoDB table names are 3-255 of [A-Za-z0-9_.-]; the longest suffix is "write".
_TABLE_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.-]{0,250}")


@dataclass(frozen=True)
class DynamoDBSettings:
    """Where the DynamoDB tables are (used when ``store == "dynamodb"``).

    ``endpoint`` empty = the AWS default endpoint of ``region``; credentials always come
    from the AWS default chain (environment, shared files, instance/task role), never
    from Edgewise settings."""

    endpoint: str = ""
    region: str = DEFAULT_DYNAMODB_REGION
    table_prefix: str = DEFAULT_DYNAMODB_TABLE_PREFIX

    def describe_endpoint(self) -> str:
        """For messages: the endpoint URL, or the AWS default endpoint and region."""
        return self.endpoint or f"the AWS default endpoint of {self.region}"

    @classmethod
    def parse(cls, endpoint: str, region: str, table_prefix: str, *,
              names: tuple[str, str, str] = ("EDGEWISE_DYNAMODB_ENDPOINT", "EDGEWISE_DYNAMODB_REGION",
                                             "EDGEWISE_DYNAMODB_TABLE_PREFIX")) -> tuple["DynamoDBSettings", list[str]]:
        """Validate the three values; returns the settings and every problem found
        (``names`` are the setting names the problems mention, e.g. CLI flags)."""
        problems: list[str] = []
        if endpoint:
            parts = urlsplit(endpoint)
            try:
                port_ok = parts.port is None or 0 < parts.port <= 65535
            except ValueError:
                port_ok = False
            if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
                    or parts.path not in ("", "/") or parts.query or parts.fragment:
                problems.append(f"{names[0]} must be empty (the AWS default endpoint) or an http(s)://host[:port] "
                                f"URL, got {endpoint!r}")
        if not _REGION_PATTERN.fullmatch(region):
            problems.append(f"{names[1]} must be an AWS region name such as {DEFAULT_DYNAMODB_REGION}, "
                            f"got {region!r}")
        if not _TABLE_PREFIX_PATTERN.fullmatch(table_prefix):
            problems.append(f"{names[2]} must be at most 250 characters of A-Z a-z 0-9 _ . - "
                            f"(DynamoDB table names), got {table_prefix!r}")
        return cls(endpoint=endpoint.rstrip("/"), region=region, table_prefix=table_prefix), problems


# batched: DataLoader-coalesced reads; naive: the legacy one-read-per-node path;
# shadow: run both, answer with batched, count mismatches (the rollback switch).
TRAVERSE_ENGINES = ("batched", "naive", "shadow")


@dataclass(frozen=True)
class Settings:
    db_path: str
    token_secret: bytes
    command_addr: str = DEFAULT_COMMAND_ADDR
    query_addr: str = DEFAULT_QUERY_ADDR
    log_level: str = DEFAULT_LOG_LEVEL
    projector_enabled: bool = True
    projector_poll_interval_ms: int = 50
    traverse_engine: str = "batched"
    # the query service's process-wide read cache (query_service.cache); 0 disables it
    read_cache_mb: int = DEFAULT_READ_CACHE_MB
    # Prometheus /metrics on 127.0.0.1:<port> beside the gRPC port; 0 = off. One port per
    # process: a launcher running several processes gives each its own.
    metrics_port: int = 0
    # the most nodes one acyclicity check may visit; past it the edge is refused
    # (FAILED_PRECONDITION, CYCLE_CHECK_TOO_LARGE) rather than checked without a bound
    cycle_check_max_nodes: int = DEFAULT_CYCLE_CHECK_MAX_NODES
    # EDGEWISE_STORE: "sqlite" (EDGEWISE_DB_PATH) or "dynamodb" (the tables ``dynamodb`` names)
    store: str = DEFAULT_STORE
    dynamodb: DynamoDBSettings = field(default_factory=DynamoDBSettings)

    def __repr__(self) -> str:  # never print the secret
        return (f"Settings(db_path={self.db_path!r}, command_addr={self.command_addr!r}, "
                f"query_addr={self.query_addr!r}, log_level={self.log_level!r}, "
                f"projector_enabled={self.projector_enabled!r}, "
                f"projector_poll_interval_ms={self.projector_poll_interval_ms!r}, "
                f"traverse_engine={self.traverse_engine!r}, "
                f"read_cache_mb={self.read_cache_mb!r}, metrics_port={self.metrics_port!r}, "
                f"cycle_check_max_nodes={self.cycle_check_max_nodes!r}, "
                f"store={self.store!r}, dynamodb={self.dynamodb!r}, "
                f"token_secret=<{len(self.token_secret)} bytes>)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        problems: list[str] = []

        def get(key: str) -> str:
            return env.get(key, "").strip()

        store = (get("EDGEWISE_STORE") or DEFAULT_STORE).lower()
        if store not in STORES:
            problems.append(f"EDGEWISE_STORE must be one of {', '.join(STORES)}, got {store!r}")
        dynamodb, dynamodb_problems = DynamoDBSettings.parse(
            get("EDGEWISE_DYNAMODB_ENDPOINT"), get("EDGEWISE_DYNAMODB_REGION") or DEFAULT_DYNAMODB_REGION,
            get("EDGEWISE_DYNAMODB_TABLE_PREFIX") or DEFAULT_DYNAMODB_TABLE_PREFIX)
        problems.extend(dynamodb_problems)

        db_path = get("EDGEWISE_DB_PATH")
        # DynamoDB keeps every table in DynamoDB: no data file
        if not db_path and store != "dynamodb":
            problems.append("EDGEWISE_DB_PATH is required (the SQLite data file, "
                            "e.g. ./var/edgewise.db)")
        secret = env.get("EDGEWISE_TOKEN_SECRET", "")
        if not secret:
            problems.append("EDGEWISE_TOKEN_SECRET is required (HMAC key for page and "
                            "consistency tokens)")
        elif len(secret.encode("utf-8")) < MIN_TOKEN_SECRET_BYTES:
            problems.append(f"EDGEWISE_TOKEN_SECRET must be at least "
                            f"{MIN_TOKEN_SECRET_BYTES} bytes")

        addrs = {}
        for key, default in (("EDGEWISE_COMMAND_ADDR", DEFAULT_COMMAND_ADDR),
                             ("EDGEWISE_QUERY_ADDR", DEFAULT_QUERY_ADDR)):
            value = get(key) or default
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                problems.append(f"{key} must be host:port, got {value!r}")
            addrs[key] = value

        log_level = (get("EDGEWISE_LOG_LEVEL") or DEFAULT_LOG_LEVEL).upper()
        if log_level not in _LOG_LEVELS:
            problems.append(f"EDGEWISE_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, "
                            f"got {log_level!r}")

        enabled_text = (get("EDGEWISE_PROJECTOR_ENABLED") or "true").lower()
        if enabled_text not in _TRUE + _FALSE:
            problems.append(f"EDGEWISE_PROJECTOR_ENABLED must be true or false, "
                            f"got {enabled_text!r}")
        interval_text = get("EDGEWISE_PROJECTOR_POLL_INTERVAL_MS") or "50"
        interval = int(interval_text) if interval_text.isdigit() else 0
        if interval <= 0:
            problems.append(f"EDGEWISE_PROJECTOR_POLL_INTERVAL_MS must be a positive "
                            f"integer, got {interval_text!r}")

        engine = (get("EDGEWISE_TRAVERSE_ENGINE") or "batched").lower()
        if engine not in TRAVERSE_ENGINES:
            problems.append(f"EDGEWISE_TRAVERSE_ENGINE must be one of {', '.join(TRAVERSE_ENGINES)}, "
                            f"got {engine!r}")

        cache_text = get("EDGEWISE_READ_CACHE_MB") or str(DEFAULT_READ_CACHE_MB)
        cache_mb = int(cache_text) if cache_text.isdigit() else -1
        if not 0 <= cache_mb <= MAX_READ_CACHE_MB:
            problems.append(f"EDGEWISE_READ_CACHE_MB must be an integer from 0 (off) to {MAX_READ_CACHE_MB}, "
                            f"got {cache_text!r}")

        metrics_text = get("EDGEWISE_METRICS_PORT") or "0"
        metrics_port = int(metrics_text) if metrics_text.isdigit() else -1
        if not 0 <= metrics_port <= 65535:
            problems.append(f"EDGEWISE_METRICS_PORT must be a port number (0 = off), got {metrics_text!r}")

        cycle_text = get("EDGEWISE_CYCLE_CHECK_MAX_NODES") or str(DEFAULT_CYCLE_CHECK_MAX_NODES)
        cycle_max = int(cycle_text) if cycle_text.isdigit() else 0
        if cycle_max <= 0:
            problems.append(f"EDGEWISE_CYCLE_CHECK_MAX_NODES must be a positive integer, got {cycle_text!r}")

        if problems:
            raise ConfigError(problems)
        return cls(
            db_path=db_path,
            token_secret=secret.encode("utf-8"),
            command_addr=addrs["EDGEWISE_COMMAND_ADDR"],
            query_addr=addrs["EDGEWISE_QUERY_ADDR"],
            log_level=log_level,
            projector_enabled=enabled_text in _TRUE,
            projector_poll_interval_ms=interval,
            traverse_engine=engine,
            read_cache_mb=cache_mb,
            metrics_port=metrics_port,
            cycle_check_max_nodes=cycle_max,
            store=store,
            dynamodb=dynamodb,
        )
