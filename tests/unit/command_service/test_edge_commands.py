"""AddEdge / RemoveEdge rules through the bus with in-memory fakes."""

import pytest

from command_service.app.commands.delete_node import DeleteNode
from command_service.app.commands.remove_edge import RemoveEdge
from domain.errors import AlreadyExists, NotFound, Reason, RuleViolated, ValidationFailed
from domain.values import EdgeKey
from tests.command_samples import BORN, GRAPH, edge, group, user


@pytest.fixture
async def people(graph_app):
    for n in ("a", "b", "c"):
        await graph_app.dispatch(user(n))
    for g in ("g1", "g2"):
        await graph_app.dispatch(group(g))
    return graph_app


def counters(store, node, edge_type):
    return (store.state.counters.get((GRAPH, node, edge_type, "OUT"), 0),
            store.state.counters.get((GRAPH, node, edge_type, "IN"), 0))


async def test_add_edge_stores_it_with_counters_and_properties(people, store):
    result = await people.dispatch(edge("a", "follows", "b", since=BORN))
    assert result.edge.properties["since"] == BORN and result.consistency_token
    assert EdgeKey(GRAPH, "a", "follows", "b") in store.state.edges
    assert counters(store, "a", "follows") == (1, 0) and counters(store, "b", "follows") == (0, 1)
    assert store.log[-1].event.type == "EdgeAdded"


@pytest.mark.parametrize("source,target", [("ghost", "b"), ("a", "ghost")])
async def test_missing_endpoints_are_refused(people, source, target):
    with pytest.raises(RuleViolated) as err:
        await people.dispatch(edge(source, "follows", target))
    assert err.value.reason == Reason.ENDPOINT_MISSING


async def test_deleted_endpoints_are_refused(people):
    await people.dispatch(DeleteNode(graph=GRAPH, node_id="c"))
    with pytest.raises(RuleViolated) as err:
        await people.dispatch(edge("a", "follows", "c"))
    assert err.value.reason == Reason.ENDPOINT_MISSING


async def test_endpoints_of_the_wrong_type_are_refused(people):
    with pytest.raises(RuleViolated) as err:
        await people.dispatch(edge("a", "member_of", "b"))
    assert err.value.reason == Reason.ENDPOINT_TYPE_MISMATCH
    with pytest.raises(RuleViolated) as err:
        await people.dispatch(edge("g1", "follows", "a"))
    assert err.value.reason == Reason.ENDPOINT_TYPE_MISMATCH


async def test_unknown_edge_type_or_property_is_invalid(people):
    with pytest.raises(ValidationFailed) as err:
        await people.dispatch(edge("a", "likes", "b"))
    assert err.value.reason == Reason.UNKNOWN_EDGE_TYPE
    with pytest.raises(ValidationFailed) as err:
        await people.dispatch(edge("a", "follows", "b", nope=1))
    assert err.value.reason == Reason.INVALID_PROPERTY


async def test_many_to_one_caps_the_source(people):
    await people.dispatch(edge("a", "member_of", "g1"))
    with pytest.raises(RuleViolated) as err:
        await people.dispatch(edge("a", "member_of", "g2"))
    assert err.value.reason == Reason.CARDINALITY_VIOLATED
    await people.dispatch(edge("b", "member_of", "g1"))  # the target is uncapped


async def test_one_to_many_caps_the_target(people):
    await people.dispatch(edge("a", "owns", "g1"))
    await people.dispatch(edge("a", "owns", "g2"))  # the source is uncapped
    with pytest.raises(RuleViolated) as err:
        await people.dispatch(edge("b", "owns", "g1"))
    assert err.value.reason == Reason.CARDINALITY_VIOLATED


async def test_symmetric_one_to_one_caps_both_ends_in_both_directions(people):
    await people.dispatch(edge("a", "spouse", "b"))
    for s, t in (("c", "a"), ("a", "c"), ("b", "c"), ("c", "b")):
        with pytest.raises(RuleViolated) as err:
            await people.dispatch(edge(s, "spouse", t))
        assert err.value.reason == Reason.CARDINALITY_VIOLATED


async def test_acyclic_types_refuse_cycles_and_self_loops(people):
    await people.dispatch(edge("a", "manages", "b"))
    await people.dispatch(edge("b", "manages", "c"))
    for s, t in (("c", "a"), ("b", "a"), ("a", "a")):
        with pytest.raises(RuleViolated) as err:
            await people.dispatch(edge(s, "manages", t))
        assert err.value.reason == Reason.CYCLE_DETECTED
    await people.dispatch(edge("a", "manages", "c"))  # a diamond is not a cycle


async def test_symmetric_edges_are_stored_and_removed_in_both_directions(people, store):
    await people.dispatch(edge("a", "friend", "b"))
    assert {EdgeKey(GRAPH, "a", "friend", "b"), EdgeKey(GRAPH, "b", "friend", "a")} == set(store.state.edges)
    assert counters(store, "a", "friend") == (1, 1) and counters(store, "b", "friend") == (1, 1)
    assert [e.event.type for e in store.log[-2:]] == ["EdgeAdded", "EdgeAdded"]
    result = await people.dispatch(RemoveEdge(graph=GRAPH, source="b", type="friend", target="a"))
    assert result.removed_edges == 2 and store.state.edges == {} and store.state.counters == {}
    assert [e.event.type for e in store.log[-2:]] == ["EdgeRemoved", "EdgeRemoved"]


async def test_a_symmetric_self_loop_is_stored_once(people, store):
    await people.dispatch(edge("a", "friend", "a"))
    assert set(store.state.edges) == {EdgeKey(GRAPH, "a", "friend", "a")}
    result = await people.dispatch(DeleteNode(graph=GRAPH, node_id="a"))
    assert result.removed_edges == 1 and store.state.counters == {}


async def test_adding_an_existing_edge_already_exists(people, store):
    await people.dispatch(edge("a", "follows", "b", since=BORN))
    head = await store.head()
    for props in ({"since": BORN}, {}):
        with pytest.raises(AlreadyExists) as err:
            await people.dispatch(edge("a", "follows", "b", **props))
        assert err.value.reason == Reason.EDGE_ALREADY_EXISTS
    assert await store.head() == head


async def test_removing_a_missing_edge_is_not_found(people):
    with pytest.raises(NotFound) as err:
        await people.dispatch(RemoveEdge(graph=GRAPH, source="a", type="follows", target="b"))
    assert err.value.reason == Reason.EDGE_NOT_FOUND


async def test_remove_edge_decrements_counters(people, store):
    await people.dispatch(edge("a", "follows", "b"))
    await people.dispatch(edge("a", "follows", "c"))
    await people.dispatch(RemoveEdge(graph=GRAPH, source="a", type="follows", target="b"))
    assert counters(store, "a", "follows") == (1, 0) and counters(store, "b", "follows") == (0, 0)
