"""Run Edgewise in the foreground: the command service, the query workers and Envoy in front
of them (``make run``; ``EDGEWISE_EDGE=off`` leaves Envoy out).

The orchestrator is this script, not the services: each process is a plain
``python -m <service>`` with its own address in its environment, so a query worker here is
exactly what a container or a Kubernetes pod runs, and each worker is its own endpoint (an
Envoy upstream keeps one HTTP/2 connection per endpoint, so one port shared by several
processes would not spread the load). ``plan()`` lists the processes; adding a kind of
process is one ``ProcessSpec`` line there.

- **Query workers**: ``EDGEWISE_QUERY_WORKERS`` (default: the number of cores) processes on
  ``EDGEWISE_QUERY_ADDR``'s port, +1, +2 ... (or exactly ``EDGEWISE_QUERY_ADDRS`` when set);
  every process gets the list as ``EDGEWISE_QUERY_ADDRS``. Exactly one worker projects (the
  holder of ``<db>.projector.lock`` on SQLite, of each shard's lease on DynamoDB); the others
  follow, and take over when it dies. A worker that exits is restarted after a second, unless
  it keeps exiting within seconds of its start; the command service exiting stops everything.
- **Metrics** (``EDGEWISE_METRICS_PORT`` set): every process serves ``/metrics`` on 127.0.0.1,
  the command service on that port and query worker *i* on port + 1 + *i*.
- **The edge**: ``python -m gateway`` (Envoy) on ``EDGEWISE_EDGE_GRPC_ADDR`` (8080, both
  services), ``EDGEWISE_EDGE_REST_ADDR`` (8081, REST/JSON) and its admin (9901, loopback),
  upstreams the command service and every worker; ready when its admin ``/ready`` says LIVE.
- **Start-up**: the settings are checked once here (a bad one: one message, exit 2); the
  lock file ``$EDGEWISE_RUN_DIR/run_stack.lock`` (default ``./var``) and the listen ports must
  be free, else ONE line ("edgewise is already running on ...") and exit 1; then every
  process starts and this waits (at most ``EDGEWISE_START_TIMEOUT`` seconds, 60) for each
  one's gRPC health to be SERVING and prints the endpoints.
- **Stop**: Ctrl-C, SIGTERM or SIGHUP sends SIGTERM to every process group (each child leads
  its own, so the terminal's Ctrl-C reaches only this script and each service drains once),
  SIGKILL after a grace period, and the groups are killed once more so no grandchild
  survives. If this script is killed outright, each child gets SIGTERM from the kernel
  (``PR_SET_PDEATHSIG``, set before the service's interpreter starts).

``EDGEWISE_STORE=dynamodb`` (``make run STORE=dynamodb``) without an
``EDGEWISE_DYNAMODB_ENDPOINT``: a local stand-in is started first — moto's DynamoDB
server on 127.0.0.1, in memory, with dummy credentials — and the tables are created on
it. It is a stand-in for trying Edgewise out, not a database: everything is gone at
Ctrl-C. With an endpoint set (DynamoDB Local, or real DynamoDB with credentials from
the standard AWS chain), nothing is started: create the tables once with
``python -m cli tables create``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from infrastructure.config import (  # noqa: E402
    ConfigError,
    Settings,
    settings_help,
    split_address,
    worker_addresses,
)

if TYPE_CHECKING:
    from scripts.moto_server import MotoServer

EXIT_OK, EXIT_FAILED, EXIT_BAD_CONFIG = 0, 1, 2
GRACE_SECONDS = 15.0  # the services drain within 10 s (command) and 5 s (query)
DEFAULT_START_TIMEOUT = 60.0
RESTART_DELAY = 1.0
QUICK_EXIT_SECONDS = 10.0  # a worker exiting this soon after its start, 3 times in a row, stops everything
MAX_QUICK_EXITS = 3
LOCK_NAME = "run_stack.lock"

# Runs before the service's interpreter: SIGTERM when this script dies, however it dies
# (PR_SET_PDEATHSIG survives execve). Not a preexec_fn: that runs Python between fork and
# exec, unsafe once gRPC's threads exist (health checks, restarts).
_CHILD_SHIM = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)
os.execv(sys.executable, [sys.executable] + sys.argv[2:])
"""


def say(message: str) -> None:
    print(f"edgewise: {message}", file=sys.stderr, flush=True)


def grpc_health(address: str) -> bool:
    """One grpc.health.v1 Check of "" at ``address``: SERVING or not (yet)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class ProcessSpec:
    """One process of the stack: ``python -m module`` with ``env`` over the shared environment."""

    name: str  # for messages: "command", "query-0", ...
    module: str
    address: str  # its main listen address: checked free before start, printed
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = False  # restarted when it exits (query workers); otherwise its exit stops everything
    ports: tuple[str, ...] = ()  # other addresses it listens on (metrics, admin): checked free too
    ready: Callable[[str], bool] = grpc_health  # called with ``address`` until True
    label: str = ""  # the endpoint line: "gRPC 127.0.0.1:50051 (GraphCommandService)"


def query_worker_addresses(settings: Settings, env: Mapping[str, str]) -> tuple[str, ...]:
    if env.get("EDGEWISE_QUERY_ADDRS", "").strip():
        return settings.query_addrs
    return worker_addresses(settings.query_addr, settings.query_workers)


def plan(settings: Settings, env: Mapping[str, str]) -> tuple[list[ProcessSpec], dict[str, str]]:
    """The processes to run, and the environment they all share on top of this one's."""
    queries = query_worker_addresses(settings, env)
    shared = {"EDGEWISE_QUERY_ADDRS": ",".join(queries), "EDGEWISE_QUERY_WORKERS": str(len(queries))}
    # /metrics (EDGEWISE_METRICS_PORT set): the command service on the base port, query worker i on base + 1 + i
    command_env: dict[str, str] = {}
    command_ports: tuple[str, ...] = ()
    if settings.metrics_port:
        command_env["EDGEWISE_METRICS_PORT"] = str(settings.metrics_port)
        command_ports = (f"127.0.0.1:{settings.metrics_port}",)
    specs = [ProcessSpec("command", "command_service", settings.command_addr, command_env, ports=command_ports,
                         label=f"gRPC {settings.command_addr}  GraphCommandService")]
    for i, address in enumerate(queries):
        worker_env = {"EDGEWISE_QUERY_ADDR": address}
        ports: tuple[str, ...] = ()
        if settings.metrics_port:
            worker_env["EDGEWISE_METRICS_PORT"] = str(settings.metrics_port + 1 + i)
            ports = (f"127.0.0.1:{settings.metrics_port + 1 + i}",)
        specs.append(ProcessSpec(f"query-{i}", "query_service", address, worker_env, restart=True, ports=ports,
                                 label=f"gRPC {address}  GraphQueryService"))
    if env.get("EDGEWISE_EDGE", "on").lower() not in ("off", "0", "false", "no"):
        specs.append(edge_spec(env, shared))
    return specs, shared


def edge_spec(env: Mapping[str, str], shared: Mapping[str, str]) -> ProcessSpec:
    """Envoy in front of everything (``python -m gateway``): one gRPC port for both services,
    REST/JSON, admin on loopback. Ready when its admin ``/ready`` says LIVE."""
    from gateway.settings import GatewaySettings

    edge = GatewaySettings.from_env({**env, **shared})

    def live(admin: str) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{admin}/ready", timeout=1.0) as reply:
                return bool(reply.read().strip() == b"LIVE")
        except OSError:
            return False

    return ProcessSpec("edge", "gateway", str(edge.admin_addr), ports=(str(edge.grpc_addr), str(edge.rest_addr)),
                       ready=live, label=f"gRPC {edge.grpc_addr}  both services (Envoy); REST http://{edge.rest_addr}; "
                                         f"admin http://{edge.admin_addr}")


# --- the lock file: one stack per run directory ---------------------------------------------


class AlreadyRunning(Exception):
    pass


class RunLock:
    """``flock`` on ``<run dir>/run_stack.lock``, holding a JSON description of the running
    stack (pid, endpoints, children) for the second ``make run`` and for tests."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 1 << 16, 0).decode(errors="replace")
            os.close(fd)
            raise AlreadyRunning(describe_running(text, self.path)) from None
        self._fd = fd
        self.write({"pid": os.getpid(), "state": "starting"})

    def write(self, state: Mapping[str, Any]) -> None:
        if self._fd is not None:
            data = json.dumps(dict(state), sort_keys=True).encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def describe_running(text: str, path: str) -> str:
    try:
        state = json.loads(text)
        endpoints = ", ".join(f"{name} {address}" for name, address in state["endpoints"].items())
        return f"edgewise is already running on {endpoints} (pid {state['pid']}; Ctrl-C in its terminal stops it)"
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"edgewise is already running (it holds {path})"


def port_in_use(address: str) -> bool:
    parts = split_address(address)
    if parts is None or parts[1] == 0:
        return False
    host, port = parts
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # the service reports what is wrong with it
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is no conflict
        try:
            sock.bind(sockaddr)
        except OSError:
            return True
    return False


def reserved_ports(specs: list[ProcessSpec]) -> set[int]:
    return {parts[1] for spec in specs for address in (spec.address, *spec.ports)
            if (parts := split_address(address)) is not None}


def check_ports(specs: list[ProcessSpec]) -> None:
    for spec in specs:
        for address in (spec.address, *spec.ports):
            if port_in_use(address):
                if address == spec.address and spec.ready(address):
                    raise AlreadyRunning(f"edgewise is already running on {address} ({spec.name} answers there; "
                                         f"started from another directory?)")
                raise AlreadyRunning(f"cannot start: {address} ({spec.name}) is in use by another program; "
                                     f"choose other ports (EDGEWISE_COMMAND_ADDR, EDGEWISE_QUERY_ADDR)")


# --- running the processes --------------------------------------------------------------------


@dataclass
class Running:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    started: float
    quick_exits: int = 0
    restart_at: float | None = None


class StopRequest:
    """Counts SIGINT/SIGTERM/SIGHUP; polled by the loops below. The first one stops the stack
    (the services drain); a second one while they drain kills them at once."""

    def __init__(self) -> None:
        self.signals = 0

    @property
    def requested(self) -> bool:
        return self.signals > 0

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._set)

    def _set(self, signum: int, _frame: Any) -> None:
        self.signals += 1


class Stack:
    def __init__(self, specs: list[ProcessSpec], env: dict[str, str], lock: RunLock, describe: dict[str, Any],
                 stop: StopRequest):
        self.specs = specs
        self.env = env
        self.lock = lock
        self.describe = describe
        self.running: dict[str, Running] = {}
        self._stop = stop

    @property
    def stopping(self) -> bool:
        return self._stop.requested

    def start(self, spec: ProcessSpec, quick_exits: int = 0) -> None:
        process = subprocess.Popen([sys.executable, "-c", _CHILD_SHIM, str(os.getpid()), "-m", spec.module],
                                   cwd=ROOT, env={**self.env, **spec.env}, process_group=0)
        self.running[spec.name] = Running(spec, process, time.monotonic(), quick_exits)
        self.record()

    def record(self) -> None:
        self.lock.write({**self.describe, "pid": os.getpid(),
                         "children": {n: r.process.pid for n, r in self.running.items()}})

    def wait_ready(self, timeout: float) -> int | None:
        """None once every process is SERVING; else the exit code to stop with."""
        deadline = time.monotonic() + timeout
        pending = [r for r in self.running.values()]
        while pending:
            if self.stopping:
                return EXIT_OK
            for r in list(pending):
                code = r.process.poll()
                if code is not None:
                    say(f"{r.spec.name} ({r.spec.module}) exited with code {code} during start-up; stopping")
                    return code or EXIT_FAILED
                if r.spec.ready(r.spec.address):
                    pending.remove(r)
            if pending and time.monotonic() > deadline:
                say(f"not healthy after {timeout:g} s: {', '.join(r.spec.name for r in pending)}; stopping")
                return EXIT_FAILED
            if pending:
                time.sleep(0.1)
        return None

    def supervise(self) -> int:
        while not self.stopping:
            now = time.monotonic()
            for name, r in list(self.running.items()):
                if r.restart_at is not None:
                    if now >= r.restart_at:
                        self.start(r.spec, r.quick_exits)
                        say(f"restarted {name} (pid {self.running[name].process.pid})")
                    continue
                code = r.process.poll()
                if code is None:
                    continue
                if not r.spec.restart:
                    say(f"{name} ({r.spec.module}, pid {r.process.pid}) exited with code {code}; stopping everything")
                    return code or EXIT_FAILED
                quick = r.quick_exits + 1 if now - r.started < QUICK_EXIT_SECONDS else 0
                if quick >= MAX_QUICK_EXITS:
                    say(f"{name} exited with code {code} {quick} times within {QUICK_EXIT_SECONDS:g} s of its start; "
                        f"stopping everything")
                    return code or EXIT_FAILED
                say(f"{name} (pid {r.process.pid}) exited with code {code}; restarting it in {RESTART_DELAY:g} s")
                r.quick_exits, r.restart_at = quick, now + RESTART_DELAY
            time.sleep(0.2)
        return EXIT_OK

    def stop(self) -> None:
        alive = [r for r in self.running.values() if r.restart_at is None and r.process.poll() is None]
        if alive:
            say(f"stopping {len(alive)} process(es) (they drain; Ctrl-C again kills them at once)")
        signals_before = self._stop.signals
        for r in alive:
            _signal_group(r.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while alive:
            alive = [r for r in alive if r.process.poll() is None]
            impatient = self._stop.signals > signals_before
            if alive and (impatient or time.monotonic() > deadline):
                for r in alive:
                    say(f"{r.spec.name} (pid {r.process.pid}) " + ("killed" if impatient else
                        f"did not stop within {GRACE_SECONDS:g} s: killed"))
                    _signal_group(r.process.pid, signal.SIGKILL)
                    r.process.wait()
                break
            time.sleep(0.05)
        for r in self.running.values():  # anything its children left behind
            _signal_group(r.process.pid, signal.SIGKILL)
            r.process.poll()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def banner(stack: Stack, describe: Mapping[str, Any]) -> str:
    store = describe["store"]
    where = store.get("db_path") or f"{store.get('dynamodb_endpoint')} ({store.get('dynamodb_tables')})"
    width = max(len(r.spec.name) for r in stack.running.values())
    lines = [f"edgewise is up ({store['store']}: {where}):"]
    lines += [f"  {r.spec.name:<{width}}  {r.spec.label or r.spec.address}  (pid {r.process.pid})"
              for r in stack.running.values()]
    auth = describe.get("auth_mode", "")
    if auth == "dev":
        lines.append("  authentication OFF (EDGEWISE_AUTH_MODE=dev): every caller may do everything; "
                     "EDGEWISE_AUTH_MODE=jwt to require tokens (README \"Authentication\")")
    elif auth:
        lines.append(f"  authentication: {auth} (every call but health and reflection needs a bearer token)")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def start_stand_in(env: dict[str, str], reserved: set[int]) -> "MotoServer":
    """moto on loopback with the tables, its settings merged into ``env`` (imported only when
    asked for). Its port is none of ``reserved`` (the stack's own ports, free but not bound yet:
    the system may hand one of them out as a free port)."""
    import asyncio

    from scripts.moto_server import START_ATTEMPTS, MotoServer, MotoStartError, create_tables_at, free_port

    prefix = env.get("EDGEWISE_DYNAMODB_TABLE_PREFIX") or "edgewise-"
    region = env.get("EDGEWISE_DYNAMODB_REGION") or "us-east-1"
    if env.get("EDGEWISE_MOTO_PORT"):
        server = MotoServer(int(env["EDGEWISE_MOTO_PORT"])).start()
    else:
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            while port in reserved:
                port = free_port()
            try:
                server = MotoServer(port).start()
                break
            except MotoStartError:
                if attempt == START_ATTEMPTS:
                    raise
    try:
        asyncio.run(create_tables_at(server.endpoint, prefix=prefix, region=region))
    except BaseException:
        server.stop()
        raise
    env.update(server.service_env(prefix, region))
    say(f"DynamoDB: a local stand-in (moto, in memory, gone at Ctrl-C) on {server.endpoint}, "
        f"tables {prefix}write/log/read")
    return server


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--help"], ["-h"]):
        print(settings_help(".venv/bin/python scripts/run_stack.py", (__doc__ or "").split("\n\n")[0].strip(),
                            "launcher"), end="")
        return EXIT_OK
    if args:
        say(f"unexpected argument {args[0]!r}: settings come from the environment (--help lists them)")
        return EXIT_BAD_CONFIG
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    try:
        settings = Settings.from_env(env)
        specs, shared = plan(settings, env)
    except ConfigError as exc:
        say(str(exc))
        return EXIT_BAD_CONFIG
    except ValueError as exc:  # the workers' ports do not fit
        say(f"invalid configuration: {exc}")
        return EXIT_BAD_CONFIG
    env.update(shared)
    try:
        start_timeout = float(env.get("EDGEWISE_START_TIMEOUT") or DEFAULT_START_TIMEOUT)
    except ValueError:
        say(f"EDGEWISE_START_TIMEOUT must be a number of seconds, got {env['EDGEWISE_START_TIMEOUT']!r}")
        return EXIT_BAD_CONFIG

    stop = StopRequest()
    stop.install()
    lock = RunLock(env.get("EDGEWISE_RUN_DIR") or os.path.join(ROOT, "var"))
    try:
        lock.acquire()
        check_ports(specs)
    except AlreadyRunning as exc:
        lock.release()
        print(exc, file=sys.stderr, flush=True)
        return EXIT_FAILED

    stack: Stack | None = None
    stand_in = None
    try:
        if settings.store == "dynamodb" and not settings.dynamodb.endpoint:
            stand_in = start_stand_in(env, reserved_ports(specs))
        describe: dict[str, Any] = {
            "store": Settings.from_env(env).describe_store(),
            "endpoints": {"command": settings.command_addr, "query": env["EDGEWISE_QUERY_ADDRS"]},
            "auth_mode": settings.auth.mode}
        if stand_in is not None:
            describe["stand_in_pid"] = stand_in.pid
        stack = Stack(specs, env, lock, describe, stop)
        for spec in specs:
            if stop.requested:
                break
            stack.start(spec)
        code = stack.wait_ready(start_timeout)
        if code is None:
            print(banner(stack, describe), flush=True)
            code = stack.supervise()
        return code
    finally:
        if stack is not None:
            stack.stop()
        if stand_in is not None:
            stand_in.stop()
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
