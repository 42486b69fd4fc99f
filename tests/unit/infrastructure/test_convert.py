from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from domain.edge import Direction
from domain.errors import ValidationFailed
from domain.schema import Schema
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.grpc import convert
from tests.unit.domain.samples import FOLLOWS, FRIEND, GROUP, MANAGES, MEMBER_OF, USER

T = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)


@dataclass
class View:
    graph: str = "g1"
    id: str = "u1"
    type: str = "User"
    properties: dict = field(default_factory=lambda: {"name": "Ada", "age": 36, "score": 1.5, "active": True,
                                                      "born": T})
    version: int = 3
    create_time: datetime = T
    update_time: datetime = T
    edge_counts: dict = field(default_factory=lambda: {("follows", Direction.OUT): 2})


def test_node_round_trip_keeps_kinds():
    msg = convert.node_to_proto(View())
    assert msg.name == "graphs/g1/nodes/u1" and msg.etag == '"3"'
    assert msg.properties["age"].WhichOneof("kind") == "int_value"
    assert msg.properties["score"].WhichOneof("kind") == "double_value"
    assert msg.properties["active"].WhichOneof("kind") == "bool_value"
    assert convert.properties_from_proto(msg.properties, "node.properties") == View().properties
    assert msg.edge_counts[0].direction == pb.DIRECTION_OUT and msg.edge_counts[0].count == 2


def test_value_without_kind_is_a_field_violation():
    msg = pb.Node()
    msg.properties["x"].CopyFrom(pb.PropertyValue())
    with pytest.raises(ValidationFailed) as err:
        convert.properties_from_proto(msg.properties, "node.properties")
    assert err.value.violations[0].field == "node.properties['x']"


def test_schema_round_trip():
    s = Schema("g1", version=4, node_types={t.name: t for t in (USER, GROUP)},
               edge_types={t.name: t for t in (FOLLOWS, MEMBER_OF, MANAGES, FRIEND)}, update_time=T)
    msg = convert.schema_to_proto(s)
    assert msg.name == "graphs/g1/schema" and msg.version == 4
    nodes, edges = convert.schema_from_proto(msg)
    assert nodes == [USER, GROUP] and edges == [FOLLOWS, MEMBER_OF, MANAGES, FRIEND]


def test_direction_rules():
    assert convert.direction_from_proto(pb.DIRECTION_UNSPECIFIED, default=Direction.OUT) is Direction.OUT
    with pytest.raises(ValidationFailed):
        convert.direction_from_proto(pb.DIRECTION_BOTH)
    assert convert.direction_from_proto(pb.DIRECTION_BOTH, allow_both=True) is Direction.BOTH
