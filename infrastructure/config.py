"""Settings from the environment, validated once at start-up.

A missing or malformed required setting raises ConfigError naming every problem;
nothing falls back silently (EXAMPLES "not to copy").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# The data file `make run` uses (relative to the repository root, where everything runs from):
# the CLI's default too. The services themselves have no default (EDGEWISE_DB_PATH is required).
DEV_DB_PATH = "./var/edgewise.db"
DEFAULT_COMMAND_ADDR = "127.0.0.1:50051"
DEFAULT_QUERY_ADDR = "127.0.0.1:50052"
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_READ_CACHE_MB = 1024
DEFAULT_CYCLE_CHECK_MAX_NODES = 100_000
MAX_QUERY_WORKERS = 256  # a typo guard: each worker is a process with its own read cache
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


# Authentication (infrastructure/security): "jwt" verifies a bearer token on every call (the
# default; it needs at least one key); "dev" lets every caller in as the principal "dev" with
# every scope on every graph, for `make run` and tests only.
AUTH_MODES = ("jwt", "dev")
DEFAULT_AUTH_MODE = "jwt"
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")
DEFAULT_JWT_ISSUER = "edgewise"
DEFAULT_JWT_AUDIENCE = "edgewise"
DEFAULT_JWT_LEEWAY_SECONDS = 30
MAX_JWT_LEEWAY_SECONDS = 300
MIN_HS256_SECRET_BYTES = 32  # RFC 7518 §3.2: a key at least as long as the hash
_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _key_list(text: str, name: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """``kid=value[,kid=value]`` as pairs; a bad entry is a problem naming the key id only."""
    pairs: list[tuple[str, str]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        kid, sep, value = entry.partition("=")
        kid = kid.strip()
        if not sep or not _KEY_ID_PATTERN.fullmatch(kid) or not value:
            problems.append(f"{name} must be a comma-separated list of key-id=value "
                            f"(key ids of A-Z a-z 0-9 . _ -), got an entry starting {kid[:16]!r}")
            continue
        if kid in {k for k, _ in pairs}:
            problems.append(f"{name} names key id {kid!r} twice")
            continue
        pairs.append((kid, value))
    return tuple(pairs)


@dataclass(frozen=True)
class AuthSettings:
    """How callers are authenticated. Secrets never appear in ``repr``."""

    mode: str = DEFAULT_AUTH_MODE
    # HS256 secrets and PEM public key files (RS256 for RSA keys, ES256 for P-256 keys), by key id
    hs256_secrets: tuple[tuple[str, str], ...] = ()
    public_key_files: tuple[tuple[str, str], ...] = ()
    jwks_file: str = ""
    algorithms: tuple[str, ...] = JWT_ALGORITHMS
    issuer: str = DEFAULT_JWT_ISSUER
    audience: str = DEFAULT_JWT_AUDIENCE
    leeway_seconds: int = DEFAULT_JWT_LEEWAY_SECONDS

    @property
    def dev(self) -> bool:
        return self.mode == "dev"

    def __repr__(self) -> str:
        return (f"AuthSettings(mode={self.mode!r}, hs256_key_ids={[k for k, _ in self.hs256_secrets]!r}, "
                f"public_key_files={self.public_key_files!r}, jwks_file={self.jwks_file!r}, "
                f"algorithms={self.algorithms!r}, issuer={self.issuer!r}, audience={self.audience!r}, "
                f"leeway_seconds={self.leeway_seconds!r})")

    @classmethod
    def from_env(cls, get: Callable[[str], str], problems: list[str]) -> "AuthSettings":
        mode = (get("EDGEWISE_AUTH_MODE") or DEFAULT_AUTH_MODE).lower()
        if mode not in AUTH_MODES:
            problems.append(f"EDGEWISE_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, got {mode!r}")
        secrets = _key_list(get("EDGEWISE_JWT_HS256_SECRETS"), "EDGEWISE_JWT_HS256_SECRETS", problems)
        for kid, secret in secrets:
            if len(secret.encode("utf-8")) < MIN_HS256_SECRET_BYTES:
                problems.append(f"EDGEWISE_JWT_HS256_SECRETS: the secret of key id {kid!r} must be at least "
                                f"{MIN_HS256_SECRET_BYTES} bytes")
        public = _key_list(get("EDGEWISE_JWT_PUBLIC_KEYS"), "EDGEWISE_JWT_PUBLIC_KEYS", problems)
        for kid, path in public:
            if not os.path.isfile(path):
                problems.append(f"EDGEWISE_JWT_PUBLIC_KEYS: the file of key id {kid!r} ({path}) does not exist")
        jwks = get("EDGEWISE_JWT_JWKS_FILE")
        if jwks and not os.path.isfile(jwks):
            problems.append(f"EDGEWISE_JWT_JWKS_FILE {jwks!r} does not exist")
        overlap = {k for k, _ in secrets} & {k for k, _ in public}
        if overlap:
            problems.append(f"key id {sorted(overlap)[0]!r} is both an HS256 secret and a public key")
        algorithms_text = get("EDGEWISE_JWT_ALGORITHMS") or ",".join(JWT_ALGORITHMS)
        algorithms = tuple(a.strip() for a in algorithms_text.split(",") if a.strip())
        bad = [a for a in algorithms if a not in JWT_ALGORITHMS]
        if bad or not algorithms:
            problems.append(f"EDGEWISE_JWT_ALGORITHMS must list some of {', '.join(JWT_ALGORITHMS)}, "
                            f"got {algorithms_text!r}")
        leeway_text = get("EDGEWISE_JWT_LEEWAY_SECONDS") or str(DEFAULT_JWT_LEEWAY_SECONDS)
        leeway = int(leeway_text) if leeway_text.isdigit() else -1
        if not 0 <= leeway <= MAX_JWT_LEEWAY_SECONDS:
            problems.append(f"EDGEWISE_JWT_LEEWAY_SECONDS must be an integer from 0 to {MAX_JWT_LEEWAY_SECONDS} "
                            f"(the clock skew tolerated on exp and nbf), got {leeway_text!r}")
        issuer = get("EDGEWISE_JWT_ISSUER") or DEFAULT_JWT_ISSUER
        audience = get("EDGEWISE_JWT_AUDIENCE") or DEFAULT_JWT_AUDIENCE
        if mode == "jwt" and not (secrets or public or jwks):
            problems.append("EDGEWISE_AUTH_MODE=jwt (the default) needs a key to verify tokens with: "
                            "EDGEWISE_JWT_HS256_SECRETS, EDGEWISE_JWT_PUBLIC_KEYS or EDGEWISE_JWT_JWKS_FILE; "
                            "for a local run without tokens set EDGEWISE_AUTH_MODE=dev (make run does)")
        return cls(mode=mode, hs256_secrets=secrets, public_key_files=public, jwks_file=jwks,
                   algorithms=algorithms, issuer=issuer, audience=audience, leeway_seconds=leeway)


# Rate limiting (infrastructure/grpc/ratelimit.py): a token bucket per (principal, graph) and
# method class; (rate per second, burst). A rate of 0 turns the class's limit off.
RATE_CLASSES = ("reads", "writes", "schema")
DEFAULT_RATE_LIMITS = {"reads": (2000.0, 4000), "writes": (500.0, 1000), "schema": (10.0, 20)}
DEFAULT_RATE_LIMIT_MAX_BUCKETS = 10_000
# a principal's calls over all its graphs together: this many times one graph's rate and burst
DEFAULT_RATE_LIMIT_PRINCIPAL_FACTOR = 10
MAX_RATE_LIMIT_PRINCIPAL_FACTOR = 1_000_000


@dataclass(frozen=True)
class RateLimitSettings:
    reads: tuple[float, int] = DEFAULT_RATE_LIMITS["reads"]
    writes: tuple[float, int] = DEFAULT_RATE_LIMITS["writes"]
    schema: tuple[float, int] = DEFAULT_RATE_LIMITS["schema"]
    max_buckets: int = DEFAULT_RATE_LIMIT_MAX_BUCKETS
    principal_factor: int = DEFAULT_RATE_LIMIT_PRINCIPAL_FACTOR

    def limit(self, method_class: str) -> tuple[float, int]:
        return {"reads": self.reads, "writes": self.writes, "schema": self.schema}[method_class]

    @classmethod
    def from_env(cls, get: Callable[[str], str], problems: list[str]) -> "RateLimitSettings":
        limits: dict[str, tuple[float, int]] = {}
        for name in RATE_CLASSES:
            key = f"EDGEWISE_RATE_LIMIT_{name.upper()}"
            rate, burst = DEFAULT_RATE_LIMITS[name]
            text = get(key)
            if text:
                rate_text, _, burst_text = text.partition(",")
                try:
                    rate = float(rate_text)
                    burst = int(burst_text) if burst_text.strip() else max(1, int(rate))
                    ok = rate >= 0 and burst >= 1 and rate == rate and rate != float("inf")
                except ValueError:
                    ok = False
                if not ok:
                    problems.append(f"{key} must be '<calls per second>[,<burst>]' (0 = no limit), got {text!r}")
            limits[name] = (rate, burst)
        buckets_text = get("EDGEWISE_RATE_LIMIT_MAX_BUCKETS") or str(DEFAULT_RATE_LIMIT_MAX_BUCKETS)
        buckets = int(buckets_text) if buckets_text.isdigit() else 0
        if buckets <= 0:
            problems.append(f"EDGEWISE_RATE_LIMIT_MAX_BUCKETS must be a positive integer, got {buckets_text!r}")
        factor_text = get("EDGEWISE_RATE_LIMIT_PRINCIPAL_FACTOR") or str(DEFAULT_RATE_LIMIT_PRINCIPAL_FACTOR)
        factor = int(factor_text) if factor_text.isdigit() else -1
        if not 0 <= factor <= MAX_RATE_LIMIT_PRINCIPAL_FACTOR:
            problems.append(f"EDGEWISE_RATE_LIMIT_PRINCIPAL_FACTOR must be a whole number from 0 (no cap) to "
                            f"{MAX_RATE_LIMIT_PRINCIPAL_FACTOR}, got {factor_text!r}")
        return cls(reads=limits["reads"], writes=limits["writes"], schema=limits["schema"], max_buckets=buckets,
                   principal_factor=max(0, factor))


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
    # Prometheus /metrics on 127.0.0.1:<port> beside the gRPC port (both services); 0 = off. One
    # port per process: a launcher running several processes gives each its own.
    metrics_port: int = 0
    # the most nodes one acyclicity check may visit; past it the edge is refused
    # (FAILED_PRECONDITION, CYCLE_CHECK_TOO_LARGE) rather than checked without a bound
    cycle_check_max_nodes: int = DEFAULT_CYCLE_CHECK_MAX_NODES
    # EDGEWISE_STORE: "sqlite" (EDGEWISE_DB_PATH) or "dynamodb" (the tables ``dynamodb`` names)
    store: str = DEFAULT_STORE
    dynamodb: DynamoDBSettings = field(default_factory=DynamoDBSettings)
    # The launcher's (scripts/run_stack.py) number of query worker processes, and every query
    # worker's address (EDGEWISE_QUERY_ADDRS; default: this process's query_addr only). A
    # process uses the list to say where GraphQueryService is served (SERVICE_NOT_SERVED_HERE).
    query_workers: int = 1
    query_addrs: tuple[str, ...] = ()
    auth: AuthSettings = field(default_factory=AuthSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    # graph names that may appear as a metrics label value (graph ids are unbounded otherwise)
    metrics_graphs: tuple[str, ...] = ()

    def query_addresses(self) -> tuple[str, ...]:
        """Every address GraphQueryService is served at: ``query_addrs``, else ``query_addr``."""
        return self.query_addrs or (self.query_addr,)

    def describe_store(self) -> dict[str, str]:
        """For start-up logs and the launcher: where the data is (never a secret)."""
        if self.store == "dynamodb":
            prefix = self.dynamodb.table_prefix
            return {"store": "dynamodb", "dynamodb_endpoint": self.dynamodb.describe_endpoint(),
                    "dynamodb_region": self.dynamodb.region,
                    "dynamodb_tables": f"{prefix}write, {prefix}log, {prefix}read"}
        return {"store": "sqlite", "db_path": os.path.abspath(self.db_path)}

    def __repr__(self) -> str:  # never print the secret
        return (f"Settings(db_path={self.db_path!r}, command_addr={self.command_addr!r}, "
                f"query_addr={self.query_addr!r}, log_level={self.log_level!r}, "
                f"projector_enabled={self.projector_enabled!r}, "
                f"projector_poll_interval_ms={self.projector_poll_interval_ms!r}, "
                f"traverse_engine={self.traverse_engine!r}, "
                f"read_cache_mb={self.read_cache_mb!r}, metrics_port={self.metrics_port!r}, "
                f"cycle_check_max_nodes={self.cycle_check_max_nodes!r}, "
                f"store={self.store!r}, dynamodb={self.dynamodb!r}, "
                f"query_workers={self.query_workers!r}, query_addrs={self.query_addrs!r}, "
                f"auth={self.auth!r}, rate_limits={self.rate_limits!r}, metrics_graphs={self.metrics_graphs!r}, "
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
        elif db_path and store != "dynamodb":
            problems.extend(_db_path_problems(db_path))
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
            if split_address(value) is None:
                problems.append(f"{key} must be host:port, got {value!r}")
            addrs[key] = value

        workers_text = get("EDGEWISE_QUERY_WORKERS")
        workers = int(workers_text) if workers_text.isdigit() else (default_query_workers() if not workers_text else 0)
        if not 1 <= workers <= MAX_QUERY_WORKERS:
            problems.append(f"EDGEWISE_QUERY_WORKERS must be an integer from 1 to {MAX_QUERY_WORKERS}, "
                            f"got {workers_text!r}")
        query_addrs = tuple(a.strip() for a in get("EDGEWISE_QUERY_ADDRS").split(",") if a.strip())
        bad = [a for a in query_addrs if split_address(a) is None]
        if bad:
            problems.append(f"EDGEWISE_QUERY_ADDRS must be a comma-separated list of host:port, got {bad[0]!r}")
        elif len(set(query_addrs)) != len(query_addrs):
            problems.append(f"EDGEWISE_QUERY_ADDRS lists an address twice: {','.join(query_addrs)!r}")
        elif query_addrs and workers_text and workers != len(query_addrs):
            problems.append(f"EDGEWISE_QUERY_WORKERS ({workers_text}) and EDGEWISE_QUERY_ADDRS "
                            f"({len(query_addrs)} addresses) disagree: set one of them")
        if query_addrs and not workers_text:
            workers = len(query_addrs)

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

        auth = AuthSettings.from_env(get, problems)
        rate_limits = RateLimitSettings.from_env(get, problems)
        metrics_graphs = tuple(g.strip() for g in get("EDGEWISE_METRICS_GRAPHS").split(",") if g.strip())

        if problems:
            raise ConfigError(problems)
        return cls(
            auth=auth,
            rate_limits=rate_limits,
            metrics_graphs=metrics_graphs,
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
            query_workers=workers,
            query_addrs=query_addrs,
        )


def default_query_workers() -> int:
    """EDGEWISE_QUERY_WORKERS' default: one query worker per core."""
    return max(1, os.cpu_count() or 1)


def split_address(address: str) -> tuple[str, int] | None:
    """``host:port`` (``[::1]:port`` too) as (host, port); None when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)


def worker_addresses(base: str, workers: int) -> tuple[str, ...]:
    """The query workers' addresses the launcher derives: ``base``'s port, then +1, +2 ...
    Raises ValueError when they do not fit (port 0 with several workers, past 65535)."""
    parts = split_address(base)
    if parts is None:
        raise ValueError(f"EDGEWISE_QUERY_ADDR must be host:port, got {base!r}")
    host, port = parts
    if workers > 1 and port == 0:
        raise ValueError(f"EDGEWISE_QUERY_ADDR {base!r}: {workers} query workers need a fixed base port "
                         f"(worker i listens on port + i), or set EDGEWISE_QUERY_ADDRS")
    if port + workers - 1 > 65535:
        raise ValueError(f"EDGEWISE_QUERY_ADDR {base!r}: {workers} query workers need ports up to "
                         f"{port + workers - 1}, past 65535")
    return tuple(f"{host}:{port + i}" for i in range(workers))


def _db_path_problems(db_path: str) -> list[str]:
    """The SQLite file may be created, its directory never: a typo in the path must not start
    an empty store somewhere else."""
    path = os.path.abspath(db_path)
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        return [f"EDGEWISE_DB_PATH must name a file, {db_path!r} is a directory"]
    if not os.path.isdir(parent):
        return [f"EDGEWISE_DB_PATH {db_path!r}: its directory {parent} does not exist (create it first; "
                f"Edgewise never creates directories, so a mistyped path cannot start an empty store)"]
    return []


@dataclass(frozen=True)
class SettingDoc:
    """One environment variable, for ``--help`` (the README's table says the same)."""

    name: str
    default: str
    used_by: tuple[str, ...]  # "command", "query", "launcher" (scripts/run_stack.py)
    meaning: str


_BOTH = ("command", "query", "launcher")
SETTINGS_DOC: tuple[SettingDoc, ...] = (
    SettingDoc("EDGEWISE_STORE", DEFAULT_STORE, _BOTH, "storage engine: sqlite or dynamodb"),
    SettingDoc("EDGEWISE_DB_PATH", "(required with sqlite; make run: ./var/edgewise.db)", _BOTH,
               "the SQLite data file; its directory must exist"),
    SettingDoc("EDGEWISE_TOKEN_SECRET", "(required; make run: a dev-only value)", _BOTH,
               f"HMAC key (>= {MIN_TOKEN_SECRET_BYTES} bytes) signing page and consistency tokens"),
    SettingDoc("EDGEWISE_COMMAND_ADDR", DEFAULT_COMMAND_ADDR, _BOTH, "the command service's listen address"),
    SettingDoc("EDGEWISE_QUERY_ADDR", DEFAULT_QUERY_ADDR, _BOTH,
               "the query service's listen address (make run: the first query worker's; worker i uses port + i)"),
    SettingDoc("EDGEWISE_QUERY_WORKERS", "the number of cores", ("launcher",),
               f"make run: how many query worker processes to start (1 to {MAX_QUERY_WORKERS})"),
    SettingDoc("EDGEWISE_RUN_DIR", "./var", ("launcher",),
               "make run: where run_stack.lock (one stack at a time; its pids and endpoints) is kept"),
    SettingDoc("EDGEWISE_START_TIMEOUT", "60", ("launcher",),
               "make run: seconds to wait for every process to answer gRPC health"),
    SettingDoc("EDGEWISE_QUERY_ADDRS", "(make run sets it) EDGEWISE_QUERY_ADDR", _BOTH,
               "every query worker's address, comma-separated; make run: the workers' ports"),
    SettingDoc("EDGEWISE_LOG_LEVEL", DEFAULT_LOG_LEVEL, _BOTH, "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    SettingDoc("EDGEWISE_PROJECTOR_ENABLED", "true", ("query", "launcher"),
               "run the read-model projector (one process per shard projects: a file lock on SQLite, "
               "a lease on DynamoDB); false: only follow another process's projection"),
    SettingDoc("EDGEWISE_PROJECTOR_POLL_INTERVAL_MS", "50", ("query", "launcher"),
               "projector poll interval, also how often a worker tries to take the projection over"),
    SettingDoc("EDGEWISE_TRAVERSE_ENGINE", "batched", ("query", "launcher"),
               f"{', '.join(TRAVERSE_ENGINES)}"),
    SettingDoc("EDGEWISE_READ_CACHE_MB", str(DEFAULT_READ_CACHE_MB), ("query", "launcher"),
               "size bound of the process-wide read cache; 0 turns it off"),
    SettingDoc("EDGEWISE_METRICS_PORT", "0 (off)", _BOTH,
               "Prometheus /metrics on 127.0.0.1:<port> (RPC counts, latency, in-flight, rate-limited and refused "
               "calls; query: read cache, projection position and lag); make run: the command service uses "
               "port, query worker i port + 1 + i"),
    SettingDoc("EDGEWISE_CYCLE_CHECK_MAX_NODES", str(DEFAULT_CYCLE_CHECK_MAX_NODES), ("command", "launcher"),
               "the most nodes one acyclicity check may visit"),
    SettingDoc("EDGEWISE_AUTH_MODE", DEFAULT_AUTH_MODE + " (make run: dev)", _BOTH,
               "jwt: every call needs 'authorization: Bearer <JWT>'; dev: no authentication, every caller is "
               "principal 'dev' with every scope on every graph (loud at start-up; never expose it)"),
    SettingDoc("EDGEWISE_JWT_HS256_SECRETS", "(none)", _BOTH,
               f"HS256 verification secrets as key-id=secret[,key-id=secret] (>= {MIN_HS256_SECRET_BYTES} bytes each)"),
    SettingDoc("EDGEWISE_JWT_PUBLIC_KEYS", "(none)", _BOTH,
               "PEM public keys as key-id=/path/key.pem[,...]: RSA keys verify RS256, P-256 keys ES256"),
    SettingDoc("EDGEWISE_JWT_JWKS_FILE", "(none)", _BOTH,
               "a JWKS file of public keys (kid, alg); re-read when it changes, so keys can rotate"),
    SettingDoc("EDGEWISE_JWT_ALGORITHMS", ",".join(JWT_ALGORITHMS), _BOTH,
               "the algorithms a token may use (never taken from the token itself)"),
    SettingDoc("EDGEWISE_JWT_ISSUER", DEFAULT_JWT_ISSUER, _BOTH, "the required 'iss' claim"),
    SettingDoc("EDGEWISE_JWT_AUDIENCE", DEFAULT_JWT_AUDIENCE, _BOTH, "the required 'aud' claim"),
    SettingDoc("EDGEWISE_JWT_LEEWAY_SECONDS", str(DEFAULT_JWT_LEEWAY_SECONDS), _BOTH,
               f"clock skew tolerated on 'exp' and 'nbf' (0 to {MAX_JWT_LEEWAY_SECONDS})"),
    SettingDoc("EDGEWISE_RATE_LIMIT_READS", "%g,%d" % DEFAULT_RATE_LIMITS["reads"], _BOTH,
               "queries per second and burst per (principal, graph) and process; 0 = no limit"),
    SettingDoc("EDGEWISE_RATE_LIMIT_WRITES", "%g,%d" % DEFAULT_RATE_LIMITS["writes"], _BOTH,
               "commands per second and burst per (principal, graph) and process; 0 = no limit"),
    SettingDoc("EDGEWISE_RATE_LIMIT_SCHEMA", "%g,%d" % DEFAULT_RATE_LIMITS["schema"], _BOTH,
               "ApplySchema calls per second and burst per (principal, graph) and process; 0 = no limit"),
    SettingDoc("EDGEWISE_RATE_LIMIT_MAX_BUCKETS", str(DEFAULT_RATE_LIMIT_MAX_BUCKETS), _BOTH,
               "token buckets kept per process (the least recently used go first)"),
    SettingDoc("EDGEWISE_RATE_LIMIT_PRINCIPAL_FACTOR", str(DEFAULT_RATE_LIMIT_PRINCIPAL_FACTOR), _BOTH,
               "a principal's calls over all its graphs together: this many times one graph's rate and burst "
               "(0 = no such cap)"),
    SettingDoc("EDGEWISE_METRICS_GRAPHS", "(none)", _BOTH,
               "graph names allowed as a metrics label value (others are counted, never named)"),
    SettingDoc("EDGEWISE_DYNAMODB_ENDPOINT", "(empty: the AWS endpoint of the region)", _BOTH,
               "DynamoDB endpoint URL (DynamoDB Local, moto)"),
    SettingDoc("EDGEWISE_DYNAMODB_REGION", DEFAULT_DYNAMODB_REGION, _BOTH, "AWS region"),
    SettingDoc("EDGEWISE_DYNAMODB_TABLE_PREFIX", DEFAULT_DYNAMODB_TABLE_PREFIX, _BOTH,
               "tables {prefix}write, {prefix}log, {prefix}read"),
)


def settings_help(program: str, description: str, used_by: str,
                  extra: tuple[SettingDoc, ...] = ()) -> str:
    """``program --help``: what it is, and the settings it reads with their defaults."""
    docs = [d for d in SETTINGS_DOC if used_by in d.used_by] + list(extra)
    width = max(len(d.name) for d in docs)
    lines = [f"usage: {program} [--help]", "", description, "",
             "Settings (environment variables; read once at start-up, a bad one stops the process "
             "naming every problem):", ""]
    for d in docs:
        lines.append(f"  {d.name:<{width}}  default: {d.default}")
        lines.append(f"  {'':<{width}}  {d.meaning}")
    return "\n".join(lines) + "\n"
