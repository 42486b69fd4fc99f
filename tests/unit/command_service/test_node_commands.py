"""CreateNode / UpdateNode / DeleteNode through the bus with in-memory fakes."""

import pytest

from command_service.app.commands.create_node import CreateNode
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.commands.update_node import UpdateNode
from domain.errors import AlreadyExists, NotFound, Reason, RuleViolated, ValidationFailed, VersionConflict
from domain.events import NodeCreated, NodeDeleted, NodeUpdated
from tests.command_samples import BORN, GRAPH, edge, group, user


async def events(store):
    """Every event of the fake's log, in the order written (``store.head()`` counts them)."""
    return [logged.event for logged in store.log]


async def test_create_node_returns_the_node_and_records_node_created(graph_app, store):
    before = await store.head()
    result = await graph_app.dispatch(user("alice", age=31, born=BORN, score=1.5, active=True, email="a@x"))
    assert result.node.id == "alice" and result.node.version == 1 and result.node.etag == '"1"'
    assert result.node.properties["born"] == BORN and result.consistency_token
    new = (await events(store))[before:]
    assert [type(e) for e in new] == [NodeCreated]
    assert new[0].properties["age"] == 31


async def test_create_node_generates_an_id_when_none_is_given(graph_app):
    result = await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", properties={"name": "x"}))
    assert result.node.id.startswith("id-")


async def test_create_node_in_a_graph_without_schema_is_not_found(app):
    with pytest.raises(NotFound) as err:
        await app.dispatch(user("alice"))
    assert err.value.reason == Reason.GRAPH_NOT_FOUND


async def test_create_node_with_a_taken_id_already_exists(graph_app):
    await graph_app.dispatch(user("alice"))
    with pytest.raises(AlreadyExists) as err:
        await graph_app.dispatch(user("alice"))
    assert err.value.reason == Reason.NODE_ALREADY_EXISTS


async def test_a_deleted_node_id_cannot_be_reused(graph_app):
    await graph_app.dispatch(user("alice"))
    await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id="alice"))
    with pytest.raises(AlreadyExists) as err:
        await graph_app.dispatch(user("alice"))
    assert err.value.reason == Reason.NODE_ALREADY_EXISTS


async def test_a_taken_id_is_already_exists_even_when_its_unique_value_is_taken_too(graph_app, store):
    await graph_app.dispatch(user("alice", email="a@x"))
    await graph_app.dispatch(user("bob", email="b@x"))
    head = await store.head()
    with pytest.raises(AlreadyExists) as err:
        await graph_app.dispatch(user("alice", email="b@x"))
    assert err.value.reason == Reason.NODE_ALREADY_EXISTS
    assert err.value.resource_name == f"graphs/{GRAPH}/nodes/alice"
    assert await store.head() == head


async def test_create_node_of_an_unknown_type_or_with_bad_properties_is_invalid(graph_app):
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(CreateNode(graph=GRAPH, type="Nope", node_id="x"))
    assert err.value.reason == Reason.UNKNOWN_NODE_TYPE
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(user("bob", age="old"))
    assert err.value.reason == Reason.INVALID_PROPERTY
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", node_id="x", properties={}))
    assert err.value.reason == Reason.INVALID_PROPERTY  # name is required


async def test_unique_values_are_claimed_and_released(graph_app):
    await graph_app.dispatch(user("alice", email="a@x"))
    with pytest.raises(RuleViolated) as err:
        await graph_app.dispatch(user("bob", email="a@x"))
    assert err.value.reason == Reason.UNIQUE_VIOLATED
    # a change releases the old value ...
    await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="alice", properties={"email": "new@x"}))
    await graph_app.dispatch(user("bob", email="a@x"))
    with pytest.raises(RuleViolated):
        await graph_app.dispatch(user("carol", email="new@x"))
    # ... and so does a deletion
    await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id="alice"))
    await graph_app.dispatch(user("carol", email="new@x"))


async def test_unique_values_of_different_kinds_do_not_collide(graph_app):
    await graph_app.dispatch(user("alice", badge=1))
    await graph_app.dispatch(CreateNode(graph=GRAPH, type="Badge", node_id="b1", properties={"code": "1"}))
    with pytest.raises(RuleViolated):
        await graph_app.dispatch(user("bob", badge=1))


async def test_update_node_applies_the_mask_and_bumps_the_etag(graph_app, store):
    await graph_app.dispatch(user("alice", age=30, email="a@x"))
    result = await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="alice", properties={"age": 31},
                                                 update_mask=("properties.age", "properties.email"), etag='"1"'))
    assert result.node.version == 2
    assert result.node.properties == {"name": "alice", "age": 31}
    assert isinstance((await events(store))[-1], NodeUpdated)


async def test_update_with_a_stale_etag_is_a_version_conflict_and_changes_nothing(graph_app, store):
    await graph_app.dispatch(user("alice", age=30))
    await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="alice", properties={"age": 31}, etag='"1"'))
    head = await store.head()
    with pytest.raises(VersionConflict) as err:
        await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="alice", properties={"age": 99}, etag='"1"'))
    assert err.value.reason == Reason.VERSION_CONFLICT
    assert await store.head() == head
    assert store.state.nodes[(GRAPH, "alice")].properties["age"] == 31


async def test_update_or_delete_of_a_missing_node_is_not_found(graph_app):
    with pytest.raises(NotFound) as err:
        await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="ghost", properties={"age": 1}))
    assert err.value.reason == Reason.NODE_NOT_FOUND
    with pytest.raises(NotFound):
        await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id="ghost"))


async def test_delete_with_a_stale_etag_is_a_version_conflict(graph_app):
    await graph_app.dispatch(user("alice"))
    await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="alice", properties={"age": 1}))
    with pytest.raises(VersionConflict):
        await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id="alice", etag='"1"'))


async def test_delete_is_restricted_by_restrict_edges_in_either_direction(graph_app, store):
    for n in ("a", "b"):
        await graph_app.dispatch(user(n))
    await graph_app.dispatch(edge("a", "follows", "b"))
    for victim in ("a", "b"):  # a is the source, b the target
        with pytest.raises(RuleViolated) as err:
            await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id=victim))
        assert err.value.reason == Reason.RESTRICT_VIOLATED
    assert not store.state.nodes[(GRAPH, "a")].deleted


async def test_delete_cascades_edges_mirrors_and_counters(graph_app, store):
    for n in ("a", "b", "c"):
        await graph_app.dispatch(user(n))
    await graph_app.dispatch(group("g"))
    await graph_app.dispatch(edge("a", "member_of", "g"))
    await graph_app.dispatch(edge("a", "friend", "b"))
    await graph_app.dispatch(edge("c", "manages", "a"))
    result = await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id="a"))
    assert result.removed_edges == 4 and not result.cascade_pending  # friend is stored twice
    assert store.state.edges == {}
    assert store.state.counters == {}
    kinds = [e.type for e in (await events(store))[-5:]]
    assert kinds.count("EdgeRemoved") == 4 and kinds[-1] in ("EdgeRemoved", "NodeDeleted")
    assert store.state.nodes[(GRAPH, "a")].deleted


async def test_delete_of_a_node_with_more_edges_than_a_transaction_holds_tombstones_and_cascades(graph_app, store):
    await graph_app.dispatch(user("hub"))
    for i in range(10):  # limit is 6 edges per transaction in these tests
        await graph_app.dispatch(user(f"u{i}"))
        await graph_app.dispatch(edge(f"u{i}", "manages", "hub"))
    result = await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id="hub"))
    assert result.cascade_pending and result.removed_edges == 0
    assert store.state.nodes[(GRAPH, "hub")].deleted
    assert len(store.state.edges) == 10
    # nothing can attach to the tombstone meanwhile
    with pytest.raises(RuleViolated) as err:
        await graph_app.dispatch(edge("u0", "follows", "hub"))
    assert err.value.reason == Reason.ENDPOINT_MISSING
    head = await store.head()
    await graph_app.cascade_worker.drain()
    assert store.state.edges == {} and store.state.counters == {} and store.state.cascades == {}
    removed = [e for e in (await events(store))[head:]]
    assert len(removed) == 10 and {e.type for e in removed} == {"EdgeRemoved"}
    assert {e.request_id for e in removed} == {next(iter(removed)).request_id}


async def test_node_deleted_event_is_recorded(graph_app, store):
    await graph_app.dispatch(user("alice"))
    await graph_app.dispatch(DeleteNode(graph=GRAPH, node_id="alice"))
    assert isinstance((await events(store))[-1], NodeDeleted)
