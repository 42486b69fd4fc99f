"""ADR 0006: the write side's process-wide node cache. Nodes it holds are not read
again; it learns a transaction's nodes only once that transaction has committed, so
a rolled-back write leaves it as the store is."""

import pytest

from command_service.app.commands.batch_write import BatchWrite
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.commands.update_node import UpdateNode
from command_service.bootstrap import build_for_tests
from domain.errors import AlreadyExists, RuleViolated
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from tests.command_samples import GRAPH, apply_sample_schema, edge, user, seeded_write_app

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(tmp_path):
    return await SqliteWriteStore.open(str(tmp_path / "edgewise.db"))


@pytest.fixture
async def app(store):
    app = await seeded_write_app(store, 10)
    yield app
    await app.close()


async def traced(store, app, command) -> list[str]:
    statements: list[str] = []
    await store.trace_statements(statements.append)
    try:
        await app.dispatch(command)
    finally:
        await store.trace_statements(None)
    return statements


def reads_nodes(statements: list[str]) -> bool:
    return any("JOIN nodes" in s or "FROM nodes" in s for s in statements)


async def test_committed_nodes_are_not_read_again(app, store):
    statements = await traced(store, app, BatchWrite(graph=GRAPH, operations=tuple(
        edge("u0", "follows", f"u{i}") for i in range(1, 10))))
    assert not reads_nodes(statements)
    assert store.node_cache.get((GRAPH, "u0")).version == 1


async def test_an_update_and_a_delete_reach_the_cache_at_commit(app, store):
    await app.dispatch(UpdateNode(graph=GRAPH, node_id="u1", properties={"name": "renamed"}))
    snap = store.node_cache.get((GRAPH, "u1"))
    assert (snap.properties["name"], snap.version) == ("renamed", 2)
    await app.dispatch(DeleteNode(graph=GRAPH, node_id="u2"))
    with pytest.raises(RuleViolated):  # the cache knows u2 is a tombstone
        await app.dispatch(edge("u0", "follows", "u2"))


async def test_a_rolled_back_batch_leaves_the_cache_as_the_store_is(app, store):
    before = store.node_cache.get((GRAPH, "u3"))
    with pytest.raises(AlreadyExists):  # the update and delete are rolled back with the batch
        await app.dispatch(BatchWrite(graph=GRAPH, operations=(
            UpdateNode(graph=GRAPH, node_id="u3", properties={"name": "never"}),
            DeleteNode(graph=GRAPH, node_id="u4"),
            user("new-1"), user("new-1"))))
    assert store.node_cache.get((GRAPH, "u3")) == before
    assert store.node_cache.get((GRAPH, "new-1")) is None
    await app.dispatch(edge("u3", "follows", "u4"))  # u4 is alive
    async with store.unit_of_work() as uow:
        assert (await uow.nodes.get(GRAPH, "u3")).properties["name"] == "u3"
        assert await uow.nodes.get(GRAPH, "new-1") is None


async def test_the_cache_is_bounded_and_a_miss_reads_the_row(tmp_path):
    from infrastructure.persistence.sqlite.connection import SqliteConnection
    from infrastructure.persistence.sqlite.write_schema import DDL

    conn = await SqliteConnection(str(tmp_path / "small.db")).open()
    await conn.execute_script(DDL)
    store = SqliteWriteStore(conn, node_cache_capacity=4)
    app = build_for_tests(store)
    try:
        await app.dispatch(apply_sample_schema())
        await app.dispatch(BatchWrite(graph=GRAPH, operations=tuple(user(f"u{i}") for i in range(10))))
        assert len(store.node_cache) == 4 and store.node_cache.get((GRAPH, "u0")) is None
        statements = await traced(store, app, edge("u0", "follows", "u9"))
        assert reads_nodes(statements)  # u0 was evicted: read from the store
    finally:
        await app.close()


async def test_a_batch_sees_its_own_changes_to_cached_nodes_and_the_cache_copy_is_not_changed(app, store):
    cached = store.node_cache.get((GRAPH, "u5"))
    with pytest.raises(RuleViolated) as err:  # deleted earlier in the same batch: the edge is refused
        await app.dispatch(BatchWrite(graph=GRAPH, operations=(
            DeleteNode(graph=GRAPH, node_id="u5"), edge("u0", "follows", "u5"))))
    assert err.value.metadata["operation_index"] == "1"
    assert store.node_cache.get((GRAPH, "u5")) is cached and not cached.deleted and cached.version == 1
    await app.dispatch(BatchWrite(graph=GRAPH, operations=(
        edge("u0", "follows", "u5"), UpdateNode(graph=GRAPH, node_id="u5", properties={"name": "five"}))))
    assert cached.properties["name"] == "u5"  # the shared copy was never changed in place
    assert store.node_cache.get((GRAPH, "u5")).properties["name"] == "five"
