"""Bad input: INVALID_ARGUMENT with a BadRequest field violation, and nothing written."""

import uuid

import grpc
import pytest

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from tests.e2e.conftest import prop
from tests.e2e.stack import rich_error

pytestmark = pytest.mark.e2e


def invalid(call, field_prefix: str):
    with pytest.raises(grpc.RpcError) as err:
        call()
    e = rich_error(err.value)
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT, (e.code, e.message)
    assert e.error_infos == 1 and e.reason
    assert e.field_violations, e
    assert any(f.startswith(field_prefix) for f, _ in e.field_violations), e.field_violations
    return e


def log_head(graph) -> int:
    """The newest event position of this graph (the event log is the record of every write)."""
    stream = graph.queries.WatchEvents(q.WatchEventsRequest(parent=graph.parent, after_position=0), timeout=3)
    last = 0
    try:
        for resp in stream:
            last = resp.event.position
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    return last


def user(node_id="u1", **props) -> cmd.CreateNodeRequest:
    node = pb.Node(type="User")
    props.setdefault("name", "x")
    for k, v in props.items():
        node.properties[k].CopyFrom(prop(v))
    return node


def test_bad_writes_change_nothing(graph):
    before = log_head(graph)
    c = graph.commands
    invalid(lambda: c.CreateNode(cmd.CreateNodeRequest(parent="graphs/Not_Valid", node_id="a", node=user())), "parent")
    invalid(lambda: c.CreateNode(cmd.CreateNodeRequest(parent=graph.parent, node_id="bad id!", node=user())),
            "node_id")
    invalid(lambda: c.CreateNode(cmd.CreateNodeRequest(parent=graph.parent, node_id="a",
                                                       node=user(name="x" * 70_000))), "node.properties")
    invalid(lambda: c.CreateNode(cmd.CreateNodeRequest(parent=graph.parent, node_id="a", node=user(age="old"))),
            "node.properties")
    invalid(lambda: c.CreateNode(cmd.CreateNodeRequest(parent=graph.parent, node_id="a",
                                                       node=pb.Node(type="Unicorn"))), "node.type")
    invalid(lambda: c.CreateNode(cmd.CreateNodeRequest(parent=graph.parent, node_id="a", node=user(),
                                                       request_id="not-a-uuid")), "request_id")
    invalid(lambda: c.AddEdge(cmd.AddEdgeRequest(parent=graph.parent, edge=pb.Edge(
        source="nodes/a", type="follows", target=graph.name("b")))), "edge.source")
    invalid(lambda: c.AddEdge(cmd.AddEdgeRequest(parent=graph.parent, edge=pb.Edge(
        source=graph.name("a"), type="unicorn_edge", target=graph.name("b")), request_id=str(uuid.uuid4()))),
        "edge.type")
    invalid(lambda: c.DeleteNode(cmd.DeleteNodeRequest(name="graphs/x/nodes/")), "name")
    invalid(lambda: c.BatchWrite(cmd.BatchWriteRequest(parent=graph.parent, operations=[
        cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=f"n{i}", node=user()))
        for i in range(101)])), "operations")
    assert log_head(graph) == before


def test_bad_reads(graph):
    graph.create_user("a")
    graph.create_user("b")
    graph.add_edge("a", "follows", "b")
    qs = graph.queries
    invalid(lambda: qs.GetNode(q.GetNodeRequest(name="graphs/g/users/a")), "name")
    invalid(lambda: qs.ListEdges(q.ListEdgesRequest(name=graph.name("a"), direction=pb.DIRECTION_OUT,
                                                    page_size=-1)), "page_size")
    invalid(lambda: qs.ListNodes(q.ListNodesRequest(parent=graph.parent, type="User", page_size=-5)), "page_size")
    invalid(lambda: qs.ListNodes(q.ListNodesRequest(parent=graph.parent, type="User", filter="name = = 'x'",
                                                 consistency=graph.consistency())),
            "filter")
    invalid(lambda: qs.ListNodes(q.ListNodesRequest(parent=graph.parent, type="User", filter="ghost = 1")),
            "filter")
    graph.add_edge("a", "follows", "a")  # two edges out of "a": a page of one has a next page
    first = qs.ListEdges(q.ListEdgesRequest(name=graph.name("a"), direction=pb.DIRECTION_OUT, page_size=1,
                                            consistency=graph.consistency()))
    token = first.next_page_token
    assert token
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    invalid(lambda: qs.ListEdges(q.ListEdgesRequest(name=graph.name("a"), direction=pb.DIRECTION_OUT, page_size=1,
                                                    page_token=tampered)), "page_token")
    invalid(lambda: qs.ListEdges(q.ListEdgesRequest(name=graph.name("a"), direction=pb.DIRECTION_OUT, page_size=1,
                                                    page_token="garbage")), "page_token")
    invalid(lambda: qs.GetNode(q.GetNodeRequest(name=graph.name("a"),
                                                consistency=pb.ReadConsistency(at_least_token="forged"))),
            "consistency")
    invalid(lambda: qs.BatchGetNodes(q.BatchGetNodesRequest(parent=graph.parent,
                                                            names=[graph.name(f"n{i}") for i in range(1001)])),
            "names")
