"""The write side on a real SQLite file: atomicity, outbox, races, background cascade."""

import asyncio

import pytest

from command_service.app.commands.batch_write import BatchWrite
from command_service.app.commands.create_node import CreateNode
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.common import TransactionLimits
from command_service.bootstrap import build_for_tests
from domain.edge import Direction
from domain.errors import Reason, RuleViolated
from domain.node import Node
from infrastructure.persistence.sqlite.event_log import SHARD
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from tests.command_samples import GRAPH, apply_sample_schema, edge, group, user
from tests.contract.suites.write_fixtures import causation

pytestmark = pytest.mark.integration

LIMITS = TransactionLimits(max_edges_per_transaction=10)
RID = "8d1b7c0e-3f5a-4c2e-9b6d-1a2b3c4d5e6f"


@pytest.fixture
async def store(tmp_path):
    store = await SqliteWriteStore.open(str(tmp_path / "edgewise.db"))
    yield store


@pytest.fixture
async def app(store):
    app = build_for_tests(store, limits=LIMITS, cascade_poll_interval=0.01)
    await app.dispatch(apply_sample_schema())
    yield app
    await app.close()


async def node_exists(store, node_id: str) -> bool:
    async with store.unit_of_work() as uow:
        return await uow.nodes.get(GRAPH, node_id) is not None


async def test_rollback_on_exception_leaves_nothing(app, store):
    head = await store.head()
    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as uow:
            schema = await uow.schemas.get(GRAPH)
            await uow.nodes.add(Node(graph=GRAPH, id="a", type="User", properties={"name": "a"}, version=1,
                                     create_time=schema.update_time, update_time=schema.update_time))
            await uow.nodes.claim_unique(GRAPH, "User", "email", "a@x", "a")
            raise RuntimeError("crash before commit")
    assert not await node_exists(store, "a")
    assert await store.head() == head
    await app.dispatch(user("b", email="a@x"))  # the claim was rolled back too


async def test_a_failing_batch_leaves_neither_state_nor_events(app, store):
    head = await store.head()
    with pytest.raises(RuleViolated) as err:
        await app.dispatch(BatchWrite(graph=GRAPH, operations=(
            user("a"), user("b"), edge("a", "manages", "b"), edge("b", "manages", "a"))))
    assert err.value.reason == Reason.CYCLE_DETECTED
    assert not await node_exists(store, "a") and not await node_exists(store, "b")
    assert await store.head() == head
    assert await store.event_log().read_after(SHARD, head, 10) == []


async def test_concurrent_many_to_one_edges_exactly_one_wins(app, store):
    await app.dispatch(BatchWrite(graph=GRAPH, operations=(user("a"),) + tuple(group(f"g{i}") for i in range(20))))
    outcomes = await asyncio.gather(*(app.dispatch(edge("a", "member_of", f"g{i}")) for i in range(20)),
                                    return_exceptions=True)
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    losses = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(o, RuleViolated) and o.reason == Reason.CARDINALITY_VIOLATED for o in losses)
    async with store.unit_of_work() as uow:
        assert len(await uow.edges.list_for_node(GRAPH, "a", Direction.OUT)) == 1


async def test_concurrent_opposite_acyclic_edges_exactly_one_wins(app, store):
    await app.dispatch(BatchWrite(graph=GRAPH, operations=(user("a"), user("b"))))
    for _ in range(5):
        outcomes = await asyncio.gather(app.dispatch(edge("a", "manages", "b")),
                                        app.dispatch(edge("b", "manages", "a")), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and errors[0].reason == Reason.CYCLE_DETECTED
        async with store.unit_of_work() as uow:
            edges = await uow.edges.list_for_node(GRAPH, "a", Direction.BOTH)
            for e in edges:
                e.remove(causation())
                await uow.edges.remove_many([e])
            await uow.commit()


async def test_a_large_cascade_is_tombstoned_then_removed_in_the_background(app, store):
    n = LIMITS.max_edges_per_transaction * 2 + 5
    await app.dispatch(BatchWrite(graph=GRAPH, operations=(user("hub"),) + tuple(user(f"u{i}") for i in range(n))))
    for start in range(0, n, 5):
        await app.dispatch(BatchWrite(graph=GRAPH, operations=tuple(
            edge(f"u{i}", "friend", "hub") for i in range(start, min(n, start + 5)))))
    app.start()
    result = await app.dispatch(DeleteNode(graph=GRAPH, node_id="hub"))
    assert result.cascade_pending
    with pytest.raises(RuleViolated):
        await app.dispatch(edge("u0", "friend", "hub"))

    async def remaining() -> int:
        async with store.unit_of_work() as uow:
            total = sum((await uow.edges.counts_for_node(GRAPH, "hub")).values())
            for i in range(n):
                total += sum((await uow.edges.counts_for_node(GRAPH, f"u{i}")).values())
            return total + (1 if await uow.cascades.next() else 0)

    for _ in range(500):  # bounded wait: ≤ 5 s
        if await remaining() == 0:
            break
        await asyncio.sleep(0.01)
    assert await remaining() == 0
    removed = [e for e in await store.event_log().read_after(SHARD, 0, 10_000) if e.event.type == "EdgeRemoved"]
    assert len(removed) == 2 * n  # every stored entry (each friendship is mirrored)


async def test_an_idempotent_retry_survives_a_restart_with_the_same_token(tmp_path):
    path = str(tmp_path / "restart.db")
    first_app = build_for_tests(await SqliteWriteStore.open(path))
    await first_app.dispatch(apply_sample_schema())
    command = CreateNode(graph=GRAPH, type="User", properties={"name": "A"}, request_id=RID)
    first = await first_app.dispatch(command)
    await first_app.close()
    second_app = build_for_tests(await SqliteWriteStore.open(path))
    try:
        again = await second_app.dispatch(command)
    finally:
        await second_app.close()
    assert again == first and again.consistency_token == first.consistency_token
