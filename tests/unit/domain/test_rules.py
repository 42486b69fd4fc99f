import pytest

from domain.edge import Edge
from domain.errors import Reason, RuleViolated
from domain.events import EdgeAdded, EdgeRemoved, event_from_dict, event_to_dict
from domain.node import Node
from domain.rules import (CardinalityRespected, CycleCheckWithinBound, EndpointExists, EndpointHasType, NoCycle,
                          NoRestrictingEdges, UniqueValueFree, check_rule, needs_mirror)
from domain.schema import Cardinality
from dataclasses import replace

from tests.unit.domain.samples import FOLLOWS, FRIEND, MANAGES, MEMBER_OF


def user(schema, causation, node_id="u1", deleted=False):
    n = Node.create(graph="g1", node_id=node_id, type_name="User", properties={"name": node_id}, schema=schema,
                    causation=causation)
    n.deleted = deleted
    return n


def broken(rule) -> str:
    with pytest.raises(RuleViolated) as err:
        check_rule(rule)
    assert err.value.violations[0].type == err.value.reason
    assert err.value.metadata["rule"] == type(rule).__name__
    return err.value.reason


def test_endpoint_exists(schema, causation):
    check_rule(EndpointExists("source", "graphs/g1/nodes/u1", user(schema, causation)))
    assert broken(EndpointExists("source", "graphs/g1/nodes/u9", None)) == Reason.ENDPOINT_MISSING
    assert broken(EndpointExists("target", "x", user(schema, causation, deleted=True))) == Reason.ENDPOINT_MISSING


def test_endpoint_type(schema, causation):
    check_rule(EndpointHasType("source", user(schema, causation), MEMBER_OF))
    assert broken(EndpointHasType("target", user(schema, causation), MEMBER_OF)) == Reason.ENDPOINT_TYPE_MISMATCH


@pytest.mark.parametrize("cardinality,direction,existing,ok", [
    (Cardinality.MANY_TO_MANY, "OUT", 5, True),
    (Cardinality.MANY_TO_ONE, "OUT", 0, True),
    (Cardinality.MANY_TO_ONE, "OUT", 1, False),
    (Cardinality.MANY_TO_ONE, "IN", 9, True),
    (Cardinality.ONE_TO_MANY, "IN", 1, False),
    (Cardinality.ONE_TO_MANY, "OUT", 9, True),
    (Cardinality.ONE_TO_ONE, "OUT", 1, False),
    (Cardinality.ONE_TO_ONE, "IN", 1, False),
])
def test_cardinality(cardinality, direction, existing, ok):
    rule = CardinalityRespected(replace(FOLLOWS, cardinality=cardinality), "n", direction, existing)
    if ok:
        check_rule(rule)
    else:
        assert broken(rule) == Reason.CARDINALITY_VIOLATED


def test_no_cycle():
    check_rule(NoCycle(FOLLOWS, "a", "b", target_reaches_source=True))  # not acyclic: fine
    check_rule(NoCycle(MANAGES, "a", "b", target_reaches_source=False))
    assert broken(NoCycle(MANAGES, "a", "b", target_reaches_source=True)) == Reason.CYCLE_DETECTED


def test_cycle_check_within_bound():
    check_rule(CycleCheckWithinBound("manages", visited=100, max_visited=100))
    assert broken(CycleCheckWithinBound("manages", visited=101, max_visited=100)) == Reason.CYCLE_CHECK_TOO_LARGE


def test_unique_value_free():
    check_rule(UniqueValueFree("User", "email", "a@b", holder_id=None, claimant_id="u1"))
    check_rule(UniqueValueFree("User", "email", "a@b", holder_id="u1", claimant_id="u1"))
    assert broken(UniqueValueFree("User", "email", "a@b", holder_id="u2", claimant_id="u1")) == Reason.UNIQUE_VIOLATED


def test_restrict():
    check_rule(NoRestrictingEdges("n", MEMBER_OF, 3))  # CASCADE
    check_rule(NoRestrictingEdges("n", FOLLOWS, 0))
    assert broken(NoRestrictingEdges("n", FOLLOWS, 1)) == Reason.RESTRICT_VIOLATED


def test_edge_events_and_mirror(schema, causation):
    edge = Edge.create(graph="g1", source="a", type_name="friend", target="b", properties={}, schema=schema,
                       causation=causation)
    assert needs_mirror(FRIEND) and not needs_mirror(FOLLOWS)
    mirror = edge.mirror(causation)
    assert (mirror.source, mirror.target) == ("b", "a")
    assert isinstance(mirror.events[0], EdgeAdded) and mirror.events[0].aggregate_id == "b/friend/a"
    edge.remove(causation)
    assert isinstance(edge.events[-1], EdgeRemoved)
    for e in edge.events + mirror.events:
        assert event_from_dict(event_to_dict(e)) == e
