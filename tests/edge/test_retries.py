"""Retries at the edge (ADR 0013), with real services behind fakes that inject failures.

Commands: the command cluster's only endpoint is a Forwarder in front of the real command
service that lets the first attempt of every call reach the service (the write happens)
and then answers UNAVAILABLE — the answer lost on the way back. Envoy retries only the
calls that carry ``x-edgewise-request-id``; the service replays the stored first answer.

Queries: retried on UNAVAILABLE on another worker; under a storm of failures the retry
budget (20 % of active requests, at least 3) stops them, as Envoy's admin stats show.
"""

from __future__ import annotations

import concurrent.futures
import uuid

import grpc
import pytest

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import command_service_pb2_grpc
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc
from edgewise.graph.v1 import resources_pb2 as pb
from tests.e2e.conftest import GraphClient
from tests.e2e.stack import rich_error
from tests.edge.conftest import edge_settings, running
from tests.edge.upstreams import IDEMPOTENCY_HEADER, Forwarder, Unavailable

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def flaky_commands(edge_stack, tmp_path_factory):
    """An edge whose command upstream loses the first answer of every call."""
    direct = edge_stack.direct
    forwarder = Forwarder(direct.command_addr).start()
    try:
        with running(edge_settings([forwarder.address], [direct.query_addr]),
                     tmp_path_factory.mktemp("flaky")) as gateway:
            with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
                yield gateway, forwarder, command_service_pb2_grpc.GraphCommandServiceStub(channel)
    finally:
        forwarder.stop()


@pytest.fixture
def graph(edge_stack) -> GraphClient:
    """A fresh graph with the e2e schema, written directly (not through the flaky edge)."""
    client = GraphClient(edge_stack.direct, f"retry-{uuid.uuid4().hex[:8]}")
    client.apply_schema()
    return client


def create_request(graph: GraphClient, node_id: str, request_id: str) -> cmd.CreateNodeRequest:
    node = pb.Node(type="User")
    node.properties["name"].string_value = node_id
    return cmd.CreateNodeRequest(parent=graph.parent, node_id=node_id, node=node, request_id=request_id)


def node_events(graph: GraphClient) -> list[pb.Event]:
    """Every event of the graph, read from the log up to a marker written last."""
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    graph.create_user(marker)
    events = []
    stream = graph.queries.WatchEvents(q.WatchEventsRequest(parent=graph.parent, after_position=0), timeout=10)
    try:
        for resp in stream:
            if resp.event.aggregate_id == marker:
                break
            events.append(resp.event)
    finally:
        stream.cancel()
    return events


def test_a_command_with_the_idempotency_header_is_retried_and_writes_once(flaky_commands, graph):
    gateway, forwarder, stub = flaky_commands
    retries_before = gateway.stats(r"cluster\.command\.upstream_rq_retry$").get("cluster.command.upstream_rq_retry", 0)
    request_id = str(uuid.uuid4())
    response = stub.CreateNode(create_request(graph, "once", request_id),
                               metadata=((IDEMPOTENCY_HEADER, request_id),), timeout=10)

    attempts = forwarder.attempts_for(request_id)
    assert len(attempts) == 2, "Envoy retried the lost answer exactly once"
    # the caller got the first attempt's answer (the service replayed what it stored)
    assert attempts[0].response == attempts[1].response == response.SerializeToString()
    assert response.node.name == graph.name("once") and response.consistency_token
    created = [e for e in node_events(graph) if e.type == "NodeCreated" and e.aggregate_id == "once"]
    assert len(created) == 1, "written exactly once"
    assert created[0].request_id == request_id
    stats = gateway.stats(r"cluster\.command\.upstream_rq_retry$")
    assert stats["cluster.command.upstream_rq_retry"] == retries_before + 1


def test_a_command_without_the_header_is_not_retried(flaky_commands, graph):
    """The write happened, but without the header Envoy may not assume the call is
    idempotent: the caller sees UNAVAILABLE and must retry with its own request_id."""
    gateway, forwarder, stub = flaky_commands
    request = create_request(graph, "twice-unsafe", str(uuid.uuid4()))
    # x-envoy-retry-* headers from the caller are dropped on arrival: no way around the rule
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateNode(request, metadata=(("x-envoy-retry-grpc-on", "unavailable"), ("x-envoy-retry-on", "reset"),
                                           ("x-envoy-max-retries", "3")), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    import hashlib

    assert len(forwarder.attempts_for(hashlib.sha256(request.SerializeToString()).hexdigest())) == 1


def test_a_header_that_disagrees_with_the_body_is_refused(flaky_commands, graph):
    gateway, forwarder, stub = flaky_commands
    header = str(uuid.uuid4())
    for body_id in ("", str(uuid.uuid4())):
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateNode(create_request(graph, "mismatch", body_id), metadata=((IDEMPOTENCY_HEADER, header),),
                            timeout=10)
        error = rich_error(err.value)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in error.field_violations] == ["request_id"]
    assert not [e for e in node_events(graph) if e.aggregate_id == "mismatch"]


def test_queries_are_retried_on_another_worker(edge_stack, tmp_path_factory):
    """Half the query workers answer UNAVAILABLE: every read still succeeds."""
    broken = Unavailable().start()
    direct = edge_stack.direct
    graph = GraphClient(direct, f"reads-{uuid.uuid4().hex[:8]}")
    graph.apply_schema()
    graph.create_user("r")
    try:
        with running(edge_settings([direct.command_addr], [broken.address, direct.query_addr]),
                     tmp_path_factory.mktemp("reads")) as gateway:
            with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
                stub = query_service_pb2_grpc.GraphQueryServiceStub(channel)
                for _ in range(20):
                    resp = stub.GetNode(q.GetNodeRequest(name=graph.name("r"), consistency=graph.consistency()),
                                        timeout=10)
                    assert resp.node.name == graph.name("r")
            stats = gateway.stats(r"cluster\.query\.upstream_rq_retry")
    finally:
        broken.stop()
    assert broken.attempts, "the broken worker was tried"
    assert stats["cluster.query.upstream_rq_retry"] >= 1
    # (a retry may land on the broken worker again — previous_hosts re-picks at most 5 times —
    # and then the next one succeeds: every call above did)
    assert stats["cluster.query.upstream_rq_retry_success"] >= 1


def test_under_a_storm_of_failures_retries_stop_at_the_budget(edge_stack, tmp_path_factory):
    """Every query fails (UNAVAILABLE after 0.5 s) and 40 are in flight: without a budget
    Envoy would send up to 2 retries each (80); the budget allows 20 % of the active
    requests (at least 3) at a time, and overflows the rest."""
    storm = Unavailable(delay=0.5).start()
    calls = 40
    try:
        with running(edge_settings([edge_stack.direct.command_addr], [storm.address]),
                     tmp_path_factory.mktemp("storm")) as gateway:
            with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
                stub = query_service_pb2_grpc.GraphQueryServiceStub(channel)
                request = q.GetNodeRequest(name="graphs/storm/nodes/x")
                with concurrent.futures.ThreadPoolExecutor(calls) as pool:
                    codes = list(pool.map(lambda _: _code(stub, request), range(calls)))
            stats = gateway.stats(r"cluster\.query\.(upstream_rq_retry|upstream_rq_retry_overflow"
                                  r"|upstream_rq_total|circuit_breakers\.default\.remaining_retries)$")
    finally:
        storm.stop()
    assert codes == [grpc.StatusCode.UNAVAILABLE] * calls
    retries, overflow = stats["cluster.query.upstream_rq_retry"], stats["cluster.query.upstream_rq_retry_overflow"]
    assert overflow > 0, stats
    assert retries + overflow >= calls  # every failed first attempt wanted a retry...
    assert retries < calls, stats  # ...and the budget let few of them through (~10 of 40 here)
    assert len(storm.attempts) == calls + retries


def _code(stub, request) -> grpc.StatusCode:
    try:
        stub.GetNode(request, timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_the_circuit_breaker_sheds_requests_past_its_threshold(edge_stack, tmp_path_factory):
    """At most 2 concurrent requests to a slow query cluster: of 6 concurrent calls, the ones
    past the threshold fail at once with UNAVAILABLE (Envoy's overflow), the rest complete."""
    import dataclasses

    from gateway.settings import Breakers
    from tests.edge.upstreams import Slow

    slow = Slow(delay=1.0).start()
    try:
        base = edge_settings([edge_stack.direct.command_addr], [slow.address])
        settings = dataclasses.replace(base, query=dataclasses.replace(
            base.query, breakers=Breakers(max_requests=2, max_pending_requests=2)))
        with running(settings, tmp_path_factory.mktemp("breaker")) as gateway:
            with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
                stub = query_service_pb2_grpc.GraphQueryServiceStub(channel)
                request = q.GetNodeRequest(name="graphs/breaker/nodes/x")
                with concurrent.futures.ThreadPoolExecutor(6) as pool:
                    codes = list(pool.map(lambda _: _code(stub, request), range(6)))
            stats = gateway.stats(r"cluster\.query\.upstream_rq_(active|pending)_overflow$")
    finally:
        slow.stop()
    assert codes.count(grpc.StatusCode.OK) >= 2, codes
    assert codes.count(grpc.StatusCode.UNAVAILABLE) >= 1, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    # shed with no connection yet (pending) or past max_requests on one (active): Envoy's overflow
    assert sum(stats.values()) == codes.count(grpc.StatusCode.UNAVAILABLE), stats
    assert len(slow.attempts) <= 4  # 2 at a time; nothing shed was sent (or retried) upstream
