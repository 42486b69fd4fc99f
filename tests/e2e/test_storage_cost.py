"""What each RPC costs the store, as the service reports it in trailing metadata
(StorageCostInterceptor): calls per DynamoDB operation and consumed capacity units.

Round trips are behaviour: a write is one TransactWriteItems, point reads are batched,
and a traversal reads a level with BatchGetItem, never one Query per frontier node."""

from __future__ import annotations

import uuid

import grpc
import pytest

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.grpc.interceptors import CAPACITY_UNITS_METADATA, STORAGE_CALLS_METADATA
from tests.e2e.conftest import prop

pytestmark = pytest.mark.e2e


def storage_cost(call: grpc.Call) -> dict[str, int]:
    """{operation: calls} from a call's trailing metadata ({} when the store reported none)."""
    trailing = dict(call.trailing_metadata() or ())
    calls = trailing.get(STORAGE_CALLS_METADATA, "")
    assert (CAPACITY_UNITS_METADATA in trailing) == bool(calls)
    return {name: int(n) for name, n in (part.split("=") for part in calls.split(",") if part)}


def users(graph, n: int, start: int = 0) -> None:
    ops = []
    for i in range(start, start + n):
        node = pb.Node(type="User")
        node.properties["name"].CopyFrom(prop(f"u{i}"))
        ops.append(cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=f"u{i}", node=node)))
    resp = graph.commands.BatchWrite(cmd.BatchWriteRequest(parent=graph.parent, operations=ops,
                                                           request_id=str(uuid.uuid4())))
    graph.token = resp.consistency_token


def follows(graph, pairs: list[tuple[str, str]]) -> grpc.Call:
    ops = [cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(
        source=graph.name(s), type="follows", target=graph.name(t)))) for s, t in pairs]
    resp, call = graph.commands.BatchWrite.with_call(cmd.BatchWriteRequest(
        parent=graph.parent, operations=ops, request_id=str(uuid.uuid4())))
    graph.token = resp.consistency_token
    return call


def test_sqlite_reports_no_storage_cost(stack, graph):
    if stack.engine != "sqlite":
        pytest.skip("the SQLite half of the pair")
    _, call = graph.commands.CreateNode.with_call(cmd.CreateNodeRequest(
        parent=graph.parent, node_id="a", node=pb.Node(type="User", properties={"name": prop("a")})))
    assert storage_cost(call) == {}


def test_dynamodb_round_trips_per_rpc(stack, graph):
    if stack.engine != "dynamodb":
        pytest.skip("DynamoDB only: SQLite reports no per-call cost")
    # a write is ONE TransactWriteItems, whatever it holds
    _, call = graph.commands.CreateNode.with_call(cmd.CreateNodeRequest(
        parent=graph.parent, node_id="hub", node=pb.Node(type="User", properties={"name": prop("hub")}),
        request_id=str(uuid.uuid4())))
    assert storage_cost(call).get("TransactWriteItems") == 1
    users(graph, 30)
    call = follows(graph, [("hub", f"u{i}") for i in range(15)])
    assert storage_cost(call).get("TransactWriteItems") == 1
    for start in (0, 15):  # 15 edges between distinct users: ~6 items each, one transaction
        call = follows(graph, [(f"u{i}", f"u{(i + 7) % 30}") for i in range(start, start + 15)])
        assert storage_cost(call).get("TransactWriteItems") == 1

    consistency = pb.ReadConsistency(at_least_token=graph.token)
    _, call = graph.queries.GetNode.with_call(q.GetNodeRequest(name=graph.name("hub"), consistency=consistency))
    cost = storage_cost(call)
    assert cost.get("Query", 0) == 0 and sum(cost.values()) <= 2, cost

    names = [graph.name(f"u{i}") for i in range(30)] + [graph.name("hub")]
    _, call = graph.queries.BatchGetNodes.with_call(q.BatchGetNodesRequest(
        parent=graph.parent, names=names, consistency=consistency))
    cost = storage_cost(call)
    assert cost.get("BatchGetItem", 0) <= 1 and cost.get("Query", 0) == 0, cost

    # a 3-hop traversal: a level is a few BatchGetItem calls, never a Query per frontier node
    resp, call = graph.queries.Traverse.with_call(q.TraverseRequest(
        start=graph.name("hub"), steps=[q.TraversalStep(edge_type="follows", direction=pb.DIRECTION_OUT)] * 3,
        consistency=consistency))
    assert len(resp.nodes) > 15
    cost = storage_cost(call)
    assert cost.get("Query", 0) == 0, cost
    assert cost.get("BatchGetItem", 0) <= 3 + 3, cost  # a level's heads per hop, plus the node views
