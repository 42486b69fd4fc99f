"""One contract for the read-model ports (ReadModel + ProjectionStore/Checkpoints),
run against every adapter: subclass ``ReadModelContract`` and provide ``adapters``."""

import pytest

from domain.edge import Direction
from domain.views import AccessKind, AdjacencyKey, NodeAccess
from infrastructure.persistence.memory.read_model import InMemoryReadModel
from infrastructure.persistence.sqlite.connection import SqliteConnection, SqliteReaderPool
from infrastructure.persistence.sqlite.read_model import READ_MODEL_DDL, SqliteProjectionStore, SqliteReadModel
from query_service.projection.apply import apply_events
from tests.query_support import Events, logged

pytestmark = pytest.mark.contract


class ReadModelContract:
    @pytest.fixture
    async def adapters(self):  # -> (read_model, store)
        raise NotImplementedError

    async def seed(self, store, events, start=1):
        return await store.apply("p", logged(events, start), apply_events)

    async def test_nodes_with_counts_in_one_round_trip(self, adapters):
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), ev.create("a", age=1), ev.create("b", age=2), ev.link("a", "b"),
                                ev.link("b", "a"), ev.link("a", "a")])
        before = rm.round_trips
        nodes = await rm.get_nodes("g", ["a", "b", "zz"])
        assert rm.round_trips == before + 1
        assert set(nodes) == {"a", "b"}
        assert nodes["a"].edge_counts == {("follows", Direction.OUT): 2, ("follows", Direction.IN): 2}
        assert nodes["a"].properties == {"age": 1} and nodes["a"].version == 1
        assert await rm.count_edges("g", "b", "follows", Direction.IN) == 1
        assert await rm.get_nodes("other", ["a"]) == {}

    async def test_checkpoint_moves_with_the_batch_and_replays_are_skipped(self, adapters):
        rm, store = adapters
        ev = Events()
        events = [ev.schema(), ev.create("a", age=1), ev.update("a", age=2)]
        assert await store.position("p") == 0
        assert await self.seed(store, events) == 3
        assert await store.position("p") == 3
        assert await self.seed(store, events) == 3  # the same batch again: nothing happens
        await store.reset("p", 0)
        assert await self.seed(store, events) == 3  # replay from 0: versions keep it idempotent
        assert (await rm.get_nodes("g", ["a"]))["a"].properties == {"age": 2}
        assert await store.position("other") == 0

    async def test_deleted_node_leaves_no_adjacency_either_way(self, adapters):
        rm, store = adapters
        ev = Events()
        create_a = ev.create("a")
        await self.seed(store, [ev.schema(), create_a, ev.create("b"), ev.create("c"), ev.link("a", "b"),
                                ev.link("c", "a"), ev.link("a", "a"), ev.delete("a"),
                                ev.unlink("a", "b"), ev.unlink("c", "a"),  # a tombstoning delete's late removals
                                create_a, ev.link("a", "b")])  # replayed events older than the tombstone
        assert await rm.get_nodes("g", ["a"]) == {}
        lists = await rm.adjacency_many("g", [AdjacencyKey("b", Direction.IN), AdjacencyKey("c", Direction.OUT)], 10)
        assert all(v == [] for v in lists.values())
        assert await rm.count_edges("g", "b", "follows", Direction.IN) == 0
        assert await rm.get_edge("g", "a", "follows", "b") is None
        await self.seed(store, [ev.create("a", age=9)], start=20)  # a re-create continues the version
        assert (await rm.get_nodes("g", ["a"]))["a"].edge_counts == {}

    async def test_counters_follow_a_delete_and_re_create_inside_one_batch(self, adapters):
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), ev.create("a"), ev.create("b"), ev.link("a", "b"), ev.link("b", "a"),
                                ev.delete("a"), ev.create("a"), ev.link("a", "b")])
        nodes = await rm.get_nodes("g", ["a", "b"])
        assert nodes["a"].edge_counts == {("follows", Direction.OUT): 1}
        assert nodes["b"].edge_counts == {("follows", Direction.IN): 1}
        assert await rm.count_edges("g", "b", "follows", Direction.OUT) == 0

    async def test_adjacency_newest_first_limited_and_paged(self, adapters):
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), *[ev.create(f"n{i}") for i in range(6)],
                                *[ev.link("n0", f"n{i}", weight=i) for i in range(1, 6)],
                                ev.link("n1", "n0")])
        key = AdjacencyKey("n0", Direction.OUT, "follows")
        before = rm.round_trips
        many = await rm.adjacency_many("g", [key, AdjacencyKey("n0", Direction.IN), AdjacencyKey("n9", Direction.IN)], 3)
        assert rm.round_trips == before + 1
        assert [e.target for e in many[key]] == ["n5", "n4", "n3"]
        assert [(e.source, e.target) for e in many[AdjacencyKey("n0", Direction.IN)]] == [("n1", "n0")]
        assert many[AdjacencyKey("n9", Direction.IN)] == []
        page1 = await rm.list_adjacency("g", key, limit=2)
        page2 = await rm.list_adjacency("g", key, limit=10, after=page1[-1][0])
        assert [e.target for _, e in page1 + page2] == ["n5", "n4", "n3", "n2", "n1"]
        t2 = page2[-2][0][0]  # n2's create time
        within = await rm.list_adjacency("g", key, limit=10, created_after_us=t2 - 1, created_before_us=page1[0][0][0])
        assert [e.target for _, e in within] == ["n4", "n3", "n2"]
        edge = await rm.get_edge("g", "n0", "follows", "n2")
        assert edge.properties == {"weight": 2} and edge.source == "n0"

    async def test_scan_nodes_by_every_access_path(self, adapters):
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), *[ev.create(f"u{i}", email=f"{i}@x", age=i % 4, city="c")
                                               for i in range(8)], ev.create("d1", "Doc", title="t")])

        async def ids(access, limit=100, after=None):
            return [(k, v.id) for k, v in await rm.scan_nodes("g", access, after=after, limit=limit)]

        scan = await ids(NodeAccess(AccessKind.TYPE_SCAN, "User"), limit=3)
        assert [i for _, i in scan] == ["u0", "u1", "u2"]
        rest = await ids(NodeAccess(AccessKind.TYPE_SCAN, "User"), after=scan[-1][0])
        assert [i for _, i in rest] == ["u3", "u4", "u5", "u6", "u7"]
        assert [i for _, i in await ids(NodeAccess(AccessKind.UNIQUE, "User", "email", value="5@x"))] == ["u5"]
        eq = await ids(NodeAccess(AccessKind.INDEX_EQ, "User", "age", value=1))
        assert [i for _, i in eq] == ["u1", "u5"]
        rng = NodeAccess(AccessKind.INDEX_RANGE, "User", "age", lower=1, lower_inclusive=False, upper=3,
                         upper_inclusive=True)
        got = await ids(rng, limit=3)
        assert got == [((2, "u2"), "u2"), ((2, "u6"), "u6"), ((3, "u3"), "u3")]
        assert [i for _, i in await ids(rng, after=got[-1][0])] == ["u7"]
        desc = NodeAccess(AccessKind.INDEX_RANGE, "User", "age", lower=2, descending=True)
        assert [i for _, i in await ids(desc)] == ["u7", "u3", "u6", "u2"]

    async def test_schema_applied_backfills_a_new_index(self, adapters):
        from dataclasses import replace

        from domain.schema import PropertyDef
        from tests.query_support import DOC, FOLLOWS, OWNS, USER, schema
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), ev.create("u1", score=2.5), ev.create("u2", score=1.0)])
        indexed_user = replace(USER, properties=tuple(
            PropertyDef(p.name, p.kind, indexed=True) if p.name == "score" else p for p in USER.properties))
        await self.seed(store, [ev.schema(schema("g", 2, (indexed_user, DOC), (FOLLOWS, OWNS)))], start=4)
        assert (await rm.get_schema("g")).version == 2
        got = await rm.scan_nodes("g", NodeAccess(AccessKind.INDEX_RANGE, "User", "score", lower=2), after=None,
                                  limit=10)
        assert [v.id for _, v in got] == ["u1"]
        assert await rm.get_schema("nope") is None


class TestInMemoryReadModel(ReadModelContract):
    @pytest.fixture
    async def adapters(self):
        rm = InMemoryReadModel()
        return rm, rm


class TestSqliteReadModel(ReadModelContract):
    @pytest.fixture
    async def adapters(self, tmp_path):
        path = str(tmp_path / "rm.db")
        writer = await SqliteConnection(path).open()
        await writer.execute_script(READ_MODEL_DDL)
        readers = await SqliteReaderPool(path, size=2).open()
        yield SqliteReadModel(readers), SqliteProjectionStore(writer)
        await readers.close()
        await writer.close()


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
        yield _CountingConnection(conn)
        conn.close()

    async def steps(self, db, read) -> int:
        db.steps = 0
        await read(SqliteReadModel(db))
        return db.steps

    @pytest.mark.parametrize("edge_type", [None, "follows"])
    async def test_adjacency_many_reads_limit_rows_per_key(self, db, edge_type):
        async def first_three(node):
            got = await self.steps(db, lambda rm: rm.adjacency_many("g", [AdjacencyKey(node, Direction.OUT,
                                                                                     edge_type)], 3))
            return got
        small, big = await first_three("small"), await first_three("super")
        assert big <= 2 * small, (small, big)  # the whole-list window scan cost over 200x
        many = await SqliteReadModel(db).adjacency_many("g", [AdjacencyKey("super", Direction.OUT, edge_type)], 3)
        newest = [f"m{i:05}" for i in range(4999, -1, -1) if edge_type is None or i % 10 == 0][:3]
        assert [e.target for e in many[AdjacencyKey("super", Direction.OUT, edge_type)]] == newest

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
                                             created_before_us=9)
                plan = " ".join(r[3] for r in db.conn.execute("EXPLAIN QUERY PLAN " + sql, params))
                assert "USING INDEX rm_adjacency_newest" in plan and "TEMP B-TREE" not in plan, plan
                assert "create_us<?" in plan or "create_us>?" in plan, plan


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
    await store.apply("p", logged([ev.schema(), *[ev.create(f"u{i}") for i in range(50)]]), apply_events)
    statements.clear()
    await store.apply("p", logged(links, start=52), apply_events)
    assert len(statements) <= 3 * len(links), len(statements)  # two of them are the adjacency rows
    conn.set_trace_callback(None)
    rm = SqliteReadModel(_CountingConnection(conn))
    counts = (await rm.get_nodes("g", ["u0"]))["u0"].edge_counts
    assert counts[("follows", Direction.OUT)] == 4 and sum(counts.values()) == 4 + sum(
        1 for e in links if e.target == "u0")
    conn.close()
