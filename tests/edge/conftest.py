"""The edge in front of real services: tests/e2e's Stack (both services on free loopback
ports, SQLite) with the real Envoy from gateway/ in front of it.

``stack`` and ``graph`` are the fixtures tests/e2e's RPC tests use, here pointing at the
edge's gRPC listener, so those tests run through Envoy unchanged (test_rpcs_via_edge.py).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from edgewise.graph.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from gateway.launcher import Gateway
from gateway.settings import Address, GatewaySettings, HealthCheck, OutlierDetection, ServicePolicy
from tests.e2e.conftest import GraphClient
from tests.e2e.stack import Stack, free_port

# Fast health checks and outlier detection: tests should see a state change in well
# under a second, not after production's intervals.
FAST_HEALTH = HealthCheck(interval_ms=200, timeout_ms=500, unhealthy_threshold=2, healthy_threshold=1)
FAST_OUTLIER = OutlierDetection(consecutive_gateway_failure=3, consecutive_5xx=5, interval_ms=200,
                                base_ejection_time_ms=30_000, max_ejection_percent=50)


def fast(policy: ServicePolicy, **changes) -> ServicePolicy:
    return dataclasses.replace(policy, health=FAST_HEALTH, outlier=FAST_OUTLIER, **changes)


def edge_settings(command: list[str], query: list[str], **changes) -> GatewaySettings:
    """Settings on free loopback ports in front of ``command`` and ``query``."""
    base = GatewaySettings()
    settings = GatewaySettings(
        grpc_addr=Address("127.0.0.1", free_port()), rest_addr=Address("127.0.0.1", free_port()),
        admin_addr=Address("127.0.0.1", free_port()),
        command=fast(base.command), query=fast(base.query), concurrency=1,
    ).with_upstreams(command, query)
    return dataclasses.replace(settings, **changes)


@contextmanager
def running(settings: GatewaySettings, workdir: Path, *, healthy: bool = True) -> Iterator[Gateway]:
    """A started Gateway (Envoy's output in ``workdir/envoy.log``), stopped afterwards; with
    ``healthy``, every upstream has passed its first health check before it is handed out."""
    workdir.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(settings, workdir=workdir, output=workdir / "envoy.log").start()
    try:
        if healthy:
            gateway.wait_for_hosts("command", len(settings.command_addrs))
            gateway.wait_for_hosts("query", len(settings.query_addrs))
        yield gateway
    finally:
        gateway.stop(grace=1)


class EdgeStack:
    """What tests/e2e's tests expect of a stack, through the edge: stubs on one channel to
    Envoy's gRPC listener, and ``command_addr``/``query_addr`` both naming that listener."""

    def __init__(self, stack: Stack, gateway: Gateway) -> None:
        self.direct = stack
        self.gateway = gateway
        self.engine = "sqlite"
        self.address = gateway.endpoints.grpc
        self.command_addr = self.query_addr = self.address
        self.channel = grpc.insecure_channel(self.address)
        self.commands = command_service_pb2_grpc.GraphCommandServiceStub(self.channel)
        self.queries = query_service_pb2_grpc.GraphQueryServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="session")
def edge_stack(tmp_path_factory) -> Iterator[EdgeStack]:
    workdir = tmp_path_factory.mktemp("edge")
    stack = Stack(workdir).start()
    try:
        settings = edge_settings([stack.command_addr], [stack.query_addr], access_log=str(workdir / "access.log"))
        with running(settings, workdir / "envoy") as gateway:
            edge = EdgeStack(stack, gateway)
            yield edge
            edge.close()
    finally:
        codes = stack.stop()
    assert codes == {"command_service": 0, "query_service": 0}, codes


@pytest.fixture(scope="session")
def stack(edge_stack) -> EdgeStack:
    """tests/e2e's name for the stack under test: here, the one behind the edge."""
    return edge_stack


@pytest.fixture
def graph(edge_stack) -> GraphClient:
    client = GraphClient(edge_stack, f"edge-{uuid.uuid4().hex[:8]}")
    client.apply_schema()
    return client
