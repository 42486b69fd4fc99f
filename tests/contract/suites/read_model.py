"""Contract of query_service.app.ports.ReadModel: every read is one round trip; nodes with
their edge counts, adjacency newest first (limited, paged, time-bounded), node scans by
every access path. State is built by projecting events through ``ProjectionStore.apply``."""

from __future__ import annotations

import pytest

from domain.edge import Direction
from domain.views import AccessKind, AdjacencyKey, NodeAccess
from tests.contract.suites.read_fixtures import ReadModelFixture
from tests.query_support import Events


class ReadModelContract(ReadModelFixture):
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


    async def test_deleted_node_leaves_no_adjacency_either_way(self, adapters):
        rm, store = adapters
        ev = Events()
        create_a = ev.create("a")
        await self.seed(store, [ev.schema(), create_a, ev.create("b"), ev.create("c"), ev.link("a", "b"),
                                ev.link("c", "a"), ev.link("a", "a"), ev.delete("a"),
                                ev.unlink("a", "b"), ev.unlink("c", "a"),  # a tombstoning delete's late removals
                                create_a, ev.link("a", "b")])  # replayed events older than the tombstone
        assert await rm.get_nodes("g", ["a"]) == {}
        lists = await rm.neighbour_ids("g", [AdjacencyKey("b", Direction.IN, "follows"),
                                             AdjacencyKey("c", Direction.OUT, "follows")], 10)
        assert lists == {}
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
        page1 = await rm.list_adjacency("g", key, limit=2)
        page2 = await rm.list_adjacency("g", key, limit=10, after=page1[-1][0])
        assert [e.target for _, e in page1 + page2] == ["n5", "n4", "n3", "n2", "n1"]
        t2 = page2[-2][0][0]  # n2's create time
        within = await rm.list_adjacency("g", key, limit=10, created_after_us=t2 - 1, created_before_us=page1[0][0][0])
        assert [e.target for _, e in within] == ["n4", "n3", "n2"]
        edge = await rm.get_edge("g", "n0", "follows", "n2")
        assert edge.properties == {"weight": 2} and edge.source == "n0"


    async def test_neighbour_ids_newest_first_with_list_lengths_in_one_round_trip(self, adapters):
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), *[ev.create(f"n{i}") for i in range(6)],
                                *[ev.link("n0", f"n{i}", weight=i) for i in range(1, 6)], ev.link("n1", "n0")])
        out, into = AdjacencyKey("n0", Direction.OUT, "follows"), AdjacencyKey("n0", Direction.IN, "follows")
        before = rm.round_trips
        got = await rm.neighbour_ids("g", [out, into, AdjacencyKey("n9", Direction.IN, "follows"), out], 3)
        assert rm.round_trips == before + 1
        assert got == {out: (["n5", "n4", "n3"], 5), into: (["n1"], 1)}  # empty lists are absent
        assert (await rm.neighbour_ids("g", [out], None))[out] == (["n5", "n4", "n3", "n2", "n1"], 5)
        assert await rm.neighbour_ids("other", [out], None) == {}
        with pytest.raises(ValueError):
            await rm.neighbour_ids("g", [AdjacencyKey("n0", Direction.OUT)], 3)  # lists are per edge type

    async def test_long_lists_keep_their_order_through_adds_and_removes(self, adapters):
        """Thousands of edges on one node, added in batches, then removed old, new and in the
        middle, re-added, and a neighbour deleted: the list stays exact, newest first."""
        rm, store = adapters
        ev = Events()
        n = 4500
        position = await self.seed(store, [ev.schema(), ev.create("hub"), *[ev.create(f"f{i}") for i in range(n)]])
        expected: list[str] = []  # oldest first
        for lo in range(0, n, 700):  # batches of the projector's size and more
            batch = [ev.link(f"f{i}", "hub") for i in range(lo, min(n, lo + 700))]
            position = await self.seed(store, batch, start=position + 1)
            expected += [e.source for e in batch]
        gone = ["f0", "f1", "f2500", f"f{n - 1}", *[f"f{i}" for i in range(1000, 1400)]]
        position = await self.seed(store, [ev.unlink(f, "hub") for f in gone], start=position + 1)
        expected = [f for f in expected if f not in gone]
        position = await self.seed(store, [ev.link("f1", "hub"), ev.delete("f7")], start=position + 1)
        expected = [f for f in expected if f != "f7"] + ["f1"]
        key = AdjacencyKey("hub", Direction.IN, "follows")
        everything = (await rm.neighbour_ids("g", [key], None))[key]
        assert everything.total == len(expected) == await rm.count_edges("g", "hub", "follows", Direction.IN)
        assert everything.ids == expected[::-1]
        first = (await rm.neighbour_ids("g", [key], 1000))[key]
        assert first == (expected[::-1][:1000], len(expected))
        position = await self.seed(store, [ev.unlink(f, "hub") for f in expected], start=position + 1)
        assert await rm.neighbour_ids("g", [key], None) == {}

    async def test_nodes_without_properties_and_edges_by_key(self, adapters):
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), ev.create("a", age=1), ev.create("b"), ev.link("a", "b", weight=3)])
        basic = (await rm.get_nodes("g", ["a"], properties=False))["a"]
        assert basic.properties == {} and basic.version == 1 and basic.edge_counts == {("follows", Direction.OUT): 1}
        before = rm.round_trips
        edges = await rm.get_edges("g", [("a", "follows", "b"), ("b", "follows", "a")])
        assert rm.round_trips == before + 1
        assert list(edges) == [("a", "follows", "b")] and edges[("a", "follows", "b")].properties == {"weight": 3}

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


    # --- edge events are applied set-based per batch: the same result as one at a time ---------

    async def test_an_edge_added_removed_and_re_added_in_one_batch_is_the_last_add(self, adapters):
        rm, store = adapters
        ev = Events()
        position = await self.seed(store, [ev.schema(), *[ev.create(n) for n in "abcd"], ev.link("a", "b", weight=1)])
        batch = [
            ev.link("a", "b", weight=2),  # already there: changes nothing
            ev.link("a", "c"), ev.unlink("a", "b"), ev.link("a", "d"),
            ev.link("a", "b", weight=3),  # a new row: b moves to the newest end
            ev.link("a", "b", weight=4),  # there again: changes nothing
            ev.link("c", "d"), ev.unlink("c", "d"), ev.unlink("c", "d"),  # new, gone, still gone
            ev.link("d", "c", weight=5), ev.unlink("d", "c"), ev.link("d", "c", weight=6),  # new: the last add
        ]
        re_add = batch[4]
        await self.seed(store, batch, start=position + 1)
        out = AdjacencyKey("a", Direction.OUT, "follows")
        assert (await rm.neighbour_ids("g", [out], None))[out] == (["b", "d", "c"], 3)
        edge = await rm.get_edge("g", "a", "follows", "b")
        assert edge.properties == {"weight": 3} and edge.create_time == re_add.create_time
        assert (await rm.get_edge("g", "d", "follows", "c")).properties == {"weight": 6}
        assert await rm.get_edge("g", "c", "follows", "d") is None
        views = await rm.get_nodes("g", list("abcd"))
        assert {n: v.edge_counts for n, v in views.items()} == {
            "a": {("follows", Direction.OUT): 3}, "b": {("follows", Direction.IN): 1},
            "c": {("follows", Direction.IN): 2},
            "d": {("follows", Direction.IN): 1, ("follows", Direction.OUT): 1}}
        newest = await rm.list_adjacency("g", AdjacencyKey("a", Direction.OUT), limit=1)
        assert [e.target for _, e in newest] == ["b"], newest

    async def test_a_delete_in_the_middle_of_a_batch_removes_the_edges_before_it(self, adapters):
        rm, store = adapters
        ev = Events()
        position = await self.seed(store, [ev.schema(), *[ev.create(n) for n in "abc"], ev.link("c", "a")])
        await self.seed(store, [
            ev.link("a", "b"), ev.link("b", "a"), ev.link("b", "c"), ev.delete("a"),
            ev.link("a", "c"),  # a replay after the delete: ignored
            ev.unlink("b", "a"),  # the delete's late removal: a no-op
            ev.link("c", "b"),
        ], start=position + 1)
        assert await rm.get_nodes("g", ["a"]) == {}
        keys = [AdjacencyKey(n, d, "follows") for n in "abc" for d in (Direction.OUT, Direction.IN)]
        assert await rm.neighbour_ids("g", keys, None) == {
            AdjacencyKey("b", Direction.OUT, "follows"): (["c"], 1),
            AdjacencyKey("b", Direction.IN, "follows"): (["c"], 1),
            AdjacencyKey("c", Direction.OUT, "follows"): (["b"], 1),
            AdjacencyKey("c", Direction.IN, "follows"): (["b"], 1)}
        both = {("follows", Direction.OUT): 1, ("follows", Direction.IN): 1}
        assert {n: v.edge_counts for n, v in (await rm.get_nodes("g", ["b", "c"])).items()} == {"b": both, "c": both}
        assert await rm.list_adjacency("g", AdjacencyKey("a", Direction.IN), limit=10) == []

    @staticmethod
    def _story(ev: Events) -> list:
        """Adds, removes, re-adds, a hub, a delete and a re-create, two edge types."""
        return [ev.schema(), *[ev.create(f"n{i}") for i in range(8)], ev.create("d", "Doc"),
                *[ev.link(f"n{i}", "n0", weight=i) for i in range(1, 8)], ev.link("n1", "d", "owns"),
                ev.unlink("n3", "n0"), ev.link("n0", "n1"), ev.link("n3", "n0", weight=30), ev.link("n0", "d", "owns"),
                ev.delete("n5"), ev.link("n5", "n0"), ev.unlink("n2", "n0"), ev.create("n5"), ev.link("n5", "n0"),
                ev.link("n2", "n0", weight=20), ev.unlink("n1", "d", "owns"), ev.link("n1", "d", "owns"),
                ev.link("n6", "n1"), ev.unlink("n7", "n0"), ev.link("n7", "n1")]

    async def _snapshot(self, rm, graph: str, *, ordered: bool = True):
        nodes = [f"n{i}" for i in range(8)] + ["d"]
        keys = [AdjacencyKey(n, d, t) for n in nodes for d in (Direction.OUT, Direction.IN) for t in ("follows", "owns")]
        lists = {k: (v.ids if ordered else sorted(v.ids), v.total)
                 for k, v in (await rm.neighbour_ids(graph, keys, None)).items()}
        views = {n: (v.version, v.edge_counts) for n, v in (await rm.get_nodes(graph, nodes)).items()}
        edges = {}
        for n in nodes:
            for d in (Direction.OUT, Direction.IN):
                edges[(n, d)] = [(c, e.source, e.type, e.target, e.properties, e.create_time)
                                 for c, e in await rm.list_adjacency(graph, AdjacencyKey(n, d), limit=100)]
        return lists, views, edges

    async def test_any_split_of_the_log_into_batches_gives_the_same_read_model(self, adapters):
        rm, store = adapters
        whole, single = self._story(Events("g")), self._story(Events("h"))  # the same story in two graphs
        position = await self.seed(store, whole)
        for event in single:  # one event a batch
            position = await self.seed(store, [event], start=position + 1)
        assert await self._snapshot(rm, "g") == await self._snapshot(rm, "h")
        lists, views, _ = await self._snapshot(rm, "g")
        assert lists[AdjacencyKey("n0", Direction.IN, "follows")] == (["n2", "n5", "n3", "n6", "n4", "n1"], 6)
        assert "n5" in views and views["n0"][1][("follows", Direction.IN)] == 6

    async def test_replaying_any_suffix_of_a_batch_converges(self, adapters):
        rm, store = adapters
        story = self._story(Events())
        await self.seed(store, story)
        expected = await self._snapshot(rm, "g", ordered=False)
        for k in range(0, len(story), 3):
            await store.reset("p", {self.shard_of("g"): k})
            await self.seed(store, story)  # positions after k are fresh again
            # rows, counts and sets converge; an id list's order is the order rows were (re)inserted
            assert await self._snapshot(rm, "g", ordered=False) == expected, k

    async def test_a_list_without_edge_type_merges_the_types_newest_first_and_pages(self, adapters):
        rm, store = adapters
        ev = Events()
        await self.seed(store, [ev.schema(), *[ev.create(f"u{i}") for i in range(4)], ev.create("d1", "Doc"),
                                ev.create("d2", "Doc"), ev.link("u0", "u1"), ev.link("u0", "d1", "owns"),
                                ev.link("u0", "u2"), ev.link("u0", "d2", "owns"), ev.link("u0", "u3"),
                                ev.link("u3", "u0")])
        key = AdjacencyKey("u0", Direction.OUT)
        page1 = await rm.list_adjacency("g", key, limit=2)
        page2 = await rm.list_adjacency("g", key, limit=10, after=page1[-1][0])
        assert [(e.type, e.target) for _, e in page1 + page2] == [
            ("follows", "u3"), ("owns", "d2"), ("follows", "u2"), ("owns", "d1"), ("follows", "u1")]
        t_d1 = page2[1][0][0]
        within = await rm.list_adjacency("g", key, limit=10, created_after_us=t_d1 - 1, created_before_us=page1[0][0][0])
        assert [e.target for _, e in within] == ["d2", "u2", "d1"]
        assert await rm.list_adjacency("g", AdjacencyKey("u1", Direction.OUT), limit=10) == []
        assert [e.source for _, e in await rm.list_adjacency("g", AdjacencyKey("u0", Direction.IN), limit=10)] == ["u3"]
