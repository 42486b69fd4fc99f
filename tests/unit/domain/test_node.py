from datetime import datetime, timezone

import pytest

from domain.errors import Reason, ValidationFailed, VersionConflict
from domain.events import NodeCreated, NodeDeleted, NodeUpdated, event_from_dict, event_to_dict
from domain.node import Node, etag_for, version_from_etag
from domain.values import MAX_NODE_PROPERTIES_BYTES


def make(schema, causation, **props):
    return Node.create(graph="g1", node_id="u1", type_name="User", properties={"name": "Ada", **props},
                       schema=schema, causation=causation)


def test_create_records_event_with_causation(schema, causation):
    node = make(schema, causation, age=36, score=1, born=datetime(1815, 12, 10, tzinfo=timezone.utc))
    assert node.version == 1 and node.etag == '"1"'
    assert node.properties["score"] == 1.0 and isinstance(node.properties["score"], float)
    [event] = node.events
    assert isinstance(event, NodeCreated)
    assert (event.graph, event.aggregate_id, event.request_id) == ("g1", "u1", "req-1")
    assert event.trace_context.startswith("00-")
    assert event_from_dict(event_to_dict(event)) == event


@pytest.mark.parametrize("props,reason,field", [
    ({"name": 5}, Reason.INVALID_PROPERTY, "node.properties['name']"),
    ({"name": "a", "age": "x"}, Reason.INVALID_PROPERTY, "node.properties['age']"),
    ({"name": "a", "age": True}, Reason.INVALID_PROPERTY, "node.properties['age']"),
    ({"name": "a", "ghost": 1}, Reason.INVALID_PROPERTY, "node.properties['ghost']"),
    ({}, Reason.INVALID_PROPERTY, "node.properties['name']"),
    ({"name": "a", "born": datetime(2020, 1, 1)}, Reason.INVALID_PROPERTY, "node.properties['born']"),
    ({"name": "x" * MAX_NODE_PROPERTIES_BYTES}, Reason.PROPERTY_TOO_LARGE, "node.properties"),
])
def test_bad_properties_are_refused(schema, causation, props, reason, field):
    with pytest.raises(ValidationFailed) as err:
        Node.create(graph="g1", node_id="u1", type_name="User", properties=props, schema=schema, causation=causation)
    assert err.value.reason == reason
    assert field in [v.field for v in err.value.violations]


def test_bad_node_id(schema, causation):
    with pytest.raises(ValidationFailed) as err:
        Node.create(graph="g1", node_id="bad id/", type_name="User", properties={"name": "a"}, schema=schema,
                    causation=causation)
    assert err.value.reason == Reason.INVALID_NAME


def test_update_with_mask_and_etag(schema, causation):
    node = make(schema, causation, age=3)
    node.update(properties={"age": 4}, update_mask=["properties.age", "properties.score"], expected_version=1,
                schema=schema, causation=causation)
    assert node.properties == {"name": "Ada", "age": 4}
    assert node.version == 2
    event = node.events[-1]
    assert isinstance(event, NodeUpdated) and event.changed == ("age",)


def test_update_without_mask_merges(schema, causation):
    node = make(schema, causation, age=3)
    node.update(properties={"score": 2.5}, update_mask=None, expected_version=None, schema=schema, causation=causation)
    assert node.properties == {"name": "Ada", "age": 3, "score": 2.5}


def test_update_star_mask_replaces_the_map(schema, causation):
    node = make(schema, causation, age=3)
    node.update(properties={"name": "Grace"}, update_mask=["*"], expected_version=None, schema=schema,
                causation=causation)
    assert node.properties == {"name": "Grace"}


def test_update_accepts_the_type_only_unchanged(schema, causation):
    node = make(schema, causation)
    node.update(properties={"age": 5}, update_mask=None, expected_version=None, schema=schema, causation=causation,
                type_name="User")
    assert node.version == 2
    with pytest.raises(ValidationFailed) as err:
        node.update(properties={"age": 6}, update_mask=None, expected_version=None, schema=schema,
                    causation=causation, type_name="Group")
    assert err.value.reason == Reason.INVALID_ARGUMENT
    assert [v.field for v in err.value.violations] == ["node.type"]
    assert node.version == 2 and node.properties["age"] == 5 and node.type == "User"


def test_update_cannot_drop_required(schema, causation):
    node = make(schema, causation)
    with pytest.raises(ValidationFailed):
        node.update(properties={}, update_mask=["properties.name"], expected_version=1, schema=schema,
                    causation=causation)
    assert node.version == 1 and node.properties == {"name": "Ada"}


def test_update_bad_mask_path(schema, causation):
    node = make(schema, causation)
    with pytest.raises(ValidationFailed) as err:
        node.update(properties={}, update_mask=["type"], expected_version=1, schema=schema, causation=causation)
    assert err.value.violations[0].field == "update_mask.paths[0]"


def test_stale_etag_changes_nothing(schema, causation):
    node = make(schema, causation)
    with pytest.raises(VersionConflict) as err:
        node.update(properties={"age": 1}, update_mask=None, expected_version=7, schema=schema, causation=causation)
    assert err.value.reason == Reason.VERSION_CONFLICT
    with pytest.raises(VersionConflict):
        node.delete(expected_version=2, causation=causation)
    assert node.version == 1 and not node.deleted and len(node.events) == 1


def test_delete(schema, causation):
    node = make(schema, causation)
    node.delete(expected_version=1, causation=causation)
    assert node.deleted and node.version == 2 and isinstance(node.events[-1], NodeDeleted)


def test_etag_round_trip():
    assert version_from_etag(etag_for(12)) == 12
    assert version_from_etag('W/"3"') == 3
    with pytest.raises(ValidationFailed):
        version_from_etag("abc")


def test_unique_values(schema, causation):
    node = make(schema, causation, email="a@b")
    assert node.unique_values(schema) == {"email": "a@b"}


@pytest.mark.parametrize("etag", ['"²"', '"١٢"', '"' + "9" * 5000 + '"', '"99999999999999999999"', '"-1"'])
def test_etags_we_never_issue_are_invalid_arguments_not_crashes(etag):
    with pytest.raises(ValidationFailed) as err:
        version_from_etag(etag)
    assert err.value.violations[0].field == "etag"


def test_nan_is_not_a_double_value(schema, causation):
    with pytest.raises(ValidationFailed) as err:
        Node.create(graph="g1", node_id="n", type_name="User", properties={"name": "x", "score": float("nan")},
                    schema=schema, causation=causation)
    assert err.value.reason == Reason.INVALID_PROPERTY and "NaN" in err.value.violations[0].description
    node = Node.create(graph="g1", node_id="n", type_name="User", properties={"name": "x", "score": float("-inf")},
                       schema=schema, causation=causation)
    assert node.properties["score"] == float("-inf")


def test_negative_zero_is_stored_as_zero(schema, causation):
    node = make(schema, causation, score=-0.0)
    assert str(node.properties["score"]) == "0.0"


def test_epoch_micros_is_exact_where_float_timestamps_are_not():
    from domain.values import epoch_micros, from_epoch_micros
    t = datetime(2005, 4, 17, 8, 29, 2, 646319, tzinfo=timezone.utc)
    assert int(t.timestamp() * 1_000_000) != 1113726542646319  # the float route loses a microsecond here
    assert epoch_micros(t) == 1113726542646319
    assert from_epoch_micros(epoch_micros(t)) == t
