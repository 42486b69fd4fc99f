"""The servicer only translates proto <-> commands; rules stay in the handlers."""

import pytest
from google.protobuf import field_mask_pb2

from command_service.entrypoints.grpc.servicer import GraphCommandServicer
from domain.errors import Reason, RuleViolated, ValidationFailed
from edgewise.graph.v1 import command_service_pb2 as cpb
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.grpc.context import RequestContext, request_scope
from infrastructure.grpc.convert import schema_to_proto
from tests.command_samples import GRAPH
from tests.unit.command_service.test_schema_and_bus import TRACEPARENT

NAME = f"graphs/{GRAPH}"


def node_name(node_id: str) -> str:
    return f"{NAME}/nodes/{node_id}"


@pytest.fixture
async def servicer(graph_app, store):
    return GraphCommandServicer(graph_app.dispatch)


def props(**values) -> dict:
    return {k: pb.PropertyValue(string_value=v) if isinstance(v, str) else pb.PropertyValue(int_value=v)
            for k, v in values.items()}


async def test_apply_schema_round_trips_through_protos(app):
    from tests.command_samples import EDGE_TYPES, NODE_TYPES
    from domain.schema import Schema

    declared = schema_to_proto(Schema(GRAPH, node_types={t.name: t for t in NODE_TYPES},
                                      edge_types={t.name: t for t in EDGE_TYPES}))
    servicer = GraphCommandServicer(app.dispatch)
    response = await servicer.ApplySchema(cpb.ApplySchemaRequest(graph=NAME, schema=declared), None)
    assert response.schema.version == 1 and response.consistency_token
    assert {t.name for t in response.schema.edge_types} == {t.name for t in EDGE_TYPES}


async def test_node_and_edge_rpcs_map_to_commands(servicer, store):
    with request_scope(RequestContext(request_id="call-9", traceparent=TRACEPARENT)):
        created = await servicer.CreateNode(cpb.CreateNodeRequest(
            parent=NAME, node_id="a", node=pb.Node(type="User", properties=props(name="A", age=3))), None)
    assert created.node.name == node_name("a") and created.node.etag == '"1"'
    assert created.node.properties["age"].int_value == 3 and created.consistency_token
    assert store.log[-1].event.request_id == "call-9" and store.log[-1].event.trace_context == TRACEPARENT

    await servicer.CreateNode(cpb.CreateNodeRequest(parent=NAME, node_id="b",
                                                    node=pb.Node(type="User", properties=props(name="B"))), None)
    updated = await servicer.UpdateNode(cpb.UpdateNodeRequest(
        node=pb.Node(name=node_name("a"), etag='"1"', properties=props(age=4)),
        update_mask=field_mask_pb2.FieldMask(paths=["properties.age"])), None)
    assert updated.node.etag == '"2"' and updated.node.properties["age"].int_value == 4

    added = await servicer.AddEdge(cpb.AddEdgeRequest(
        parent=NAME, edge=pb.Edge(source=node_name("a"), type="friend", target=node_name("b"))), None)
    assert added.edge.source == node_name("a") and added.edge.HasField("create_time")
    removed = await servicer.RemoveEdge(cpb.RemoveEdgeRequest(
        parent=NAME, source=node_name("a"), type="friend", target=node_name("b")), None)
    assert removed.consistency_token
    deleted = await servicer.DeleteNode(cpb.DeleteNodeRequest(name=node_name("a"), etag='"2"'), None)
    assert deleted.removed_edges == 0 and not deleted.cascade_pending


async def test_batch_write_maps_every_operation_kind(servicer):
    ops = [
        cpb.BatchWriteOperation(create_node=cpb.CreateNodeOperation(
            node_id="a", node=pb.Node(type="User", properties=props(name="A")))),
        cpb.BatchWriteOperation(create_node=cpb.CreateNodeOperation(
            node_id="b", node=pb.Node(type="User", properties=props(name="B")))),
        cpb.BatchWriteOperation(update_node=cpb.UpdateNodeOperation(
            node=pb.Node(name=node_name("b"), properties=props(age=1)))),
        cpb.BatchWriteOperation(add_edge=cpb.AddEdgeOperation(
            edge=pb.Edge(source=node_name("a"), type="follows", target=node_name("b")))),
        cpb.BatchWriteOperation(remove_edge=cpb.RemoveEdgeOperation(
            source=node_name("a"), type="follows", target=node_name("b"))),
        cpb.BatchWriteOperation(delete_node=cpb.DeleteNodeOperation(name=node_name("a"))),
    ]
    response = await servicer.BatchWrite(cpb.BatchWriteRequest(parent=NAME, operations=ops), None)
    assert [r.WhichOneof("result") for r in response.results] == ["node", "node", "node", "edge", "empty", "empty"]
    assert response.consistency_token


async def test_update_node_refuses_a_changed_type(servicer):
    await servicer.CreateNode(cpb.CreateNodeRequest(parent=NAME, node_id="a",
                                                    node=pb.Node(type="User", properties=props(name="A"))), None)
    same = await servicer.UpdateNode(cpb.UpdateNodeRequest(
        node=pb.Node(name=node_name("a"), type="User", properties=props(age=4))), None)
    assert same.node.type == "User" and same.node.etag == '"2"'
    with pytest.raises(ValidationFailed) as err:
        await servicer.UpdateNode(cpb.UpdateNodeRequest(
            node=pb.Node(name=node_name("a"), type="Group", properties=props(age=5))), None)
    assert err.value.violations[0].field == "node.type"


async def test_names_in_another_graph_are_refused(servicer):
    with pytest.raises(ValidationFailed) as err:
        await servicer.AddEdge(cpb.AddEdgeRequest(
            parent=NAME, edge=pb.Edge(source="graphs/other/nodes/a", type="follows", target=node_name("b"))), None)
    assert err.value.violations[0].field == "edge.source"


async def test_domain_errors_propagate_unchanged(servicer):
    with pytest.raises(RuleViolated) as err:
        await servicer.AddEdge(cpb.AddEdgeRequest(
            parent=NAME, edge=pb.Edge(source=node_name("x"), type="follows", target=node_name("y"))), None)
    assert err.value.reason == Reason.ENDPOINT_MISSING
