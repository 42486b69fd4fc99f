"""Start both services as real processes on free 127.0.0.1 ports (as ``python -m ...``,
the way ``make run`` does) for the end-to-end workloads; stop them with SIGTERM.

Modelled on tests/e2e/stack.py, kept separate so the benchmark does not depend on
test code. Service logs go to files in the work directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgewise.graph.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from infrastructure.process import die_with_parent

# The services' buckets stay on (their cost is measured) but never refuse a benchmark's calls.
BENCH_LIMITS = {"EDGEWISE_RATE_LIMIT_READS": "1000000,1000000", "EDGEWISE_RATE_LIMIT_WRITES": "1000000,1000000"}

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-only-secret-0123456789abcdef0123"
MODULES = ("command_service", "query_service")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.addresses = {"command_service": f"127.0.0.1:{free_port()}",
                          "query_service": f"127.0.0.1:{free_port()}"}
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "EDGEWISE_DB_PATH": str(workdir / "edgewise.db"),
            "EDGEWISE_TOKEN_SECRET": SECRET, "EDGEWISE_AUTH_MODE": "dev", **BENCH_LIMITS,
            "EDGEWISE_COMMAND_ADDR": self.addresses["command_service"],
            "EDGEWISE_QUERY_ADDR": self.addresses["query_service"],
            **(extra_env or {}),
        }
        # the query service's Prometheus /metrics port (read cache counters; ignored by a query
        # service that has no metrics), set for that process only so that nothing else binds it
        self.metrics_port = free_port()
        self.module_env = {"query_service": {"EDGEWISE_METRICS_PORT": str(self.metrics_port)}}
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.channels: list[grpc.Channel] = []

    def __enter__(self) -> "Stack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "Stack":
        for module in MODULES:
            self.logs[module] = self.workdir / f"{module}.log"
            self.processes[module] = subprocess.Popen(
                [sys.executable, "-m", module], cwd=ROOT, env={**self.env, **self.module_env.get(module, {})},
                preexec_fn=die_with_parent,
                stdout=self.logs[module].open("wb"), stderr=subprocess.STDOUT)
        for module in MODULES:
            self._wait_healthy(module)
        self.command_channel = grpc.insecure_channel(self.addresses["command_service"])
        self.query_channel = grpc.insecure_channel(self.addresses["query_service"])
        self.channels = [self.command_channel, self.query_channel]
        self.commands = command_service_pb2_grpc.GraphCommandServiceStub(self.command_channel)
        self.queries = query_service_pb2_grpc.GraphQueryServiceStub(self.query_channel)
        self.query_health = health_pb2_grpc.HealthStub(self.query_channel)
        return self

    def start_query_replica(self, name: str, extra_env: dict[str, str]):
        """Another ``python -m query_service`` on the same DB file and a free port (e.g. with
        ``EDGEWISE_TRAVERSE_ENGINE=naive`` and ``EDGEWISE_PROJECTOR_ENABLED=false``: it then
        follows the main query service's projection). Returns its channel's query stub."""
        self.addresses[name] = f"127.0.0.1:{free_port()}"
        env = {**self.env, "EDGEWISE_QUERY_ADDR": self.addresses[name], "EDGEWISE_METRICS_PORT": "0", **extra_env}
        self.logs[name] = self.workdir / f"{name}.log"
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "query_service"], cwd=ROOT, env=env, preexec_fn=die_with_parent,
            stdout=self.logs[name].open("wb"), stderr=subprocess.STDOUT)
        self._wait_healthy(name)
        channel = grpc.insecure_channel(self.addresses[name])
        self.channels.append(channel)
        return query_service_pb2_grpc.GraphQueryServiceStub(channel)

    def _wait_healthy(self, module: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.addresses[module]) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.processes[module].poll() is not None:
                    raise RuntimeError(f"{module} exited early:\n{self.tail(module)}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{module} did not become healthy in {timeout:.0f}s:\n{self.tail(module)}")

    def check_alive(self) -> None:
        """Raises if a service process has exited (instead of retrying against a dead port)."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} (killed by someone else?):\n"
                                   f"{self.tail(name)}")

    def tail(self, module: str, lines: int = 30) -> str:
        path = self.logs.get(module)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> dict[str, int]:
        for channel in self.channels:
            channel.close()
        self.channels = []
        codes: dict[str, int] = {}
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for module, proc in self.processes.items():
            try:
                codes[module] = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[module] = proc.wait(timeout=5)
        return codes
