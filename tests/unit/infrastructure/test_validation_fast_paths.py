"""A validation fast path answers "certainly valid" only when the rule table finds no
violation, and says so for the common valid shapes (ADR 0006)."""

import itertools
import random

import pytest

from edgewise.graph.v1 import command_service_pb2 as c
from edgewise.graph.v1 import resources_pb2 as r
from infrastructure.grpc.validation import COMMAND_SERVICE, FAST_PATHS, validate, violations_for
from domain.errors import ValidationFailed

BATCH = f"/{COMMAND_SERVICE}/BatchWrite"
UUID = "3f1c0c2e-8d1a-4c1e-9a7b-2f0c1d2e3f4a"

NAMES = ["graphs/g/nodes/a", "graphs/g/nodes/b-1", "graphs/h/nodes/a", "graphs/g/nodes/", "g/nodes/a",
         "graphs/g/nodes/a\n", "", "graphs/g/nodes/_x"]
TYPES = ["follows", "User", "", "1bad", "a" * 65, "ok_2"]
PARENTS = ["graphs/g", "graphs/G", "", "graphs/g/", "graphs/h"]
REQUEST_IDS = ["", UUID, "not-a-uuid", UUID.upper(), UUID.replace("-4", "-1", 1)]
PROPS = [{}, {"since": r.PropertyValue(int_value=1)}, {"Bad": r.PropertyValue(int_value=1)},
         {"unset": r.PropertyValue()}]


def add_edge(source, type_, target, props=None, edge=True):
    op = c.BatchWriteOperation(add_edge=c.AddEdgeOperation())
    if edge:
        op.add_edge.edge.SetInParent()
        op.add_edge.edge.source, op.add_edge.edge.type, op.add_edge.edge.target = source, type_, target
        for k, v in (props or {}).items():
            op.add_edge.edge.properties[k].CopyFrom(v)
    return op


def create_node(node_id, type_, props=None, node=True):
    op = c.BatchWriteOperation(create_node=c.CreateNodeOperation(node_id=node_id))
    if node:
        op.create_node.node.SetInParent()
        op.create_node.node.type = type_
        for k, v in (props or {}).items():
            op.create_node.node.properties[k].CopyFrom(v)
    return op


def others():
    return [c.BatchWriteOperation(), c.BatchWriteOperation(delete_node=c.DeleteNodeOperation(name="graphs/g/nodes/a")),
            c.BatchWriteOperation(remove_edge=c.RemoveEdgeOperation(source="graphs/g/nodes/a", type="t",
                                                                    target="graphs/g/nodes/b"))]


def operations(rng):
    pick = rng.random()
    if pick < 0.55:
        return add_edge(rng.choice(NAMES), rng.choice(TYPES), rng.choice(NAMES), rng.choice(PROPS),
                        edge=rng.random() > 0.05)
    if pick < 0.95:
        return create_node(rng.choice(["", "n1", "_bad", "x" * 129]), rng.choice(TYPES), rng.choice(PROPS),
                           node=rng.random() > 0.05)
    return rng.choice(others())


def agree(request):
    fast = FAST_PATHS[BATCH](request)
    found = violations_for(BATCH, request)
    assert not (fast and found), (request, found)  # never "valid" when the table disagrees
    return fast, found


@pytest.mark.parametrize("seed", range(20))
def test_the_batch_write_fast_path_never_passes_what_the_table_refuses(seed):
    rng = random.Random(seed)
    for _ in range(200):
        size = rng.choice([0, 1, 2, 5, 100, 101])
        request = c.BatchWriteRequest(parent=rng.choice(PARENTS), request_id=rng.choice(REQUEST_IDS),
                                      operations=[operations(rng) for _ in range(size)])
        agree(request)


def test_common_valid_batches_take_the_fast_path_and_validate_passes():
    for props, rid in itertools.product(PROPS[:2], REQUEST_IDS[:2]):
        request = c.BatchWriteRequest(parent="graphs/g", request_id=rid, operations=[
            add_edge("graphs/g/nodes/a", "follows", "graphs/g/nodes/b-1", props), create_node("n1", "User", props),
            create_node("", "User")] * 33)
        assert agree(request) == (True, [])
        validate(BATCH, request)


def test_an_invalid_batch_still_gets_the_table_violations():
    request = c.BatchWriteRequest(parent="graphs/g", operations=[
        add_edge("graphs/g/nodes/a", "follows", "graphs/h/nodes/b"), add_edge("graphs/g/nodes/a", "", "x")])
    with pytest.raises(ValidationFailed) as err:
        validate(BATCH, request)
    assert [v.field for v in err.value.violations] == [v.field for v in violations_for(BATCH, request)]
    assert len(err.value.violations) == 3
