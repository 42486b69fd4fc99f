"""`make run`'s orchestrator (scripts/run_stack.py) as a user runs it: the command service,
query workers and the edge (Envoy) as real processes, on a temporary run directory and free
ports (never ./var nor the default ports).

- every worker answers, and every worker honours a consistency token;
- killing the projecting worker hands the projection to another (SQLite's file lock), the
  killed one is restarted, and a write made afterwards is read back from every worker;
- a second `make run` prints one line and exits non-zero; Ctrl-C (or the orchestrator being
  killed outright) leaves no process behind;
- direct ports answer UNIMPLEMENTED with an ErrorInfo, via grpc and via grpcurl;
- a data file in a missing directory is refused; `--help` prints the settings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.persistence.sqlite.projector_lock import holder_pid, lock_path_for
from infrastructure.process import die_with_parent
from tests.e2e.conftest import sample_schema
from tests.e2e.stack import ROOT, SECRET, free_port, rich_error

pytestmark = pytest.mark.e2e

RUN_STACK = str(ROOT / "scripts" / "run_stack.py")
WORKERS = 3
C = "edgewise.graph.v1.GraphCommandService"
Q = "edgewise.graph.v1.GraphQueryService"
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def free_block(n: int) -> int:
    """A base port with ``n`` free ports from it (the query workers' port, +1, +2 ...)."""
    for _ in range(100):
        base = free_port()
        if base + n > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no block of free ports")


def group_alive(pgid: int) -> bool:
    """Any process left in the group (each child of run_stack leads one: Envoy is in the edge's)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: only its parent has not collected it yet
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=Q), timeout=1).status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False


class RunStack:
    """``scripts/run_stack.py`` in a subprocess, as ``make run`` starts it."""

    def __init__(self, workdir: Path, engine: str = "sqlite", workers: int = WORKERS,
                 extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.run_dir = workdir / "run"
        self.run_dir.mkdir(exist_ok=True)
        self.db_path = workdir / "edgewise.db"
        self.command_addr = f"127.0.0.1:{free_port()}"
        base = free_block(workers)
        self.query_addrs = [f"127.0.0.1:{base + i}" for i in range(workers)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEWISE_", "AWS_"))}
        self.env.update({
            "PYTHONPATH": str(ROOT), "EDGEWISE_RUN_DIR": str(self.run_dir), "EDGEWISE_DB_PATH": str(self.db_path),
            "EDGEWISE_TOKEN_SECRET": SECRET, "EDGEWISE_AUTH_MODE": "dev", "EDGEWISE_COMMAND_ADDR": self.command_addr,
            "EDGEWISE_QUERY_ADDR": self.query_addrs[0], "EDGEWISE_QUERY_WORKERS": str(workers),
            "EDGEWISE_STORE": engine, "EDGEWISE_PROJECTOR_POLL_INTERVAL_MS": "20",
            "EDGEWISE_EDGE_GRPC_ADDR": f"127.0.0.1:{free_port()}", "EDGEWISE_EDGE_REST_ADDR": f"127.0.0.1:{free_port()}",
            "EDGEWISE_EDGE_ADMIN_ADDR": f"127.0.0.1:{free_port()}", "EDGEWISE_EDGE_CONCURRENCY": "1",
            **(extra_env or {})})
        self.edge_addr = self.env["EDGEWISE_EDGE_GRPC_ADDR"]
        self.log = workdir / "run_stack.log"
        self.process: subprocess.Popen | None = None
        self.banner = ""
        self.channels: list[grpc.Channel] = []

    def run(self, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run to completion (a run expected to refuse to start)."""
        return subprocess.run([sys.executable, RUN_STACK], cwd=ROOT, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, timeout: float = 90) -> "RunStack":
        self.process = subprocess.Popen([sys.executable, RUN_STACK], cwd=ROOT, env=self.env,
                                        stdout=subprocess.PIPE, stderr=self.log.open("wb"), text=True,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"run_stack exited with {self.process.wait()}:\n{self.log.read_text()[-5000:]}")
            lines.append(line)
            if line.startswith("Ctrl-C stops everything"):
                self.banner = "".join(lines)
                return self
        raise RuntimeError(f"run_stack did not come up:\n{self.log.read_text()[-5000:]}")

    def state(self) -> dict:
        return json.loads((self.run_dir / "run_stack.lock").read_text())

    def children(self) -> dict[str, int]:
        return self.state()["children"]

    def commands(self):
        channel = grpc.insecure_channel(self.command_addr)
        self.channels.append(channel)
        return command_service_pb2_grpc.GraphCommandServiceStub(channel)

    def queries(self, address: str):
        channel = grpc.insecure_channel(address)
        self.channels.append(channel)
        return query_service_pb2_grpc.GraphQueryServiceStub(channel)

    def interrupt(self, timeout: float = 40) -> int:
        """Ctrl-C: what the terminal sends to the foreground process group's leader."""
        for channel in self.channels:
            channel.close()
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def new_graph(stack: RunStack) -> tuple[str, str]:
    """A graph with a schema and one user; (graph name, the last write's token)."""
    graph = f"graphs/w-{uuid.uuid4().hex[:8]}"
    commands = stack.commands()
    commands.ApplySchema(cmd.ApplySchemaRequest(graph=graph, schema=sample_schema()), timeout=30)
    return graph, create_user(stack, graph, "ada")


def create_user(stack: RunStack, graph: str, node_id: str) -> str:
    node = pb.Node(type="User")
    node.properties["name"].CopyFrom(pb.PropertyValue(string_value=node_id))
    reply = stack.commands().CreateNode(cmd.CreateNodeRequest(parent=graph, node_id=node_id, node=node), timeout=30)
    return reply.consistency_token


def read_back(stack: RunStack, address: str, graph: str, node_id: str, token: str) -> str:
    reply = stack.queries(address).GetNode(q.GetNodeRequest(
        name=f"{graph}/nodes/{node_id}", consistency=pb.ReadConsistency(at_least_token=token)), timeout=30)
    return reply.node.name


@pytest.fixture(scope="module", params=["sqlite", "dynamodb"])
def running(request, tmp_path_factory):
    """One stack per engine for the tests that only read it or kill one worker; its teardown is
    the Ctrl-C test: exit 0, every child gone, the lock file free."""
    stack = RunStack(tmp_path_factory.mktemp(f"workers-{request.param}"), request.param).start()
    stack.engine = request.param
    try:
        yield stack
        groups = stack.children()  # each child leads its own process group (the edge's holds Envoy)
        moto = stack.state().get("stand_in_pid")
        assert stack.interrupt() == 0, stack.log.read_text()[-5000:]
        wait_until(lambda: not any(group_alive(pgid) for pgid in groups.values()), 5,
                   f"no process left in the groups {groups}")
        assert moto is None or not alive(moto)
        assert (stack.run_dir / "run_stack.lock").read_text() == ""  # emptied; the lock went with the process
        log = stack.log.read_text()
        assert "Traceback" not in log, log[-5000:]
        assert log.count('"message": "stopped"') >= WORKERS + 1
    finally:
        stack.kill()


def test_every_worker_answers_and_reads_its_writes(running):
    assert f"query-{WORKERS - 1}" in running.banner and running.command_addr in running.banner
    assert "edge" in running.children() and running.edge_addr in running.banner
    assert "authentication OFF (EDGEWISE_AUTH_MODE=dev)" in running.banner  # make run's mode, said where it is seen
    for address in running.query_addrs:
        assert address in running.banner and serving(address)
    assert running.state()["endpoints"]["query"] == ",".join(running.query_addrs)
    graph, token = new_graph(running)
    for address in [*running.query_addrs, running.edge_addr]:  # each worker, and through the edge
        assert read_back(running, address, graph, "ada", token) == f"{graph}/nodes/ada"
    if running.engine == "sqlite":  # exactly one worker projects: the lock holder
        holder = holder_pid(lock_path_for(str(running.db_path)))
        assert holder in [pid for name, pid in running.children().items() if name.startswith("query-")]


def test_direct_ports_answer_unimplemented_with_where_to_go(running):
    with pytest.raises(grpc.RpcError) as info:  # a query on the command port
        running.queries(running.command_addr).GetNode(q.GetNodeRequest(name="graphs/g/nodes/a"), timeout=10)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.UNIMPLEMENTED and err.reason == "SERVICE_NOT_SERVED_HERE"
    assert err.metadata["service"] == Q and err.metadata["address"] == running.query_addrs[0]
    assert err.metadata["addresses"] == ",".join(running.query_addrs)
    for address in running.query_addrs:  # a command on any query worker's port
        channel = grpc.insecure_channel(address)
        running.channels.append(channel)
        with pytest.raises(grpc.RpcError) as info:
            command_service_pb2_grpc.GraphCommandServiceStub(channel).CreateNode(
                cmd.CreateNodeRequest(parent="graphs/g"), timeout=10)
        err = rich_error(info.value)
        assert (err.code, err.reason, err.metadata["service"], err.metadata["address"]) == (
            grpc.StatusCode.UNIMPLEMENTED, "SERVICE_NOT_SERVED_HERE", C, running.command_addr)
    for address in (running.command_addr, running.query_addrs[-1]):  # a method nobody has
        channel = grpc.insecure_channel(address)
        running.channels.append(channel)
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(f"/{Q}/NoSuchMethod")(b"", timeout=10)
        err = rich_error(info.value)
        assert (err.code, err.reason, err.error_infos) == (grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_FOUND", 1)


NOPE_PROTO = """syntax = "proto3";
package edgewise.graph.v1;
import "google/protobuf/empty.proto";
import "google/rpc/error_details.proto";  // so grpcurl can print the ErrorInfo without reflection
service GraphQueryService { rpc NoSuchMethod(google.protobuf.Empty) returns (google.protobuf.Empty); }
"""


def grpcurl_error(*args: str) -> dict:
    assert GRPCURL, "grpcurl is not installed in the virtualenv"
    proc = subprocess.run([GRPCURL, "-plaintext", "-max-time", "10", "-format-error", *args], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode != 0, proc.stdout
    return json.loads(proc.stderr[proc.stderr.index("{"):])


def test_direct_ports_via_grpcurl(running, tmp_path):
    status = grpcurl_error("-d", '{"name": "graphs/g/nodes/a"}', running.command_addr, f"{Q}/GetNode")
    assert status["code"] == 12 and status["details"][0]["reason"] == "SERVICE_NOT_SERVED_HERE"
    assert status["details"][0]["metadata"]["address"] == running.query_addrs[0]
    status = grpcurl_error("-d", '{"parent": "graphs/g"}', running.query_addrs[1], f"{C}/CreateNode")
    assert status["code"] == 12 and status["details"][0]["metadata"]["address"] == running.command_addr
    # grpcurl only calls methods it can describe: a proto of its own describes one that does not exist
    import google.api

    googleapis = os.path.dirname(os.path.dirname(google.api.__path__[0]))  # google/rpc/*.proto, from the wheel
    (tmp_path / "nope.proto").write_text(NOPE_PROTO)
    status = grpcurl_error("-import-path", str(tmp_path), "-import-path", googleapis, "-proto", "nope.proto",
                           "-d", "{}", running.query_addrs[0], f"{Q}/NoSuchMethod")
    assert status["code"] == 12 and status["details"][0]["reason"] == "METHOD_NOT_FOUND"
    # reflection still lists both services on every port, health is unchanged
    for address in (running.command_addr, *running.query_addrs):
        listed = subprocess.run([GRPCURL, "-plaintext", address, "list"], capture_output=True, text=True,
                                timeout=30).stdout.split()
        assert C in listed and Q in listed and "grpc.health.v1.Health" in listed


def test_a_second_run_prints_one_line_and_exits_non_zero(running):
    proc = running.run()  # the same run directory: the lock file
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith(f"edgewise is already running on command {running.command_addr}, query ")
    assert str(running.process.pid) in proc.stderr
    # another run directory (another checkout), the same ports: the ports tell
    proc = running.run(env={**running.env, "EDGEWISE_RUN_DIR": str(running.workdir / "elsewhere")})
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"edgewise is already running on {running.command_addr}")
    assert "Traceback" not in proc.stderr
    assert all(alive(pid) for pid in running.children().values())  # the first one is untouched


def test_killing_the_projecting_worker_hands_projection_over(running):
    if running.engine != "sqlite":
        pytest.skip("SQLite's file lock; DynamoDB's lease is taken over when it expires (integration tests)")
    graph, token = new_graph(running)
    lock = lock_path_for(str(running.db_path))
    before = running.children()
    holder = holder_pid(lock)
    victim = next(name for name, pid in before.items() if pid == holder)
    os.kill(holder, signal.SIGKILL)
    wait_until(lambda: holder_pid(lock) not in (None, holder), 5, "another worker to take the projector lock")
    new_holder = holder_pid(lock)
    assert new_holder in [pid for name, pid in before.items() if name.startswith("query-") and name != victim]
    token = create_user(running, graph, "grace")  # written after the handover
    wait_until(lambda: running.children()[victim] != holder, 10, f"run_stack to restart {victim}")
    address = running.query_addrs[int(victim.split("-")[1])]
    wait_until(lambda: serving(address), 30, f"the restarted {victim} to serve")
    for address in running.query_addrs:  # the restarted one too (now a follower)
        assert read_back(running, address, graph, "grace", token) == f"{graph}/nodes/grace"
    assert holder_pid(lock) == new_holder
    assert f"restarted {victim}" in running.log.read_text()


# The tests below start their own processes on SQLite; the parameter puts them in `-k sqlite`.
@pytest.mark.parametrize("engine", ["sqlite"])
def test_killing_the_orchestrator_outright_leaves_no_process(tmp_path, engine):
    import fcntl

    stack = RunStack(tmp_path, engine, workers=2).start()
    try:
        children = stack.children()
        assert "edge" in children
        stack.process.send_signal(signal.SIGKILL)
        stack.process.wait(10)
        wait_until(lambda: not any(group_alive(pgid) for pgid in children.values()), 15,
                   f"the children {children} (and Envoy, the edge's child) to follow their parent")
        with open(stack.run_dir / "run_stack.lock") as f:  # the lock went with the process
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        stack.kill()


@pytest.mark.parametrize("engine", ["sqlite"])
def test_a_db_path_in_a_missing_directory_is_refused(tmp_path, engine):
    missing = tmp_path / "typo" / "edgewise.db"
    stack = RunStack(tmp_path, engine, workers=2, extra_env={"EDGEWISE_DB_PATH": str(missing)})
    proc = stack.run()
    assert proc.returncode == 2 and str(missing) in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and not missing.parent.exists()
    for module in ("command_service", "query_service"):
        proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=stack.env, capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 2 and str(missing) in proc.stderr and not missing.parent.exists()


@pytest.mark.parametrize("engine", ["sqlite"])
@pytest.mark.parametrize("module", ["command_service", "query_service"])
def test_help_prints_the_settings_and_exits_0(module, engine):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWISE_")}  # nothing configured
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith(f"usage: python -m {module} [--help]")
    for setting in ("EDGEWISE_DB_PATH", "EDGEWISE_TOKEN_SECRET", "EDGEWISE_COMMAND_ADDR", "EDGEWISE_LOG_LEVEL"):
        assert setting in proc.stdout
    assert "default: 127.0.0.1:50051" in proc.stdout
