"""Every RPC of both services, through the generated stubs, over loopback."""

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from tests.e2e.conftest import prop

pytestmark = pytest.mark.e2e


def test_schema_round_trip(graph):
    resp = graph.queries.GetSchema(q.GetSchemaRequest(graph=graph.parent, consistency=graph.consistency()))
    assert resp.schema.name == f"{graph.parent}/schema"
    assert resp.schema.version == 1
    assert {t.name for t in resp.schema.node_types} == {"User", "Group"}
    assert {t.name for t in resp.schema.edge_types} == {"follows", "member_of", "owns", "manages", "friend"}


def test_node_lifecycle(graph):
    created = graph.create_user("ada", email="ada@example.com", age=36, score=9.5)
    assert created.name == graph.name("ada") and created.etag
    got = graph.queries.GetNode(q.GetNodeRequest(name=graph.name("ada"), consistency=graph.consistency())).node
    assert got.properties["age"].int_value == 36 and got.properties["score"].double_value == 9.5
    assert got.etag == created.etag

    update = pb.Node(name=graph.name("ada"), etag=created.etag)
    update.properties["age"].CopyFrom(prop(37))
    updated = graph.commands.UpdateNode(cmd.UpdateNodeRequest(
        node=update, update_mask=field_mask_pb2.FieldMask(paths=["properties.age"]), request_id=str(uuid.uuid4())))
    graph.token = updated.consistency_token
    assert updated.node.properties["age"].int_value == 37
    assert updated.node.properties["name"].string_value == "ada"
    assert updated.node.etag != created.etag
    got = graph.queries.GetNode(q.GetNodeRequest(name=graph.name("ada"), consistency=graph.consistency())).node
    assert got.properties["age"].int_value == 37

    deleted = graph.commands.DeleteNode(cmd.DeleteNodeRequest(name=graph.name("ada"), etag=updated.node.etag,
                                                              request_id=str(uuid.uuid4())))
    graph.token = deleted.consistency_token
    with pytest.raises(grpc.RpcError) as err:
        graph.queries.GetNode(q.GetNodeRequest(name=graph.name("ada"), consistency=graph.consistency()))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_edges_lists_counts_and_paging(graph):
    for n in ("a", "b", "c", "d"):
        graph.create_user(n)
    for t in ("b", "c", "d"):
        graph.add_edge("a", "follows", t)
    c = graph.consistency()
    edge = graph.queries.GetEdge(q.GetEdgeRequest(parent=graph.parent, source=graph.name("a"), type="follows",
                                                  target=graph.name("b"), consistency=c)).edge
    assert edge.source == graph.name("a") and edge.target == graph.name("b")
    count = graph.queries.CountEdges(q.CountEdgesRequest(name=graph.name("a"), edge_type="follows",
                                                         direction=pb.DIRECTION_OUT, consistency=c))
    assert count.count == 3
    count_in = graph.queries.CountEdges(q.CountEdgesRequest(name=graph.name("b"), edge_type="follows",
                                                            direction=pb.DIRECTION_IN, consistency=c))
    assert count_in.count == 1
    node = graph.queries.GetNode(q.GetNodeRequest(name=graph.name("a"), consistency=c)).node
    assert [(e.edge_type, e.direction, e.count) for e in node.edge_counts] == [("follows", pb.DIRECTION_OUT, 3)]

    first = graph.queries.ListEdges(q.ListEdgesRequest(name=graph.name("a"), edge_type="follows",
                                                       direction=pb.DIRECTION_OUT, page_size=2, consistency=c,
                                                       include_neighbors=True))
    assert [e.target for e in first.edges] == [graph.name("d"), graph.name("c")]  # newest first
    assert [n.name for n in first.neighbors] == [graph.name("d"), graph.name("c")]
    assert first.next_page_token
    second = graph.queries.ListEdges(q.ListEdgesRequest(name=graph.name("a"), edge_type="follows",
                                                        direction=pb.DIRECTION_OUT, page_size=2,
                                                        page_token=first.next_page_token))
    assert [e.target for e in second.edges] == [graph.name("b")]
    assert not second.next_page_token
    incoming = graph.queries.ListEdges(q.ListEdgesRequest(name=graph.name("c"), direction=pb.DIRECTION_IN))
    assert [e.source for e in incoming.edges] == [graph.name("a")]

    removed = graph.commands.RemoveEdge(cmd.RemoveEdgeRequest(parent=graph.parent, source=graph.name("a"),
                                                              type="follows", target=graph.name("b"),
                                                              request_id=str(uuid.uuid4())))
    graph.token = removed.consistency_token
    count = graph.queries.CountEdges(q.CountEdgesRequest(name=graph.name("a"), edge_type="follows",
                                                         direction=pb.DIRECTION_OUT, consistency=graph.consistency()))
    assert count.count == 2


def test_batch_get_and_list_nodes_with_plan(graph):
    for i in range(5):
        graph.create_user(f"u{i}", email=f"u{i}@example.com", age=20 + i)
    c = graph.consistency()
    batch = graph.queries.BatchGetNodes(q.BatchGetNodesRequest(
        parent=graph.parent, names=[graph.name("u3"), graph.name("u1")], consistency=c))
    assert [n.name for n in batch.nodes] == [graph.name("u3"), graph.name("u1")]

    by_email = graph.queries.ListNodes(q.ListNodesRequest(parent=graph.parent, type="User",
                                                          filter='email = "u2@example.com"', explain=True))
    assert [n.name for n in by_email.nodes] == [graph.name("u2")]
    assert "email" in by_email.plan

    older = graph.queries.ListNodes(q.ListNodesRequest(parent=graph.parent, type="User", filter="age >= 22",
                                                       page_size=2, explain=True))
    names = [n.name for n in older.nodes]
    assert len(names) == 2 and older.next_page_token and older.plan
    rest = graph.queries.ListNodes(q.ListNodesRequest(parent=graph.parent, type="User", filter="age >= 22",
                                                      page_size=2, page_token=older.next_page_token))
    names += [n.name for n in rest.nodes]
    assert sorted(names) == [graph.name(f"u{i}") for i in (2, 3, 4)]


def test_batch_write_is_atomic(graph):
    def create_op(node_id):
        node = pb.Node(type="User")
        node.properties["name"].CopyFrom(prop(node_id))
        return cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=node_id, node=node))

    ok = graph.commands.BatchWrite(cmd.BatchWriteRequest(parent=graph.parent, request_id=str(uuid.uuid4()), operations=[
        create_op("x1"), create_op("x2"),
        cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(
            source=graph.name("x1"), type="follows", target=graph.name("x2")))),
    ]))
    assert len(ok.results) == 3
    graph.token = ok.consistency_token
    # The second batch fails on its last operation: nothing of it may land.
    with pytest.raises(grpc.RpcError) as err:
        graph.commands.BatchWrite(cmd.BatchWriteRequest(parent=graph.parent, request_id=str(uuid.uuid4()), operations=[
            create_op("x3"),
            cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(
                source=graph.name("x3"), type="follows", target=graph.name("missing")))),
        ]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        graph.queries.GetNode(q.GetNodeRequest(name=graph.name("x3"),
                                               consistency=pb.ReadConsistency(fully_consistent=True)))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_find_path(graph):
    for n in "abcde":
        graph.create_user(n)
    for s, t in ("ab", "bc", "cd"):
        graph.add_edge(s, "follows", t)
    resp = graph.queries.FindPath(q.FindPathRequest(source=graph.name("a"), target=graph.name("d"),
                                                    edge_types=["follows"], direction=pb.DIRECTION_OUT, max_depth=5,
                                                    consistency=graph.consistency()))
    assert resp.found and list(resp.node_names) == [graph.name(n) for n in "abcd"]
    none = graph.queries.FindPath(q.FindPathRequest(source=graph.name("a"), target=graph.name("e"),
                                                    edge_types=["follows"], direction=pb.DIRECTION_OUT, max_depth=5))
    assert not none.found and not none.node_names


def test_watch_events_streams_the_log(graph):
    graph.create_user("w1")
    stream = graph.queries.WatchEvents(q.WatchEventsRequest(parent=graph.parent, after_position=0), timeout=10)
    seen = []
    for resp in stream:
        seen.append(resp.event)
        if resp.event.type == "NodeCreated":
            break
    stream.cancel()
    assert seen[0].type == "SchemaApplied"
    assert all(e.graph == graph.parent for e in seen)
    assert [e.position for e in seen] == sorted(e.position for e in seen)
    assert seen[-1].aggregate_id == "w1" and seen[-1].request_id
