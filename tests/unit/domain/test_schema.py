from dataclasses import replace

import pytest

from domain.errors import Reason, RuleViolated, ValidationFailed, VersionConflict
from domain.events import SchemaApplied
from domain.schema import Cardinality, EdgeType, NodeType, OnDelete, PropertyDef, Schema, schema_from_dict, schema_to_dict
from domain.values import PropertyKind

from tests.unit.domain.samples import FOLLOWS, FRIEND, GROUP, MANAGES, MEMBER_OF, USER


def unused(kind: str, name: str) -> bool:
    return False


def used(kind: str, name: str) -> bool:
    return True


def test_apply_records_event_and_bumps_version(causation):
    s = Schema("g1")
    s.apply([USER], [], expected_version=0, type_in_use=unused, causation=causation)
    assert s.version == 1
    [event] = s.events
    assert isinstance(event, SchemaApplied)
    assert event.aggregate_version == 1 and event.request_id == "req-1"
    assert event.schema["node_types"][0]["name"] == "User"


def test_stale_expected_version_is_a_conflict(schema, causation):
    with pytest.raises(VersionConflict) as err:
        schema.apply([USER], [], expected_version=0, type_in_use=unused, causation=causation)
    assert err.value.reason == Reason.SCHEMA_VERSION_CONFLICT
    assert schema.version == 1 and not schema.events


def test_additive_change_is_accepted(schema, causation):
    user2 = replace(USER, properties=USER.properties + (PropertyDef("nick", PropertyKind.STRING),))
    schema.apply([user2, GROUP, NodeType("Doc")], [FOLLOWS, MEMBER_OF, MANAGES, FRIEND,
                                                    replace(FOLLOWS, name="blocks")],
                 expected_version=1, type_in_use=used, causation=causation)
    assert schema.version == 2 and "Doc" in schema.node_types


@pytest.mark.parametrize("change", [
    lambda: ([replace(USER, properties=USER.properties[:-1]), GROUP], [FOLLOWS, MEMBER_OF, MANAGES, FRIEND]),
    lambda: ([replace(USER, properties=USER.properties + (PropertyDef("x", PropertyKind.INT, required=True),)), GROUP],
             [FOLLOWS, MEMBER_OF, MANAGES, FRIEND]),
    lambda: ([replace(USER, properties=tuple(replace(p, unique=True) if p.name == "age" else p for p in USER.properties)),
              GROUP], [FOLLOWS, MEMBER_OF, MANAGES, FRIEND]),
    lambda: ([replace(USER, properties=tuple(replace(p, kind=PropertyKind.STRING) if p.name == "age" else p
                                             for p in USER.properties)), GROUP], [FOLLOWS, MEMBER_OF, MANAGES, FRIEND]),
    lambda: ([USER, GROUP], [replace(FOLLOWS, cardinality=Cardinality.ONE_TO_ONE), MEMBER_OF, MANAGES, FRIEND]),
    lambda: ([USER, GROUP], [replace(FOLLOWS, acyclic=True), MEMBER_OF, MANAGES, FRIEND]),
    lambda: ([USER, GROUP], [FOLLOWS, replace(MEMBER_OF, on_delete=OnDelete.RESTRICT), MANAGES, FRIEND]),
])
def test_stricter_change_is_refused(schema, causation, change):
    nodes, edges = change()
    with pytest.raises(RuleViolated) as err:
        schema.apply(nodes, edges, expected_version=1, type_in_use=unused, causation=causation)
    assert err.value.reason == Reason.SCHEMA_CHANGE_NOT_ADDITIVE
    assert err.value.violations
    assert schema.version == 1 and not schema.events


def test_removing_a_type_in_use_is_refused_but_unused_is_fine(schema, causation):
    with pytest.raises(RuleViolated) as err:
        schema.apply([USER, GROUP], [FOLLOWS, MEMBER_OF, MANAGES], expected_version=1, type_in_use=used,
                     causation=causation)
    assert err.value.reason == Reason.TYPE_IN_USE
    schema.apply([USER, GROUP], [FOLLOWS, MEMBER_OF, MANAGES], expected_version=1, type_in_use=unused,
                 causation=causation)
    assert "friend" not in schema.edge_types


@pytest.mark.parametrize("nodes,edges,field", [
    ([NodeType("bad name")], [], "schema.node_types[0].name"),
    ([USER, USER], [], "schema.node_types[1].name"),
    ([USER], [EdgeType("e", "User", "Nope")], "schema.edge_types[0].target_type"),
    ([USER, GROUP], [EdgeType("e", "User", "Group", symmetric=True)], "schema.edge_types[0].symmetric"),
    ([NodeType("T", (PropertyDef("Bad-Name", PropertyKind.INT),))], [], "schema.node_types[0].properties[0].name"),
    ([NodeType("T", projected=("ghost",))], [], "schema.node_types[0].projected"),
])
def test_invalid_declaration(causation, nodes, edges, field):
    s = Schema("g1")
    with pytest.raises(ValidationFailed) as err:
        s.apply(nodes, edges, expected_version=0, type_in_use=unused, causation=causation)
    assert err.value.reason == Reason.INVALID_SCHEMA
    assert field in [v.field for v in err.value.violations]


def test_dict_round_trip(schema):
    back = schema_from_dict(schema_to_dict(schema))
    assert back.node_types == schema.node_types and back.edge_types == schema.edge_types
    assert back.version == schema.version


def test_unknown_types_are_validation_errors(schema):
    with pytest.raises(ValidationFailed) as err:
        schema.node_type("Nope")
    assert err.value.reason == Reason.UNKNOWN_NODE_TYPE
    with pytest.raises(ValidationFailed) as err:
        schema.edge_type("nope")
    assert err.value.reason == Reason.UNKNOWN_EDGE_TYPE
