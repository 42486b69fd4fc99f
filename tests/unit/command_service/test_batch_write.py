"""BatchWrite: atomic, ordered, bounded; reuses the single-operation logic."""

import pytest

from command_service.app.commands.batch_write import BatchWrite
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.commands.remove_edge import RemoveEdge
from command_service.app.commands.update_node import UpdateNode
from domain.errors import Reason, RuleViolated, ValidationFailed
from tests.command_samples import GRAPH, edge, group, user

RID = "0b6a3a36-8e0e-4a53-a6f7-3f1f5a1e2c33"


async def test_a_batch_applies_every_operation_in_order(graph_app, store):
    result = await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=(
        user("a"), user("b"), group("g"), edge("a", "follows", "b"), edge("a", "member_of", "g"),
        UpdateNode(graph=GRAPH, node_id="b", properties={"age": 5}),
        RemoveEdge(graph=GRAPH, source="a", type="follows", target="b"),
    )))
    assert [type(r).__name__ for r in result.results] == [
        "CreateNodeResult", "CreateNodeResult", "CreateNodeResult", "AddEdgeResult", "AddEdgeResult",
        "UpdateNodeResult", "RemoveEdgeResult"]
    assert result.results[5].node.version == 2
    assert set(store.state.nodes) == {(GRAPH, "a"), (GRAPH, "b"), (GRAPH, "g")}
    assert len(store.state.edges) == 1
    assert [e.event.type for e in store.log[-7:]] == [
        "NodeCreated", "NodeCreated", "NodeCreated", "EdgeAdded", "EdgeAdded", "NodeUpdated", "EdgeRemoved"]


async def test_a_failing_operation_rolls_back_the_whole_batch(graph_app, store):
    head = await store.head()
    with pytest.raises(RuleViolated) as err:
        await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=(
            user("a"), group("g1"), group("g2"), edge("a", "member_of", "g1"), edge("a", "member_of", "g2"))))
    assert err.value.reason == Reason.CARDINALITY_VIOLATED
    assert err.value.metadata["operation_index"] == "4"
    assert store.state.nodes == {} and store.state.edges == {} and await store.head() == head


async def test_more_than_100_operations_is_batch_too_large(graph_app):
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=tuple(user(f"u{i}") for i in range(101))))
    assert err.value.reason == Reason.BATCH_TOO_LARGE


async def test_an_empty_batch_or_one_for_another_graph_is_invalid(graph_app):
    with pytest.raises(ValidationFailed):
        await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=()))
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=(user("a", graph="other"),)))
    assert err.value.violations[0].field == "operations[0]"


async def test_a_batch_whose_mirrors_expand_past_the_limit_is_refused_not_split(graph_app, store):
    # the limit in these tests is 6 edge writes; 4 symmetric edges need 8
    people = tuple(user(f"u{i}") for i in range(5))
    friendships = tuple(edge("u0", "friend", f"u{i}") for i in range(1, 5))
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=people + friendships))
    assert err.value.reason == Reason.BATCH_TOO_LARGE
    assert store.state.nodes == {}
    await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=people + friendships[:3]))  # 6 fits


async def test_a_batch_delete_whose_cascade_does_not_fit_is_refused(graph_app, store):
    await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=(user("hub"),) + tuple(
        user(f"u{i}") for i in range(7))))
    for i in range(7):
        await graph_app.dispatch(edge(f"u{i}", "manages", "hub"))
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=(DeleteNode(graph=GRAPH, node_id="hub"),)))
    assert err.value.reason == Reason.BATCH_TOO_LARGE
    assert not store.state.nodes[(GRAPH, "hub")].deleted and store.state.cascades == {}


async def test_a_batch_delete_cascades_inline_when_it_fits(graph_app, store):
    await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=(
        user("a"), user("b"), edge("a", "friend", "b"), DeleteNode(graph=GRAPH, node_id="b"))))
    assert store.state.edges == {} and store.state.counters == {}


async def test_a_batch_is_idempotent_as_a_whole(graph_app, store):
    ops = (user("a"), user("b"), edge("a", "follows", "b"))
    first = await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=ops, request_id=RID))
    head = await store.head()
    again = await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=ops, request_id=RID))
    assert again == first and await store.head() == head


async def test_a_bad_operation_names_its_field_inside_the_batch(graph_app, store):
    head = await store.head()
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(BatchWrite(graph=GRAPH, operations=(
            user("a"), UpdateNode(graph=GRAPH, node_id="a", properties={"age": "old"}))))
    assert err.value.metadata["operation_index"] == "1"
    assert [v.field for v in err.value.violations] == ["operations[1].update_node.node.properties['age']"]
    assert store.state.nodes == {} and await store.head() == head
