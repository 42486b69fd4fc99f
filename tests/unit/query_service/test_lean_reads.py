"""The lean read path: Traverse reads ids until its answer is settled, views only for
what it returns, edges only when asked; FindPath is exact whatever the degrees.

Each test runs on the in-memory read model and on a real SQLite file (whose id chunks
seal and refill past ~2,000 entries), through the same query application."""

from __future__ import annotations

import random
from collections import deque

import pytest

from domain.edge import Direction
from domain.errors import NotFound
from domain.views import Detail
from infrastructure.persistence.sqlite.connection import SqliteConnection, SqliteReaderPool
from infrastructure.persistence.sqlite.event_log import EVENT_LOG_DDL, SHARD
from infrastructure.persistence.sqlite.read_model import (
    HEAD_MAX,
    READ_MODEL_DDL,
    SqliteProjectionStore,
    SqliteReadModel,
)
from infrastructure.tokens import TokenSigner
from query_service.app.queries.count_edges import CountEdges
from query_service.app.queries.find_path import FindPath
from query_service.app.queries.traverse import Traverse, TraversalBudget, TraversalStep
from query_service.bootstrap import build_application
from tests.query_support import SECRET
from tests.unit.query_service.conftest import ListEventLog, World


class SqliteWorld(World):
    """The same world over a SQLite read model (the event log stays a list, with SQLite's
    single shard)."""

    async def open(self, path: str) -> "SqliteWorld":
        self.log = ListEventLog(shard_of=lambda graph: SHARD)
        self.writer = await SqliteConnection(path, name="test-rm-writer").open()
        await self.writer.execute_script(EVENT_LOG_DDL + READ_MODEL_DDL)
        self.readers = await SqliteReaderPool(path, size=2).open()
        self.rm = SqliteReadModel(self.readers)
        self.app = build_application(read_model=self.rm, store=SqliteProjectionStore(self.writer),
                                     event_log=self.log, signer=TokenSigner(SECRET), projector_enabled=True,
                                     poll_interval=0.01, time_remaining=lambda: self.remaining())
        self.q = self.app.queries
        return self

    async def close(self) -> None:
        await self.readers.close()
        await self.writer.close()


@pytest.fixture(params=["memory", "sqlite"])
async def w(request, tmp_path):
    if request.param == "memory":
        world = World()
    else:
        world = await SqliteWorld().open(str(tmp_path / "rm.db"))
    await world.write(world.ev.schema())
    yield world
    if request.param == "sqlite":
        await world.close()


async def star(w, hub: str, n: int, prefix: str = "f") -> list[str]:
    """``n`` nodes that follow ``hub`` (oldest first), written in projector-sized batches."""
    ids = [f"{prefix}{i}" for i in range(n)]
    await w.write(w.ev.create(hub), *[w.ev.create(i, age=k % 7) for k, i in enumerate(ids)])
    for lo in range(0, n, 600):
        await w.write(*[w.ev.link(i, hub) for i in ids[lo:lo + 600]])
    return ids


def walk(steps=1, direction=Direction.IN, **kw):
    return (TraversalStep("follows", direction, repeat=True, **kw),) if steps == "repeat" else \
        tuple(TraversalStep("follows", direction, **kw) for _ in range(steps))


async def test_max_nodes_is_applied_to_ids_before_any_view_is_read(w):
    await star(w, "hub", 500)
    q = w.q.traverse
    result = await q(Traverse("g", "hub", walk(1), TraversalBudget(max_nodes=11, per_node_fanout=1000)))
    assert result.truncated_reason == "max_nodes" and len(result.nodes) == 11
    assert result.node_ids == ["hub", *[f"f{i}" for i in range(499, 489, -1)]]  # newest first
    assert q.last_loaders.nodes_loaded <= 11 + 1  # the admitted nodes, and the start node once more
    # a filter reads candidates' views in budget-sized batches, never all 500 at once
    result = await q(Traverse("g", "hub", walk(1, node_filter="age >= 0"), TraversalBudget(max_nodes=11)))
    assert len(result.nodes) == 11 and result.truncated
    assert q.last_loaders.nodes_loaded <= 11 + 64 + 1


async def test_each_view_returns_exactly_its_fields_and_names_reads_no_node(w):
    await star(w, "hub", 30)
    budget = TraversalBudget(max_nodes=1000)
    names = await w.q.traverse(Traverse("g", "hub", walk(1), budget, detail=Detail.NAMES))
    assert names.nodes == [] and names.node_ids[0] == "hub" and len(names.node_ids) == 31
    assert w.q.traverse.last_loaders.nodes_loaded == 1  # the start node's existence, nothing else
    assert w.q.traverse.last_loaders.round_trips == 2  # the start node, one level
    basic = await w.q.traverse(Traverse("g", "hub", walk(1), budget, detail=Detail.BASIC))
    assert [n.id for n in basic.nodes] == names.node_ids
    assert all(n.properties == {} and n.version == 1 for n in basic.nodes)
    assert basic.nodes[0].edge_counts == {("follows", Direction.IN): 30}
    full = await w.q.traverse(Traverse("g", "hub", walk(1), budget, detail=Detail.FULL))
    assert [n.id for n in full.nodes] == names.node_ids and full.nodes[1].properties == {"age": 29 % 7}
    assert names.edges == basic.edges == full.edges == []  # edges are opt-in


async def test_include_edges_returns_the_bfs_tree(w):
    # a diamond: hub <- a, hub <- b, a <- c, b <- c: c is reached once, through a (met first)
    await w.write(*[w.ev.create(n) for n in ("hub", "a", "b", "c")],
                  w.ev.link("b", "hub"), w.ev.link("a", "hub"), w.ev.link("c", "a"), w.ev.link("c", "b"))
    for detail in Detail:
        r = await w.q.traverse(Traverse("g", "hub", walk("repeat"), TraversalBudget(max_depth=3),
                                        detail=detail, include_edges=True))
        assert r.node_ids == ["hub", "a", "b", "c"]  # a is the newest follower of hub
        assert [(e.source, e.target) for e in r.edges] == [("a", "hub"), ("b", "hub"), ("c", "a")]
        assert all((e.create_time is not None) == (detail is Detail.FULL) for e in r.edges)


async def test_a_full_answer_stops_reading_even_when_the_first_cut_was_the_fanout(w):
    await star(w, "hub", 50)
    q = w.q.traverse
    r = await q(Traverse("g", "hub", walk("repeat"), TraversalBudget(max_depth=3, max_nodes=6, per_node_fanout=5),
                         detail=Detail.NAMES))
    assert r.truncated_reason == "per_node_fanout" and len(r.node_ids) == 6
    assert q.last_loaders.round_trips == 2  # the start node and level 1: levels 2 and 3 are never read


async def test_count_edges_of_a_missing_node_is_not_found(w):
    await w.write(w.ev.create("a"))
    assert await w.q.count_edges(CountEdges("g", "a", "follows", Direction.OUT)) == 0
    with pytest.raises(NotFound):
        await w.q.count_edges(CountEdges("g", "nope", "follows", Direction.OUT))


async def test_find_path_through_the_oldest_in_edge_of_a_hub_beyond_every_limit(w):
    """s -> x0 -> hub -> t, where x0 is the OLDEST of the hub's 2,500 followers: reading the
    newest 1,000 of each list (the old FindPath) missed it and answered found=false."""
    n = HEAD_MAX + 500
    await star(w, "hub", n, prefix="x")
    await w.write(w.ev.create("s"), w.ev.create("t"), w.ev.link("hub", "t"),
                  *[w.ev.create(f"o{i}") for i in range(40)], w.ev.link("s", "x0"),
                  *[w.ev.link("s", f"o{i}") for i in range(40)])  # s's side is the larger: t's side expands
    result = await w.q.find_path(FindPath("g", "s", "t", edge_types=("follows",), max_depth=6))
    assert result.found and not result.truncated
    assert result.node_ids == ["s", "x0", "hub", "t"]
    assert [(e.source, e.target) for e in result.edges] == [("s", "x0"), ("x0", "hub"), ("hub", "t")]


@pytest.mark.parametrize("seed", range(3))
async def test_find_path_equals_an_independent_bfs_with_hubs_past_every_limit(w, seed):
    rng = random.Random(seed)
    hubs = ["h0", "h1"]
    n = HEAD_MAX + 300  # each hub's in-list spans sealed chunks
    leaves = [f"v{i}" for i in range(n)]
    await w.write(*[w.ev.create(i) for i in hubs + leaves])
    edges = {(v, hubs[k % 2]) for k, v in enumerate(leaves)} | {("h0", "h1")}
    edges |= {(rng.choice(leaves), rng.choice(leaves)) for _ in range(60)}
    edges = sorted((a, b) for a, b in edges if a != b)
    rng.shuffle(edges)
    for lo in range(0, len(edges), 700):
        await w.write(*[w.ev.link(a, b) for a, b in edges[lo:lo + 700]])
    out_adj: dict[str, set[str]] = {}
    for a, b in edges:
        out_adj.setdefault(a, set()).add(b)
    rev_adj: dict[str, set[str]] = {}
    for a, b in edges:
        rev_adj.setdefault(b, set()).add(a)

    def distance(adj, s, t):
        seen, queue = {s: 0}, deque([s])
        while queue:
            node = queue.popleft()
            if node == t:
                return seen[node]
            for nb in adj.get(node, ()):
                if nb not in seen:
                    seen[nb] = seen[node] + 1
                    queue.append(nb)
        return None

    pairs = [(rng.choice(leaves), rng.choice(leaves)) for _ in range(8)] + [("h1", leaves[0]), (leaves[3], "h0")]
    for s, t in pairs:
        for direction, adj in ((Direction.OUT, out_adj), (Direction.IN, rev_adj)):
            expected = distance(adj, s, t)
            result = await w.q.find_path(FindPath("g", s, t, direction=direction, max_depth=12))
            assert not result.truncated
            if expected is None or expected > 12:
                assert not result.found, (s, t, direction)
                continue
            assert result.found and len(result.node_ids) == expected + 1, (s, t, direction)
            for (a, b), e in zip(zip(result.node_ids, result.node_ids[1:]), result.edges):
                assert (e.source, e.target) == ((a, b) if direction is Direction.OUT else (b, a))


async def test_find_path_says_when_a_budget_ended_the_search(w):
    await star(w, "hub", 300)
    await w.write(w.ev.create("alone"))
    w.q.find_path._max_visited = 100
    result = await w.q.find_path(FindPath("g", "hub", "alone", direction=Direction.BOTH))
    assert not result.found and result.truncated and result.truncated_reason == "max_visited"
    w.q.find_path._max_visited = 10**6
    w.remaining = lambda: 0.0
    result = await w.q.find_path(FindPath("g", "hub", "alone", direction=Direction.BOTH))
    assert not result.found and result.truncated_reason == "deadline"
