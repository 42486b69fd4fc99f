"""tests/e2e's RPC and grpcurl suites, run unchanged through the edge's one gRPC listener.

The test functions are tests/e2e's own (imported, not copied); the ``stack`` and ``graph``
fixtures they ask for come from tests/edge/conftest.py and point at Envoy, so every RPC of
both services — WatchEvents' stream included — and grpcurl's reflection go through it.
"""

import pytest

from tests.e2e.test_grpcurl import (  # noqa: F401  (collected by pytest from here)
    test_list_and_describe_both_services_on_either_port,
    test_walkthrough_with_grpcurl,
)
from tests.e2e.test_rpcs import (  # noqa: F401
    test_batch_get_and_list_nodes_with_plan,
    test_batch_write_is_atomic,
    test_edges_lists_counts_and_paging,
    test_find_path,
    test_node_lifecycle,
    test_schema_round_trip,
    test_watch_events_streams_the_log,
)

pytestmark = pytest.mark.e2e


def test_every_rpc_of_both_services_is_covered_here():
    """A new RPC in tests/e2e/test_rpcs.py must be added to the import above."""
    import tests.e2e.test_rpcs as e2e

    assert {n for n in dir(e2e) if n.startswith("test_")} <= set(globals())


def test_every_rpc_answered_through_envoy(edge_stack):
    """Envoy's access log (JSON lines) shows every RPC of both services answered OK by the
    cluster its path prefix names — after the tests above, which run first in this module
    (Traverse: in the grpcurl walk-through)."""
    import json
    import time
    from pathlib import Path

    from edgewise.graph.v1 import command_service_pb2, query_service_pb2

    expected = {f"/{s.full_name}/{m.name}": cluster
                for module, name, cluster in ((command_service_pb2, "GraphCommandService", "command"),
                                              (query_service_pb2, "GraphQueryService", "query"))
                for s in [module.DESCRIPTOR.services_by_name[name]] for m in s.methods}
    log = Path(edge_stack.gateway.settings.access_log)
    deadline = time.monotonic() + 5  # Envoy flushes its access log file every second
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        assert all(e["x_request_id"] for e in lines)  # Envoy's, or the caller's when it sent one
        lines = [e for e in lines if e["listener"] == "grpc"]  # other modules use the REST listener too
        # WatchEvents never ends by itself: its caller cancels it once it has read enough
        answered = {e["grpc_path"]: e["upstream_cluster"] for e in lines
                    if e["grpc_status"] == 0 or (e["grpc_path"].endswith("/WatchEvents") and e["bytes_sent"])}
        missing = {m for m in expected if answered.get(m) != expected[m]}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"never answered OK through the edge: {sorted(missing)}"
    assert all(e["protocol"] == "HTTP/2" for e in lines)


def test_health_through_the_edge(edge_stack):
    """grpc.health.v1 goes to a query worker: "" and the query service answer SERVING there.
    (The body names the service, which Envoy cannot read: the command service's own status is
    asked of it directly, or seen in the edge's health-checked hosts.)"""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(edge_stack.channel)
    for service in ("", "edgewise.graph.v1.GraphQueryService"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert edge_stack.gateway.hosts("command") == {edge_stack.direct.command_addr: "healthy"}
    # a Watch stream is routed as a stream: its first message arrives, then the caller leaves
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_an_unknown_method_is_answered_by_a_worker_not_by_envoy(edge_stack):
    import grpc

    call = edge_stack.channel.unary_unary("/edgewise.graph.v1.GraphQueryService/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as err:
        call(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    other = edge_stack.channel.unary_unary("/no.such.Service/Method")
    with pytest.raises(grpc.RpcError) as err:
        other(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
