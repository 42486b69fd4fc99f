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


def test_events_name_their_graph_by_resource_name():
    from domain.events import NodeCreated
    from domain.ports import LoggedEvent

    event = NodeCreated(event_id="e1", graph="g1", aggregate_id="u1", aggregate_version=1, occurred_at=T,
                        request_id="r1", trace_context="", node_type="User", properties={"name": "Ada"})
    msg = convert.event_to_proto(LoggedEvent(position=7, event=event))
    assert (msg.graph, msg.aggregate_id, msg.position, msg.type) == ("graphs/g1", "u1", 7, "NodeCreated")
    assert msg.payload["node_type"] == "User"


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


@pytest.mark.parametrize("seconds,nanos", [(253402300800, 0), (-62135596801, 0), (0, -1), (0, 10**9), (2**62, 0)])
def test_timestamps_out_of_range_are_invalid_arguments(seconds, nanos):
    value = pb.PropertyValue(timestamp_value={"seconds": seconds, "nanos": nanos})
    with pytest.raises(ValidationFailed) as err:
        convert.properties_from_proto({"born": value}, "node.properties")
    assert err.value.violations[0].field == "node.properties['born']"
    request = pb.Node()
    request.create_time.seconds, request.create_time.nanos = seconds, nanos
    with pytest.raises(ValidationFailed) as err:
        convert.optional_datetime(request, "create_time")
    assert err.value.violations[0].field == "create_time"


def test_timestamps_at_the_limits_convert():
    low = convert.datetime_from_proto(pb.PropertyValue(timestamp_value={"seconds": -62135596800}).timestamp_value)
    high = convert.datetime_from_proto(pb.PropertyValue(
        timestamp_value={"seconds": 253402300799, "nanos": 999999999}).timestamp_value)
    assert low.year == 1 and high.year == 9999


def test_fast_timestamps_equal_the_library_conversion():
    from datetime import datetime, timedelta, timezone

    from google.protobuf import timestamp_pb2

    from infrastructure.grpc.convert import timestamp_to_proto

    plus2 = timezone(timedelta(hours=2))
    for value in (datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=plus2),
                  datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc),
                  datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
                  datetime(2020, 6, 1, 12, 0, 0, 1)):  # naive: local time, as astimezone reads it
        expected = timestamp_pb2.Timestamp()
        expected.FromDatetime(value.astimezone(timezone.utc))
        assert timestamp_to_proto(value) == expected, value


def test_node_encoding_is_memoised_on_the_immutable_view():
    from datetime import datetime, timezone

    from domain.edge import Direction
    from domain.views import NodeView
    from edgewise.graph.v1 import resources_pb2 as pb
    from infrastructure.grpc.convert import node_into_proto_memo, node_to_proto
    t = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    view = NodeView("g", "a", "User", {"age": 3}, 2, t, t, {("follows", Direction.OUT): 4})
    full, basic = node_into_proto_memo(view, pb.Node()), node_into_proto_memo(view, pb.Node(), properties=False)
    assert full == node_to_proto(view) and basic == node_to_proto(view, properties=False)
    assert set(view.encoded) == {"full", "basic"} and view == NodeView("g", "a", "User", {"age": 3}, 2, t, t,
                                                                       {("follows", Direction.OUT): 4})
    view.encoded["full"] = pb.Node(name="graphs/g/nodes/memo").SerializeToString()
    assert node_into_proto_memo(view, pb.Node()).name == "graphs/g/nodes/memo"  # the memo is what is sent
