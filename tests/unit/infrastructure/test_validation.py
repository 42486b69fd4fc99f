import pytest
from google.protobuf import field_mask_pb2

from domain.errors import ValidationFailed
from edgewise.graph.v1 import command_service_pb2 as c
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as r
from infrastructure.grpc import validation
from infrastructure.grpc.validation import (COMMAND_SERVICE, QUERY_SERVICE, RULES,
                                            effective_page_size, validate, violations_for)

UUID = "3f1c0c2e-8d1a-4c1e-9a7b-2f0c1d2e3f4a"
N = "graphs/g/nodes/"


def cmd(rpc):
    return f"/{COMMAND_SERVICE}/{rpc}"


def qry(rpc):
    return f"/{QUERY_SERVICE}/{rpc}"


def fields(method, request):
    return [v.field for v in violations_for(method, request)]


def test_the_table_covers_every_rpc_of_both_services():
    declared = {f"/{s.full_name}/{m.name}"
                for s in (c.DESCRIPTOR.services_by_name["GraphCommandService"],
                          q.DESCRIPTOR.services_by_name["GraphQueryService"])
                for m in s.methods}
    assert set(RULES) == declared


def test_every_rule_path_exists_on_its_request():
    """Rules read fields by path; a typo would raise KeyError on the first request."""
    by_method = {f"/{s.full_name}/{m.name}": m.input_type._concrete_class
                 for s in (c.DESCRIPTOR.services_by_name["GraphCommandService"],
                           q.DESCRIPTOR.services_by_name["GraphQueryService"])
                 for m in s.methods}
    for method, cls in by_method.items():
        violations_for(method, cls())  # must not raise


VALID = [
    (cmd("ApplySchema"), c.ApplySchemaRequest(graph="graphs/g", request_id=UUID, schema=r.Schema(
        node_types=[r.NodeType(name="Person", properties=[r.PropertyDefinition(
            name="age", kind=r.PROPERTY_KIND_INT)], projected=["age"])],
        edge_types=[r.EdgeType(name="follows", source_type="Person", target_type="Person",
                               cardinality=r.CARDINALITY_MANY_TO_MANY)]))),
    (cmd("CreateNode"), c.CreateNodeRequest(parent="graphs/g", node_id="a", node=r.Node(
        type="Person", properties={"age": r.PropertyValue(int_value=3)}))),
    (cmd("CreateNode"), c.CreateNodeRequest(parent="graphs/g", node=r.Node(type="Person"))),
    (cmd("UpdateNode"), c.UpdateNodeRequest(
        node=r.Node(name=N + "a", etag="e"),
        update_mask=field_mask_pb2.FieldMask(paths=["properties.age", "properties"]))),
    (cmd("UpdateNode"), c.UpdateNodeRequest(  # AIP-134: `*` is a full replacement
        node=r.Node(name=N + "a"), update_mask=field_mask_pb2.FieldMask(paths=["*"]))),
    (cmd("DeleteNode"), c.DeleteNodeRequest(name=N + "a")),
    (cmd("AddEdge"), c.AddEdgeRequest(parent="graphs/g", edge=r.Edge(
        source=N + "a", type="follows", target=N + "b"))),
    (cmd("RemoveEdge"), c.RemoveEdgeRequest(parent="graphs/g", source=N + "a", type="follows",
                                            target=N + "b")),
    (cmd("BatchWrite"), c.BatchWriteRequest(parent="graphs/g", operations=[
        c.BatchWriteOperation(create_node=c.CreateNodeOperation(node=r.Node(type="P"))),
        c.BatchWriteOperation(delete_node=c.DeleteNodeOperation(name=N + "x")),
        c.BatchWriteOperation(remove_edge=c.RemoveEdgeOperation(
            source=N + "a", type="t", target=N + "b")),
    ])),
    (qry("GetSchema"), q.GetSchemaRequest(graph="graphs/g")),
    (qry("GetNode"), q.GetNodeRequest(name=N + "a", consistency=r.ReadConsistency(
        fully_consistent=True))),
    (qry("BatchGetNodes"), q.BatchGetNodesRequest(parent="graphs/g", names=[N + "a", N + "b"])),
    (qry("GetEdge"), q.GetEdgeRequest(parent="graphs/g", source=N + "a", type="t",
                                      target=N + "b")),
    (qry("CountEdges"), q.CountEdgesRequest(name=N + "a", edge_type="t",
                                            direction=r.DIRECTION_IN)),
    (qry("ListEdges"), q.ListEdgesRequest(name=N + "a", direction=r.DIRECTION_OUT,
                                          page_size=5000)),
    (qry("ListNodes"), q.ListNodesRequest(parent="graphs/g", type="Person", filter="age > 3")),
    (qry("Traverse"), q.TraverseRequest(start=N + "a", steps=[q.TraversalStep(
        edge_type="t", direction=r.DIRECTION_BOTH)], budget=q.TraversalBudget(max_depth=3))),
    (qry("FindPath"), q.FindPathRequest(source=N + "a", target=N + "b")),
    (qry("WatchEvents"), q.WatchEventsRequest(parent="graphs/g", after_position=10)),
]


@pytest.mark.parametrize("method,request_", VALID, ids=lambda x: x.rsplit("/", 1)[-1]
                         if isinstance(x, str) else "")
def test_valid_requests_pass(method, request_):
    assert violations_for(method, request_) == []
    validate(method, request_)


INVALID = [
    (cmd("ApplySchema"), c.ApplySchemaRequest(), ["graph", "schema"]),
    (cmd("ApplySchema"), c.ApplySchemaRequest(graph="graphs/g", expected_version=-1,
                                              schema=r.Schema(node_types=[r.NodeType(
                                                  name="1bad", properties=[
                                                      r.PropertyDefinition(name="x")])])),
     ["schema.node_types[0].name", "schema.node_types[0].properties[0].kind",
      "expected_version"]),
    (cmd("CreateNode"), c.CreateNodeRequest(parent="graphs/g", node_id="-x", request_id="nope",
                                            node=r.Node(type="Person", properties={
                                                "ok": r.PropertyValue(), "bad key":
                                                r.PropertyValue(int_value=1)})),
     ["node_id", "node.properties['bad key']", "node.properties['ok']", "request_id"]),
    (cmd("CreateNode"), c.CreateNodeRequest(parent="graphs/g"), ["node", "node.type"]),
    (cmd("UpdateNode"), c.UpdateNodeRequest(node=r.Node(name="graphs/g/a"), update_mask=
                                            field_mask_pb2.FieldMask(paths=["type"])),
     ["node.name", "update_mask.paths[0]"]),
    (cmd("DeleteNode"), c.DeleteNodeRequest(), ["name"]),
    (cmd("AddEdge"), c.AddEdgeRequest(parent="graphs/g", edge=r.Edge(
        source="graphs/other/nodes/a", type="t", target=N + "b")), ["edge.source"]),
    (cmd("RemoveEdge"), c.RemoveEdgeRequest(parent="graphs/g"), ["source", "type", "target"]),
    (cmd("BatchWrite"), c.BatchWriteRequest(parent="graphs/g", operations=[
        c.BatchWriteOperation(),
        c.BatchWriteOperation(add_edge=c.AddEdgeOperation(edge=r.Edge(
            source=N + "a", type="t", target="graphs/h/nodes/b"))),
        c.BatchWriteOperation(update_node=c.UpdateNodeOperation(node=r.Node(
            name="graphs/h/nodes/a"))),
    ]), ["operations[0].operation", "operations[1].add_edge.edge.target",
         "operations[2].update_node.node.name"]),
    (cmd("BatchWrite"), c.BatchWriteRequest(parent="graphs/g"), ["operations"]),
    (qry("GetSchema"), q.GetSchemaRequest(graph="g"), ["graph"]),
    (qry("GetNode"), q.GetNodeRequest(name="nodes/a"), ["name"]),
    (qry("BatchGetNodes"), q.BatchGetNodesRequest(parent="graphs/g", names=[
        N + "a", "graphs/h/nodes/b", "x"]), ["names[1]", "names[2]"]),
    (qry("GetEdge"), q.GetEdgeRequest(parent="graphs/g", source=N + "a", type="t"), ["target"]),
    (qry("CountEdges"), q.CountEdgesRequest(name=N + "a", edge_type="t",
                                            direction=r.DIRECTION_BOTH), ["direction"]),
    (qry("ListEdges"), q.ListEdgesRequest(name=N + "a", page_size=-1),
     ["direction", "page_size"]),
    (qry("ListNodes"), q.ListNodesRequest(parent="graphs/g", page_size=-5), ["type", "page_size"]),
    (qry("Traverse"), q.TraverseRequest(start=N + "a", steps=[q.TraversalStep(
        edge_type="t")], budget=q.TraversalBudget(max_nodes=-1)),
     ["steps[0].direction", "budget.max_nodes"]),
    (qry("Traverse"), q.TraverseRequest(start=N + "a"), ["steps"]),
    (qry("FindPath"), q.FindPathRequest(source=N + "a", target="graphs/h/nodes/b",
                                        edge_types=["ok", "not ok"], max_depth=-1),
     ["target", "edge_types[1]", "max_depth"]),
    (qry("WatchEvents"), q.WatchEventsRequest(parent="graphs/g", after_position=-1),
     ["after_position"]),
]


@pytest.mark.parametrize("method,request_,expected", INVALID,
                         ids=lambda x: x.rsplit("/", 1)[-1] if isinstance(x, str) else "")
def test_invalid_requests_report_each_bad_field(method, request_, expected):
    assert sorted(fields(method, request_)) == sorted(expected)
    with pytest.raises(ValidationFailed) as info:
        validate(method, request_)
    assert [v.field for v in info.value.violations] == fields(method, request_)


def test_name_violations_carry_invalid_name():
    with pytest.raises(ValidationFailed) as info:
        validate(qry("GetNode"), q.GetNodeRequest(name="nope"))
    assert info.value.reason == "INVALID_NAME"
    with pytest.raises(ValidationFailed) as info:
        validate(qry("ListEdges"), q.ListEdgesRequest(name=N + "a", direction=1, page_size=-1))
    assert info.value.reason == "INVALID_ARGUMENT"


def test_batches_are_capped():
    op = c.BatchWriteOperation(delete_node=c.DeleteNodeOperation(name=N + "a"))
    validate(cmd("BatchWrite"), c.BatchWriteRequest(parent="graphs/g", operations=[op] * 100))
    with pytest.raises(ValidationFailed) as info:
        validate(cmd("BatchWrite"), c.BatchWriteRequest(parent="graphs/g",
                                                        operations=[op] * 101))
    assert info.value.reason == "BATCH_TOO_LARGE"
    validate(qry("BatchGetNodes"), q.BatchGetNodesRequest(parent="graphs/g",
                                                          names=[N + "a"] * 1000))
    with pytest.raises(ValidationFailed) as info:
        validate(qry("BatchGetNodes"), q.BatchGetNodesRequest(parent="graphs/g",
                                                              names=[N + "a"] * 1001))
    assert info.value.reason == "BATCH_TOO_LARGE"  # as the handler behind it says


def test_traversal_steps_are_capped_as_the_handler_caps_them():
    from query_service.app.queries.traverse import MAX_STEPS

    step = q.TraversalStep(edge_type="t", direction=r.DIRECTION_OUT)
    validate(qry("Traverse"), q.TraverseRequest(start=N + "a", steps=[step] * MAX_STEPS))
    assert fields(qry("Traverse"), q.TraverseRequest(start=N + "a", steps=[step] * (MAX_STEPS + 1))) == ["steps"]


def test_unknown_methods_are_not_validated():
    validate("/grpc.health.v1.Health/Check", q.GetNodeRequest())


def test_effective_page_size():
    assert effective_page_size(0) == validation.DEFAULT_PAGE_SIZE == 50
    assert effective_page_size(7) == 7
    assert effective_page_size(5000) == validation.MAX_PAGE_SIZE == 1000
