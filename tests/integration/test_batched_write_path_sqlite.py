"""ADR 0006: a BatchWrite costs a bounded number of SQL statements and writer round trips,
whatever its size, and the batched path keeps every rule and error of the per-op one."""

from datetime import datetime, timezone

import pytest

from command_service.app.commands.add_edge import AddEdge
from command_service.app.commands.batch_write import BatchWrite
from command_service.app.commands.create_node import CreateNode
from command_service.app.commands.remove_edge import RemoveEdge
from command_service.app.commands.update_node import UpdateNode
from domain.edge import Direction
from domain.errors import AlreadyExists, Reason, RuleViolated
from infrastructure.persistence.sqlite.event_log import SHARD
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from tests.command_samples import GRAPH, edge, group, user, seeded_write_app

pytestmark = pytest.mark.integration

NODES = 300


@pytest.fixture
async def store(tmp_path):
    return await SqliteWriteStore.open(str(tmp_path / "edgewise.db"))


@pytest.fixture
async def app(store):
    app = await seeded_write_app(store, NODES, email="{}@example.com")
    yield app
    await app.close()


def rid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


async def measure(store, app, command) -> tuple[int, int]:
    """(SQL statements, writer round trips) one dispatch costs."""
    statements: list[str] = []
    await store.trace_statements(statements.append)
    hops = store.round_trips
    await app.dispatch(command)
    hops = store.round_trips - hops
    await store.trace_statements(None)
    return len(statements), hops


def follows(pairs, request_id: str = "") -> BatchWrite:
    return BatchWrite(graph=GRAPH, request_id=request_id,
                      operations=tuple(edge(f"u{a}", "follows", f"u{b}") for a, b in pairs))


async def test_statements_and_round_trips_of_an_edge_batch_do_not_grow_with_its_size(app, store):
    small = await measure(store, app, follows([(0, i) for i in range(1, 11)], rid(1)))
    large = await measure(store, app, follows([(1, i) for i in range(2, 102)], rid(2)))
    assert small == large
    statements, hops = large
    # BEGIN, idempotency record, schema, prefetch (nodes, edge keys), then edges, counters,
    # events, idempotency record and COMMIT: ten statements in five hops
    assert statements <= 10 and hops <= 5, large


async def test_a_node_batch_with_unique_values_is_bounded_too(app, store):
    small = await measure(store, app, BatchWrite(graph=GRAPH, request_id=rid(3), operations=tuple(
        user(f"n{i}", email=f"n{i}@example.com") for i in range(10))))
    large = await measure(store, app, BatchWrite(graph=GRAPH, request_id=rid(4), operations=tuple(
        user(f"m{i}", email=f"m{i}@example.com") for i in range(100))))
    assert small == large and large[0] <= 10 and large[1] <= 5, large


async def test_capped_cardinality_and_symmetric_types_are_prefetched_as_well(app, store):
    # member_of is MANY_TO_ONE (counters read), friend symmetric (mirror keys read)
    await app.dispatch(BatchWrite(graph=GRAPH, operations=tuple(group(f"g{i}") for i in range(50))))
    small = await measure(store, app, BatchWrite(graph=GRAPH, operations=tuple(
        op for i in range(5) for op in (edge(f"u{i}", "member_of", f"g{i}"), edge(f"u{i}", "friend", f"u{i + 100}")))))
    large = await measure(store, app, BatchWrite(graph=GRAPH, operations=tuple(
        op for i in range(10, 35) for op in (edge(f"u{i}", "member_of", f"g{i}"),
                                             edge(f"u{i}", "friend", f"u{i + 100}")))))
    assert small == large, (small, large)


async def test_rules_see_the_batch_own_buffered_writes(app, store):
    # a cycle closed inside one batch, a cardinality slot taken inside one batch,
    # a key added twice: each refused with its operation index, nothing kept
    head = await store.head()
    for ops, reason, index in (
        ((edge("u1", "manages", "u2"), edge("u2", "manages", "u3"), edge("u3", "manages", "u1")),
         Reason.CYCLE_DETECTED, "2"),
        ((edge("u1", "spouse", "u2"), edge("u3", "spouse", "u2")), Reason.CARDINALITY_VIOLATED, "1"),
        ((edge("u1", "follows", "u2"), edge("u1", "follows", "u2")), Reason.EDGE_ALREADY_EXISTS, "1"),
        ((user("x1", email="dup@example.com"), user("x2", email="dup@example.com")), Reason.UNIQUE_VIOLATED, "1"),
        ((user("x1"), user("x1")), Reason.NODE_ALREADY_EXISTS, "1"),
    ):
        with pytest.raises((RuleViolated, AlreadyExists)) as err:
            await app.dispatch(BatchWrite(graph=GRAPH, operations=ops))
        assert (err.value.reason, err.value.metadata["operation_index"]) == (reason, index)
    assert await store.head() == head
    async with store.unit_of_work() as uow:
        assert await uow.edges.count(GRAPH, "u2", "spouse", Direction.IN) == 0
        assert await uow.nodes.get(GRAPH, "x1") is None


async def test_add_remove_and_re_add_in_one_batch_ends_as_sequential_ops_would(app, store):
    await app.dispatch(BatchWrite(graph=GRAPH, operations=(
        edge("u1", "follows", "u2"), RemoveEdge(graph=GRAPH, source="u1", type="follows", target="u2"),
        AddEdge(graph=GRAPH, source="u1", type="follows", target="u2"),
        edge("u1", "friend", "u3"), RemoveEdge(graph=GRAPH, source="u3", type="friend", target="u1"),
        UpdateNode(graph=GRAPH, node_id="u1", properties={"email": "new@example.com"}),
        CreateNode(graph=GRAPH, type="User", node_id="u-old-email", properties={"name": "o",
                                                                                 "email": "u1@example.com"}),
    )))
    async with store.unit_of_work() as uow:
        assert await uow.edges.count(GRAPH, "u1", "follows", Direction.OUT) == 1
        assert await uow.edges.count(GRAPH, "u2", "follows", Direction.IN) == 1
        assert await uow.edges.counts_for_node(GRAPH, "u3") == {}
        assert [e.target for e in await uow.edges.list_for_node(GRAPH, "u1", Direction.OUT)] == ["u2"]
        assert await uow.nodes.unique_holder(GRAPH, "User", "email", "new@example.com") == "u1"
        assert await uow.nodes.unique_holder(GRAPH, "User", "email", "u1@example.com") == "u-old-email"
        assert (await uow.nodes.get(GRAPH, "u1")).version == 2


async def test_event_payloads_leave_out_the_columns_and_full_legacy_payloads_still_read(app, store, tmp_path):
    import json
    import sqlite3

    from domain.events import EdgeAdded, event_to_dict

    await app.dispatch(follows([(5, 6)]))
    path = str(tmp_path / "edgewise.db")
    with sqlite3.connect(path) as conn:
        payload, = conn.execute("SELECT payload FROM event_log ORDER BY position DESC LIMIT 1").fetchone()
        assert json.loads(payload) == {}  # no request id, no properties: all in the columns
        legacy = EdgeAdded(event_id="legacy-1", graph=GRAPH, aggregate_id="u7/follows/u8", aggregate_version=1,
                           occurred_at=(at := datetime.now(timezone.utc)), request_id="r", source="u7",
                           edge_type="follows", target="u8", properties={"since": at}, create_time=at)
        conn.execute("INSERT INTO event_log (event_id, graph, event_type, aggregate_id, aggregate_version, "
                     "occurred_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     ("legacy-1", GRAPH, "EdgeAdded", "u7/follows/u8", 1, at.isoformat(),
                      json.dumps(event_to_dict(legacy))))
    logged = await store.event_log().read_after(SHARD, await store.head() - 2, 10)
    assert logged[0].event.aggregate_id == "u5/follows/u6" and logged[0].event.event_id
    assert logged[-1].event == legacy


async def test_the_counter_upsert_repeats_its_text_across_batch_sizes_and_counts_stay_exact(app, store):
    # padded with "+0" repeats to a multiple of 32 rows, so SQLite's statement cache serves it
    upserts = []
    for n, (source, size) in enumerate(((20, 5), (21, 7), (22, 11))):
        statements: list[str] = []
        await store.trace_statements(statements.append)
        await app.dispatch(follows([(source, 100 + i) for i in range(size)], rid(50 + n)))
        await store.trace_statements(None)
        upserts += [s for s in statements if s.startswith("INSERT INTO edge_counters")]
    assert len(upserts) == 3 and len({u.split(" VALUES ")[0] + str(u.count("(")) for u in upserts}) == 1
    async with store.unit_of_work() as uow:
        assert [await uow.edges.count(GRAPH, f"u{s}", "follows", Direction.OUT) for s in (20, 21, 22)] == [5, 7, 11]
        assert await uow.edges.count(GRAPH, "u100", "follows", Direction.IN) == 3
