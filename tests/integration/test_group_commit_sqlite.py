"""ADR 0006: group commit. Units of work that queue behind one another share one SQLite
transaction (each a SAVEPOINT) and one COMMIT; each is acknowledged only after that
COMMIT, a failing one changes nothing and does not affect the others, and a COMMIT
that fails acknowledges nobody."""

import asyncio
import sqlite3

import pytest

from command_service.app.commands.batch_write import BatchWrite
from domain.errors import DomainError, Reason, RuleViolated
from infrastructure.persistence.sqlite.event_log import SHARD
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from tests.command_samples import GRAPH, edge, seeded_write_app

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(tmp_path):
    return await SqliteWriteStore.open(str(tmp_path / "edgewise.db"))


@pytest.fixture
async def app(store):
    app = await seeded_write_app(store, 100)
    yield app
    await app.close()


def rid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def follows(source: int, targets, request_id: str = "") -> BatchWrite:
    return BatchWrite(graph=GRAPH, request_id=request_id,
                      operations=tuple(edge(f"u{source}", "follows", f"u{t}") for t in targets))


def failing_after_a_flush() -> BatchWrite:
    # the acyclic check writes the batch's buffered edges first (inside its savepoint),
    # then the cycle is refused: the follows edge was already in the transaction
    return BatchWrite(graph=GRAPH, request_id=rid(99), operations=(
        edge("u90", "follows", "u91"), edge("u90", "manages", "u91"), edge("u91", "manages", "u90")))


def stored_edges(tmp_path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(str(tmp_path / "edgewise.db")) as conn:
        return set(conn.execute("SELECT source, type, target FROM edges").fetchall())


async def dispatch_all(app, commands, acks=None):
    async def one(i, command):
        try:
            return await app.dispatch(command)
        finally:
            if acks is not None:
                acks.append(f"ack {i}")

    return await asyncio.gather(*(one(i, c) for i, c in enumerate(commands)), return_exceptions=True)


async def test_concurrent_batches_share_one_commit_and_are_acknowledged_after_it(app, store, tmp_path):
    trace: list[str] = []
    await store.trace_statements(trace.append)
    hops = store.round_trips
    results = await dispatch_all(app, [follows(i, range(i + 1, i + 51), rid(i)) for i in range(4)], trace)
    hops = store.round_trips - hops
    await store.trace_statements(None)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert [s for s in trace if s == "COMMIT"] == ["COMMIT"]
    assert trace.index("COMMIT") < min(trace.index(f"ack {i}") for i in range(4))
    assert store.groups_committed == 1
    assert hops <= 4 * 5  # no hop more than four lone batches (the last one commits for all)
    assert len(stored_edges(tmp_path)) == 200
    assert len({r.consistency_token for r in results}) == 4


async def test_a_failing_batch_in_a_group_changes_nothing_and_the_others_commit(app, store, tmp_path):
    head = await store.head()
    commands = [follows(0, range(1, 11), rid(1)), failing_after_a_flush(), follows(1, range(2, 12), rid(2)),
                follows(2, range(3, 13), rid(3))]
    trace: list[str] = []
    await store.trace_statements(trace.append)
    results = await dispatch_all(app, commands)
    await store.trace_statements(None)
    assert isinstance(results[1], RuleViolated) and results[1].reason == Reason.CYCLE_DETECTED
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 1), results
    assert trace.count("COMMIT") == 1 and any(s.startswith("ROLLBACK TO") for s in trace)
    edges = stored_edges(tmp_path)
    assert len(edges) == 30 and not {e for e in edges if e[0] == "u90"}
    events = await store.event_log().read_after(SHARD, head, 1000)
    assert len(events) == 30 and all(e.event.request_id != rid(99) for e in events)
    # the failed batch left no idempotency record: a retry runs it again
    retry = await app.dispatch(BatchWrite(graph=GRAPH, request_id=rid(99), operations=(
        edge("u90", "follows", "u91"),)))
    assert len(retry.results) == 1


async def test_a_failed_commit_acknowledges_nobody_and_writes_nothing(app, store, tmp_path):
    head = await store.head()
    cached = store.node_cache.get((GRAPH, "u0"))

    def deny_commit(action, *args):
        return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_TRANSACTION and args[0] == "COMMIT" \
            else sqlite3.SQLITE_OK

    await store._db.run(lambda c: c.set_authorizer(deny_commit))
    commands = [follows(i, range(i + 1, i + 11), rid(i)) for i in range(4)]
    results = await dispatch_all(app, commands)
    await store._db.run(lambda c: c.set_authorizer(None))
    assert all(isinstance(r, DomainError) for r in results), results
    assert stored_edges(tmp_path) == set()
    assert await store.head() == head
    assert store.node_cache.get((GRAPH, "u0")) in (cached, None)
    # nothing was acknowledged, so the same requests simply run again
    again = await dispatch_all(app, commands)
    assert not [r for r in again if isinstance(r, BaseException)], again
    assert len(stored_edges(tmp_path)) == 40


async def test_a_lone_batch_still_commits_by_itself(app, store):
    trace: list[str] = []
    await store.trace_statements(trace.append)
    await app.dispatch(follows(5, range(6, 16), rid(5)))
    await store.trace_statements(None)
    assert trace[0] == "BEGIN IMMEDIATE" and trace[-1] == "COMMIT"
    assert not [s for s in trace if "SAVEPOINT" in s or s.startswith("RELEASE")]
    assert store.groups_committed == 0


async def test_a_group_whose_last_member_writes_nothing_is_committed_by_its_closer(app, store, tmp_path):
    from domain.errors import ValidationFailed

    trace: list[str] = []
    await store.trace_statements(trace.append)
    await store._lock.acquire()  # hold the writer so that both requests queue up
    first = asyncio.ensure_future(app.dispatch(follows(7, range(8, 18), rid(7))))
    empty = asyncio.ensure_future(app.dispatch(BatchWrite(graph=GRAPH, operations=())))  # refused before any SQL
    for _ in range(5):
        await asyncio.sleep(0)
    assert store._waiting == 2
    store._lock.release()
    result = await asyncio.wait_for(first, 5)  # deferred behind the empty batch, then COMMITted by the closer
    with pytest.raises(ValidationFailed):
        await empty
    await store.trace_statements(None)
    assert result.results and trace.count("COMMIT") == 1 and not [s for s in trace if "SAVEPOINT" in s]
    assert trace.index("COMMIT") == len(trace) - 1
    assert len(stored_edges(tmp_path)) == 10 and store._group is None
