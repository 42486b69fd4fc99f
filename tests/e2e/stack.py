"""Start both services as real processes on loopback and talk to them through stubs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from edgewise.graph.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from infrastructure.process import die_with_parent
from scripts import ports

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-0123456789abcdef0123456789"


def free_port() -> int:
    """A free loopback port below the ephemeral range (scripts/ports.py says why)."""
    return ports.free_port()


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    address: str
    log: Path


class Stack:
    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.db_path = workdir / "edgewise.db"
        self.command_addr = f"127.0.0.1:{free_port()}"
        self.query_addr = f"127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "EDGEWISE_DB_PATH": str(self.db_path),
            "EDGEWISE_TOKEN_SECRET": SECRET, "EDGEWISE_AUTH_MODE": "dev",
            "EDGEWISE_COMMAND_ADDR": self.command_addr,
            "EDGEWISE_QUERY_ADDR": self.query_addr,
            "EDGEWISE_LOG_LEVEL": "INFO",
            "EDGEWISE_PROJECTOR_POLL_INTERVAL_MS": "20",
            **(extra_env or {}),
        }
        self.services: list[Service] = []
        self.channels: list[grpc.Channel] = []

    def start(self) -> "Stack":
        for module, addr in (("command_service", self.command_addr), ("query_service", self.query_addr)):
            log = self.workdir / f"{module}.log"
            proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=self.env,
                                    preexec_fn=die_with_parent,
                                    stdout=log.open("wb"), stderr=subprocess.STDOUT)
            self.services.append(Service(module, proc, addr, log))
        for svc in self.services:
            self._wait_healthy(svc)
        return self.connect()

    def connect(self) -> "Stack":
        """Channels and stubs to both services (once they answer health)."""
        self.command_channel = grpc.insecure_channel(self.command_addr)
        self.query_channel = grpc.insecure_channel(self.query_addr)
        self.channels += [self.command_channel, self.query_channel]
        self.commands = command_service_pb2_grpc.GraphCommandServiceStub(self.command_channel)
        self.queries = query_service_pb2_grpc.GraphQueryServiceStub(self.query_channel)
        return self

    def _wait_healthy(self, svc: Service, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(svc.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if svc.process.poll() is not None:
                    raise RuntimeError(f"{svc.name} exited early:\n{svc.log.read_text()}")
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{svc.name} did not become healthy:\n{svc.log.read_text()}")

    def stop(self) -> dict[str, int]:
        for ch in self.channels:
            ch.close()
        codes = {}
        for svc in self.services:
            if svc.process.poll() is None:
                svc.process.send_signal(signal.SIGTERM)
        for svc in self.services:
            try:
                codes[svc.name] = svc.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                svc.process.kill()
                codes[svc.name] = svc.process.wait(timeout=5)
        return codes


@dataclass
class RichError:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    field_violations: list[tuple[str, str]]
    precondition_violations: list[tuple[str, str, str]]
    error_infos: int
    has_retry_info: bool
    resource_info: tuple[str, str] | None


def rich_error(err: grpc.RpcError) -> RichError:
    status: status_pb2.Status | None = rpc_status.from_call(err)
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    reason = domain = ""
    metadata: dict[str, str] = {}
    fv: list[tuple[str, str]] = []
    pv: list[tuple[str, str, str]] = []
    infos = 0
    retry = False
    resource = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos += 1
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            fv += [(v.field, v.description) for v in br.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            detail.Unpack(pf)
            pv += [(v.type, v.subject, v.description) for v in pf.violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = True
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            ri = error_details_pb2.ResourceInfo()
            detail.Unpack(ri)
            resource = (ri.resource_type, ri.resource_name)
    return RichError(err.code(), err.details() or "", reason, domain, metadata, fv, pv, infos, retry, resource)
