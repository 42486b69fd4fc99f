"""The query servicer over a real gRPC server (translation + error mapping)."""

import grpc
import pytest

from edgewise.graph.v1 import query_service_pb2 as qpb
from edgewise.graph.v1 import resources_pb2 as pb
from tests.query_support import Events, served_query_stub

pytestmark = pytest.mark.integration


@pytest.fixture
async def stub(tmp_path):
    ev = Events()
    async with served_query_stub(str(tmp_path / "edgewise.db"), [
            ev.schema(), ev.create("a", age=1, email="a@x"), ev.create("b", age=2), ev.link("a", "b")]) as s:
        yield s


async def test_rpcs_translate(stub):
    node = (await stub.GetNode(qpb.GetNodeRequest(name="graphs/g/nodes/a"))).node
    assert node.name == "graphs/g/nodes/a" and node.properties["age"].int_value == 1
    assert node.edge_counts[0].edge_type == "follows" and node.edge_counts[0].count == 1
    r = await stub.ListNodes(qpb.ListNodesRequest(parent="graphs/g", type="User", filter="age >= 1",
                                                  order_by="age desc", explain=True))
    assert [n.name for n in r.nodes] == ["graphs/g/nodes/b", "graphs/g/nodes/a"]
    assert r.plan == "INDEX_RANGE(User.age) DESC"
    t = await stub.Traverse(qpb.TraverseRequest(start="graphs/g/nodes/a", steps=[
        qpb.TraversalStep(edge_type="follows", direction=pb.DIRECTION_OUT)]))
    assert [lv.node_names for lv in t.levels] == [["graphs/g/nodes/a"], ["graphs/g/nodes/b"]]
    p = await stub.FindPath(qpb.FindPathRequest(source="graphs/g/nodes/a", target="graphs/g/nodes/b"))
    assert p.found and list(p.node_names) == ["graphs/g/nodes/a", "graphs/g/nodes/b"]
    e = await stub.ListEdges(qpb.ListEdgesRequest(name="graphs/g/nodes/b", direction=pb.DIRECTION_IN,
                                                  include_neighbors=True))
    assert e.edges[0].source == "graphs/g/nodes/a" and e.neighbors[0].name == "graphs/g/nodes/a"
    c = await stub.CountEdges(qpb.CountEdgesRequest(name="graphs/g/nodes/a", edge_type="follows",
                                                    direction=pb.DIRECTION_OUT))
    assert c.count == 1
    s = await stub.GetSchema(qpb.GetSchemaRequest(graph="graphs/g"))
    assert s.schema.version == 1
    stream = stub.WatchEvents(qpb.WatchEventsRequest(parent="graphs/g"))
    first = await stream.read()
    assert first.event.position == 1 and first.event.type == "SchemaApplied"
    stream.cancel()


async def test_errors_map_to_statuses(stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetNode(qpb.GetNodeRequest(name="graphs/g/nodes/zz"))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListNodes(qpb.ListNodesRequest(parent="graphs/g", type="User", filter="age >"))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetNode(qpb.GetNodeRequest(name="graphs/g/nodes/a",
                                              consistency=pb.ReadConsistency(at_least_token="garbage")))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_views_fill_exactly_their_fields(stub):
    """AIP-157: NAMES is the name only, BASIC adds type/etag/times/counts, FULL the properties;
    each RPC's default is the one its proto documents."""
    def shape(node):
        return (bool(node.name), bool(node.type), bool(node.etag), node.HasField("create_time"),
                len(node.edge_counts) > 0, dict(node.properties) != {})
    names, basic, full = (True, False, False, False, False, False), (True, True, True, True, True, False), \
        (True, True, True, True, True, True)
    start, step = "graphs/g/nodes/a", [qpb.TraversalStep(edge_type="follows", direction=pb.DIRECTION_OUT)]
    for view, expected in ((qpb.NODE_VIEW_UNSPECIFIED, basic), (qpb.NODE_VIEW_NAMES, names),
                           (qpb.NODE_VIEW_BASIC, basic), (qpb.NODE_VIEW_FULL, full)):
        t = await stub.Traverse(qpb.TraverseRequest(start=start, steps=step, view=view))
        assert [n.name for n in t.nodes] == ["graphs/g/nodes/a", "graphs/g/nodes/b"]
        assert shape(t.nodes[0]) == expected, view
        assert list(t.edges) == []
        t = await stub.Traverse(qpb.TraverseRequest(start=start, steps=step, view=view, include_edges=True))
        assert [(e.source, e.target) for e in t.edges] == [("graphs/g/nodes/a", "graphs/g/nodes/b")]
        assert t.edges[0].HasField("create_time") == (view == qpb.NODE_VIEW_FULL)
    names_req = dict(parent="graphs/g", names=["graphs/g/nodes/a"])
    assert shape((await stub.BatchGetNodes(qpb.BatchGetNodesRequest(**names_req))).nodes[0]) == full
    assert shape((await stub.BatchGetNodes(qpb.BatchGetNodesRequest(**names_req,
                                                                    view=qpb.NODE_VIEW_BASIC))).nodes[0]) == basic
    assert shape((await stub.BatchGetNodes(qpb.BatchGetNodesRequest(**names_req,
                                                                    view=qpb.NODE_VIEW_NAMES))).nodes[0]) == names
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.BatchGetNodes(qpb.BatchGetNodesRequest(parent="graphs/g", names=["graphs/g/nodes/zz"],
                                                          view=qpb.NODE_VIEW_NAMES))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    edges_req = dict(name="graphs/g/nodes/b", direction=pb.DIRECTION_IN, include_neighbors=True)
    assert shape((await stub.ListEdges(qpb.ListEdgesRequest(**edges_req))).neighbors[0]) == basic
    assert shape((await stub.ListEdges(qpb.ListEdgesRequest(**edges_req, view=qpb.NODE_VIEW_FULL))).neighbors[0]) \
        == full
    assert list((await stub.ListEdges(qpb.ListEdgesRequest(**edges_req, view=qpb.NODE_VIEW_NAMES))).neighbors) == []
    path = dict(source="graphs/g/nodes/a", target="graphs/g/nodes/b")
    p = await stub.FindPath(qpb.FindPathRequest(**path))
    assert p.found and list(p.nodes) == [] and not p.truncated
    p = await stub.FindPath(qpb.FindPathRequest(**path, view=qpb.NODE_VIEW_FULL))
    assert [shape(n) for n in p.nodes] == [full, full]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Traverse(qpb.TraverseRequest(start=start, steps=step, view=7))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CountEdges(qpb.CountEdgesRequest(name="graphs/g/nodes/zz", edge_type="follows",
                                                    direction=pb.DIRECTION_OUT))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
