"""Every invariant violated once: exact status code and ErrorInfo reason, and nothing changed."""

import uuid

import grpc
import pytest

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from tests.e2e.conftest import prop, sample_schema
from tests.e2e.stack import rich_error

pytestmark = pytest.mark.e2e


def expect(call, code: grpc.StatusCode, reason: str):
    with pytest.raises(grpc.RpcError) as err:
        call()
    e = rich_error(err.value)
    assert (e.code, e.reason) == (code, reason), (e.code, e.reason, e.message)
    assert e.error_infos == 1 and e.domain == "edgewise.graph.v1"
    return e


def count(graph, node, edge_type, direction=pb.DIRECTION_OUT):
    return graph.queries.CountEdges(q.CountEdgesRequest(
        name=graph.name(node), edge_type=edge_type, direction=direction,
        consistency=pb.ReadConsistency(fully_consistent=True))).count


def test_endpoints_must_exist_and_have_the_right_types(graph):
    graph.create_user("a")
    graph.create("Group", "g")
    e = expect(lambda: graph.add_edge("a", "follows", "ghost"), grpc.StatusCode.FAILED_PRECONDITION, "ENDPOINT_MISSING")
    assert e.precondition_violations
    expect(lambda: graph.add_edge("a", "follows", "g"), grpc.StatusCode.FAILED_PRECONDITION, "ENDPOINT_TYPE_MISMATCH")
    assert count(graph, "a", "follows") == 0


def test_cardinality(graph):
    for n in ("a", "b"):
        graph.create_user(n)
    for g in ("g1", "g2"):
        graph.create("Group", g)
    graph.add_edge("a", "member_of", "g1")  # MANY_TO_ONE: a source has one
    expect(lambda: graph.add_edge("a", "member_of", "g2"), grpc.StatusCode.FAILED_PRECONDITION, "CARDINALITY_VIOLATED")
    graph.add_edge("a", "owns", "g1")  # ONE_TO_MANY: a target has one
    expect(lambda: graph.add_edge("b", "owns", "g1"), grpc.StatusCode.FAILED_PRECONDITION, "CARDINALITY_VIOLATED")
    assert count(graph, "a", "member_of") == 1 and count(graph, "b", "owns") == 0


def test_acyclic(graph):
    for n in "abc":
        graph.create_user(n)
    graph.add_edge("a", "manages", "b")
    graph.add_edge("b", "manages", "c")
    expect(lambda: graph.add_edge("c", "manages", "a"), grpc.StatusCode.FAILED_PRECONDITION, "CYCLE_DETECTED")
    expect(lambda: graph.add_edge("a", "manages", "a"), grpc.StatusCode.FAILED_PRECONDITION, "CYCLE_DETECTED")
    assert count(graph, "c", "manages") == 0


def test_symmetric_edges_exist_both_ways(graph):
    for n in "ab":
        graph.create_user(n)
    graph.add_edge("a", "friend", "b")
    assert count(graph, "a", "friend") == 1 and count(graph, "b", "friend") == 1
    graph.token = graph.commands.RemoveEdge(cmd.RemoveEdgeRequest(
        parent=graph.parent, source=graph.name("b"), type="friend", target=graph.name("a"),
        request_id=str(uuid.uuid4()))).consistency_token
    assert count(graph, "a", "friend") == 0 and count(graph, "b", "friend") == 0


def test_unique_property(graph):
    graph.create_user("a", email="same@example.com")
    expect(lambda: graph.create_user("b", email="same@example.com"), grpc.StatusCode.FAILED_PRECONDITION,
           "UNIQUE_VIOLATED")
    with pytest.raises(grpc.RpcError):
        graph.queries.GetNode(q.GetNodeRequest(name=graph.name("b"),
                                               consistency=pb.ReadConsistency(fully_consistent=True)))


def test_duplicate_node_and_edge(graph):
    graph.create_user("a")
    graph.create_user("b")
    expect(lambda: graph.create_user("a"), grpc.StatusCode.ALREADY_EXISTS, "NODE_ALREADY_EXISTS")
    graph.add_edge("a", "follows", "b")
    expect(lambda: graph.add_edge("a", "follows", "b"), grpc.StatusCode.ALREADY_EXISTS, "EDGE_ALREADY_EXISTS")


def test_restrict_and_cascade_delete(graph):
    graph.create_user("a")
    graph.create_user("b")
    graph.create("Group", "g")
    graph.add_edge("a", "member_of", "g")  # RESTRICT
    graph.add_edge("b", "follows", "a")  # CASCADE
    expect(lambda: graph.commands.DeleteNode(cmd.DeleteNodeRequest(name=graph.name("g"), request_id=str(uuid.uuid4()))),
           grpc.StatusCode.FAILED_PRECONDITION, "RESTRICT_VIOLATED")
    graph.token = graph.commands.RemoveEdge(cmd.RemoveEdgeRequest(
        parent=graph.parent, source=graph.name("a"), type="member_of", target=graph.name("g"),
        request_id=str(uuid.uuid4()))).consistency_token
    resp = graph.commands.DeleteNode(cmd.DeleteNodeRequest(name=graph.name("a"), request_id=str(uuid.uuid4())))
    assert resp.removed_edges == 1 and not resp.cascade_pending
    graph.token = resp.consistency_token
    assert count(graph, "b", "follows") == 0


def test_stale_etag_is_aborted(graph):
    node = graph.create_user("a", age=1)
    upd = pb.Node(name=graph.name("a"), etag=node.etag)
    upd.properties["age"].CopyFrom(prop(2))
    graph.commands.UpdateNode(cmd.UpdateNodeRequest(node=upd, request_id=str(uuid.uuid4())))
    upd.properties["age"].CopyFrom(prop(3))
    expect(lambda: graph.commands.UpdateNode(cmd.UpdateNodeRequest(node=upd, request_id=str(uuid.uuid4()))),
           grpc.StatusCode.ABORTED, "VERSION_CONFLICT")
    expect(lambda: graph.commands.DeleteNode(cmd.DeleteNodeRequest(name=graph.name("a"), etag=node.etag,
                                                                   request_id=str(uuid.uuid4()))),
           grpc.StatusCode.ABORTED, "VERSION_CONFLICT")
    got = graph.queries.GetNode(q.GetNodeRequest(name=graph.name("a"),
                                                 consistency=pb.ReadConsistency(fully_consistent=True))).node
    assert got.properties["age"].int_value == 2


def test_schema_evolution_rules(graph):
    stricter = sample_schema()
    stricter.node_types[0].properties[2].unique = True
    expect(lambda: graph.apply_schema(stricter, expected_version=1), grpc.StatusCode.FAILED_PRECONDITION,
           "SCHEMA_CHANGE_NOT_ADDITIVE")
    expect(lambda: graph.apply_schema(sample_schema(), expected_version=0), grpc.StatusCode.ABORTED,
           "SCHEMA_VERSION_CONFLICT")
    graph.create_user("a")
    without_user = sample_schema()
    del without_user.edge_types[:]
    del without_user.node_types[0]
    expect(lambda: graph.apply_schema(without_user, expected_version=1), grpc.StatusCode.FAILED_PRECONDITION,
           "TYPE_IN_USE")


def test_idempotent_retry(graph):
    graph.create_user("a")
    graph.create_user("b")
    rid = str(uuid.uuid4())
    first = graph.add_edge("a", "follows", "b", request_id=rid)
    again = graph.add_edge("a", "follows", "b", request_id=rid)  # a retry: same answer, no second write
    assert again.consistency_token == first.consistency_token
    assert again.edge == first.edge
    assert count(graph, "a", "follows") == 1
    e = expect(lambda: graph.add_edge("b", "follows", "a", request_id=rid), grpc.StatusCode.INVALID_ARGUMENT,
               "REQUEST_ID_REUSED")
    assert any(f == "request_id" for f, _ in e.field_violations)
    assert count(graph, "b", "follows") == 0


def test_deleting_a_supernode_tombstones_then_cascades_in_the_background(graph):
    """More edges than one transaction holds: the node is gone at once, no edge can
    attach to it, and its edges are removed in bounded background batches."""
    import time

    spokes = [f"s{i}" for i in range(150)]
    ops = [cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=n, node=pb.Node(
        type="User", properties={"name": prop(n)}))) for n in ["hub"] + spokes]
    # batches that fit one transaction on either engine (DynamoDB: 100 items, ~6 per edge)
    for i in range(0, len(ops), 50):
        graph.commands.BatchWrite(cmd.BatchWriteRequest(parent=graph.parent, operations=ops[i:i + 50],
                                                        request_id=str(uuid.uuid4())))
    edges = [cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(
        source=graph.name(s), type="follows", target=graph.name("hub")))) for s in spokes]
    for i in range(0, len(edges), 15):
        graph.token = graph.commands.BatchWrite(cmd.BatchWriteRequest(
            parent=graph.parent, operations=edges[i:i + 15], request_id=str(uuid.uuid4()))).consistency_token
    assert count(graph, "hub", "follows", pb.DIRECTION_IN) == 150

    resp = graph.commands.DeleteNode(cmd.DeleteNodeRequest(name=graph.name("hub"), request_id=str(uuid.uuid4())))
    assert resp.cascade_pending and resp.removed_edges == 0
    graph.token = resp.consistency_token
    with pytest.raises(grpc.RpcError) as err:
        graph.queries.GetNode(q.GetNodeRequest(name=graph.name("hub"), consistency=graph.consistency()))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    expect(lambda: graph.add_edge("s0", "follows", "hub"), grpc.StatusCode.FAILED_PRECONDITION, "ENDPOINT_MISSING")

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        remaining = sum(count(graph, s, "follows") for s in ("s0", "s75", "s149"))
        if remaining == 0:
            break
        time.sleep(0.1)
    assert remaining == 0
    for s in spokes[::10]:
        assert count(graph, s, "follows") == 0
