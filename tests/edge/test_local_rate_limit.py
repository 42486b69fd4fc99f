"""The edge's own defence (ADR 0014): with EDGEWISE_EDGE_LOCAL_RATE_LIMIT set, Envoy refuses
calls past its token bucket — for every caller together, before any worker sees them — as
RESOURCE_EXHAUSTED (never UNAVAILABLE, which callers and the edge retry). Envoy validates the
rendered filter when it starts."""

import dataclasses

import grpc
import pytest

from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc as qg
from tests.edge.conftest import edge_settings, running

pytestmark = pytest.mark.e2e

CALLS = 8
BURST = 3


def test_calls_past_the_edge_bucket_are_resource_exhausted(edge_stack, tmp_path):
    direct = edge_stack.direct
    settings = dataclasses.replace(edge_settings([direct.command_addr], [direct.query_addr]),
                                   local_rate_limit=1, local_rate_limit_burst=BURST)
    with running(settings, tmp_path / "envoy") as gateway, grpc.insecure_channel(gateway.endpoints.grpc) as channel:
        stub = qg.GraphQueryServiceStub(channel)
        codes = []
        for _ in range(CALLS):
            try:
                stub.GetNode(q.GetNodeRequest(name="graphs/edge-limit/nodes/nobody"), timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    # the burst reaches the service (NOT_FOUND: no such node); past it, the edge answers
    assert codes[:BURST] == [grpc.StatusCode.NOT_FOUND] * BURST, codes
    assert set(codes) <= {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    # at most one refill (1 per second) can land while the calls run
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= CALLS - BURST - 1, codes
