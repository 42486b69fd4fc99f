"""SQLite-only read-model checks the port contract cannot express: the work a read does is
bounded by its limit (VM steps, query plans) and the projector batches its statements.
The ReadModel/ProjectionStore contracts themselves run in test_sqlite_adapters.py."""

import pytest

from domain.edge import Direction
from domain.views import AdjacencyKey
from infrastructure.persistence.sqlite.event_log import SHARD
from infrastructure.persistence.sqlite.read_model import READ_MODEL_DDL, SqliteProjectionStore, SqliteReadModel
from query_service.projection.apply import apply_events
from tests.query_support import Events, logged

pytestmark = pytest.mark.contract


class _CountingConnection:
    """A ``run(fn)`` target over one plain connection that counts SQLite VM steps: the work a
    read really does, which a round-trip count cannot show."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.steps = 0

    async def run(self, fn):
        def tick() -> int:
            self.steps += 1
            return 0
        self.conn.set_progress_handler(tick, 1)
        try:
            return fn(self.conn)
        finally:
            self.conn.set_progress_handler(None, 1)


class TestSqliteAdjacencyWorkIsBoundedByTheLimit:
    """A supernode's list is read only as far as the page needs, not scanned whole."""

    @pytest.fixture
    def db(self):
        import sqlite3
        from datetime import timedelta

        from infrastructure.persistence.sqlite.read_model import SqliteProjectionTransaction
        from tests.query_support import T0
        conn = sqlite3.connect(":memory:")
        conn.row_factory = sqlite3.Row
        conn.executescript(READ_MODEL_DDL)
        tx = SqliteProjectionTransaction(conn)
        for node, size in (("small", 20), ("super", 5000)):
            for i in range(size):  # every tenth edge is a "follows", the rest "likes"
                tx.add_adjacency("g", node, Direction.OUT, "follows" if i % 10 == 0 else "likes", f"m{i:05}", {},
                                 T0 + timedelta(seconds=i))
        tx.flush()  # writes the id chunks
        yield _CountingConnection(conn)
        conn.close()

    async def steps(self, db, read) -> int:
        db.steps = 0
        await read(SqliteReadModel(db))
        return db.steps

    @pytest.mark.parametrize("edge_type", ["likes", "follows"])
    async def test_a_level_read_costs_one_head_row_per_list_however_long(self, db, edge_type):
        async def first_three(node):
            return await self.steps(db, lambda rm: rm.neighbour_ids("g", [AdjacencyKey(node, Direction.OUT,
                                                                                     edge_type)], 3))
        small, big = await first_three("small"), await first_three("super")
        assert big <= 2 * small, (small, big)
        key = AdjacencyKey("super", Direction.OUT, edge_type)
        got = (await SqliteReadModel(db).neighbour_ids("g", [key], 3))[key]
        newest = [f"m{i:05}" for i in range(4999, -1, -1) if (i % 10 == 0) == (edge_type == "follows")]
        assert got == (newest[:3], len(newest))

    async def test_a_level_is_one_statement_whatever_the_frontier(self, db):
        statements: list[str] = []
        db.conn.set_trace_callback(statements.append)
        keys = [AdjacencyKey(n, Direction.OUT, t) for n in ("small", "super", "none") for t in ("follows",)]
        await SqliteReadModel(db).neighbour_ids("g", keys * 50, 100)
        db.conn.set_trace_callback(None)
        assert len(statements) == 1 and "chunk = 0" in statements[0], statements

    async def test_a_deep_page_costs_what_the_first_page_costs(self, db):
        key = AdjacencyKey("super", Direction.OUT)
        rm = SqliteReadModel(db)
        deep_cursor = (await rm.list_adjacency("g", key, limit=4900))[-1][0]
        first = await self.steps(db, lambda rm: rm.list_adjacency("g", key, limit=10))
        deep = await self.steps(db, lambda rm: rm.list_adjacency("g", key, limit=10, after=deep_cursor))
        assert deep <= 2 * first, (first, deep)

    async def test_every_adjacency_read_walks_an_index_in_order(self, db):
        from infrastructure.persistence.sqlite.read_model import _adjacency_sql
        for key in (AdjacencyKey("n", Direction.OUT), AdjacencyKey("n", Direction.IN, "follows")):
            for after in (None, (1, "follows", "x")):
                sql, params = _adjacency_sql("g", key, limit=3, after=after, created_after_us=0,
                                             created_before_us=9, edge_types=("follows", "likes"))
                plan = " ".join(r[3] for r in db.conn.execute("EXPLAIN QUERY PLAN " + sql, params))
                assert "USING INDEX rm_adjacency_newest" in plan and "TEMP B-TREE" not in plan, plan
                if key.edge_type is None:  # the typed lists merged, each walked in index order
                    assert "MERGE (UNION ALL)" in plan and plan.count("edge_type=?") == 2, plan
                assert "create_us<?" in plan or "create_us>?" in plan, plan

    async def test_a_batch_checks_which_rows_exist_by_primary_key(self, db):
        from infrastructure.persistence.sqlite.read_model import SqliteProjectionTransaction
        statements: list[str] = []
        db.conn.set_trace_callback(statements.append)
        SqliteProjectionTransaction(db.conn)._existing_rows([("g", "super", "OUT", "likes", "m00001")] * 3)
        db.conn.set_trace_callback(None)
        plan = " ".join(r[3] for r in db.conn.execute("EXPLAIN QUERY PLAN " + statements[0]))
        assert "USING PRIMARY KEY" in plan and "SCAN rm_adjacency" not in plan, plan


    async def test_edges_by_key_are_primary_key_seeks(self, db):
        statements: list[str] = []
        db.conn.set_trace_callback(statements.append)
        got = await SqliteReadModel(db).get_edges("g", [("super", "likes", "m00001"), ("small", "follows", "m00000")])
        db.conn.set_trace_callback(None)
        assert sorted(got) == [("small", "follows", "m00000"), ("super", "likes", "m00001")]
        plan = " ".join(r[3] for r in db.conn.execute("EXPLAIN QUERY PLAN " + statements[0]))
        assert "neighbour=?" in plan and "SCAN rm_adjacency" not in plan, plan


async def test_sqlite_projection_batches_its_statements(tmp_path):
    """An edge event costs its adjacency writes, not a metadata read per endpoint and two
    counter statements per row changed (8 statements an edge before batching)."""
    import sqlite3

    conn = sqlite3.connect(str(tmp_path / "rm.db"), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.executescript(READ_MODEL_DDL)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    ev = Events()
    links = [ev.link(f"u{i}", f"u{(i * 7 + j) % 50}") for i in range(50) for j in range(1, 5)]
    store = SqliteProjectionStore(_CountingConnection(conn))
    await store.apply("p", SHARD, logged([ev.schema(), *[ev.create(f"u{i}") for i in range(50)]]), apply_events)
    statements.clear()
    await store.apply("p", SHARD, logged(links, start=52), apply_events)
    # per edge its two adjacency rows; per list changed one counter row and one id-chunk row (the
    # chunk heads are read set-based); per endpoint one metadata read; a few for the transaction
    lists = {(e.source, "OUT") for e in links} | {(e.target, "IN") for e in links}
    endpoints = {e.source for e in links} | {e.target for e in links}
    assert len(statements) <= 2 * len(links) + 2 * len(lists) + len(endpoints) + 10, len(statements)
    conn.set_trace_callback(None)
    rm = SqliteReadModel(_CountingConnection(conn))
    counts = (await rm.get_nodes("g", ["u0"]))["u0"].edge_counts
    assert counts[("follows", Direction.OUT)] == 4 and sum(counts.values()) == 4 + sum(
        1 for e in links if e.target == "u0")
    conn.close()
