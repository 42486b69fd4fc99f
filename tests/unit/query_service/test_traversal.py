import random
from collections import deque

import pytest

from domain.edge import Direction
from domain.errors import NotFound, ValidationFailed
from query_service.app.queries.find_path import FindPath, FindPathHandler
from query_service.app.queries.traverse import Traverse, TraversalBudget, TraversalStep


async def build_tree(w, fanout: int, depth: int) -> int:
    """A complete tree of `follows` edges rooted at n0; returns the node count."""
    events, level, count = [w.ev.create("n0", age=0)], ["n0"], 1
    for d in range(1, depth + 1):
        nxt = []
        for parent in level:
            for _ in range(fanout):
                nid = f"n{count}"
                count += 1
                events += [w.ev.create(nid, age=d), w.ev.link(parent, nid)]
                nxt.append(nid)
        level = nxt
    await w.write(*events)
    return count


def out(depth_steps, **kw):
    return tuple(TraversalStep("follows", Direction.OUT, **kw) for _ in range(depth_steps))


@pytest.mark.parametrize("fanout", [2, 12])
async def test_round_trips_are_o_depth_whatever_the_fanout(world, fanout):
    await build_tree(world, fanout, 3)
    world.rm.round_trips = 0
    result = await world.q.traverse(Traverse("g", "n0", out(3), TraversalBudget(max_nodes=10_000, per_node_fanout=100),
                                             include_edges=True))
    assert len(result.nodes) == 1 + fanout + fanout**2 + fanout**3
    assert not result.truncated
    # schema + start node + one ids-only read per level + the admitted nodes' views (BASIC)
    assert world.rm.round_trips == 2 + 3 + 1
    assert [lv.depth for lv in result.levels] == [0, 1, 2, 3]
    assert len(result.edges) == fanout + fanout**2 + fanout**3  # the BFS tree: one edge per node reached


async def test_naive_engine_costs_one_read_per_node(world):
    world.q.traverse.engine = "naive"
    await build_tree(world, 3, 2)
    world.rm.round_trips = 0
    result = await world.q.traverse(Traverse("g", "n0", out(2)))
    assert len(result.nodes) == 13
    # schema + start node + per level one read per adjacency list (1, then 3) and one per node
    # met (3, then 9), as the walk before id chunks did; then one per returned view (13)
    assert world.rm.round_trips == 1 + 1 + (1 + 3) + (3 + 9) + 13


async def test_shadow_engine_matches(world):
    world.q.traverse.engine = "shadow"
    await build_tree(world, 3, 2)
    await world.q.traverse(Traverse("g", "n0", out(2)))
    assert world.q.traverse.shadow_mismatches == 0


async def test_budgets_truncate(world):
    await build_tree(world, 5, 2)
    r = await world.q.traverse(Traverse("g", "n0", out(2), TraversalBudget(max_nodes=4)))
    assert r.truncated and r.truncated_reason == "max_nodes" and len(r.nodes) == 4
    r = await world.q.traverse(Traverse("g", "n0", out(2), TraversalBudget(per_node_fanout=2)))
    assert r.truncated and r.truncated_reason == "per_node_fanout" and len(r.nodes) == 1 + 2 + 4
    r = await world.q.traverse(Traverse("g", "n0", out(2), TraversalBudget(max_depth=1)))
    assert r.truncated and r.truncated_reason == "max_depth" and len(r.nodes) == 6
    r = await world.q.traverse(Traverse("g", "n0", (TraversalStep("follows", Direction.OUT, per_node_limit=1),)))
    assert r.truncated_reason == "per_node_fanout" and len(r.nodes) == 2


async def test_deadline_truncates(world):
    await build_tree(world, 2, 3)
    world.remaining = lambda: 0.0
    r = await world.q.traverse(Traverse("g", "n0", out(3)))
    assert r.truncated and r.truncated_reason == "deadline" and len(r.nodes) == 1


async def test_node_filter_and_both_direction(world):
    await build_tree(world, 3, 2)
    r = await world.q.traverse(Traverse("g", "n1", (
        TraversalStep("follows", Direction.IN),
        TraversalStep("follows", Direction.OUT, node_filter="age = 1"),
    )))
    assert sorted(n.id for n in r.nodes) == ["n0", "n1", "n2", "n3"]
    r = await world.q.traverse(Traverse("g", "n1", (TraversalStep("follows", Direction.BOTH),)))
    assert sorted(n.id for n in r.nodes) == ["n0", "n1", "n4", "n5", "n6"]


async def test_traverse_errors(world):
    await build_tree(world, 1, 1)
    with pytest.raises(NotFound):
        await world.q.traverse(Traverse("g", "missing", out(1)))
    with pytest.raises(ValidationFailed) as err:
        await world.q.traverse(Traverse("g", "n0", out(1, node_filter="age >")))
    assert err.value.violations[0].field == "steps[0].node_filter"
    with pytest.raises(ValidationFailed):
        await world.q.traverse(Traverse("g", "n0", (TraversalStep("nope", Direction.OUT),)))
    with pytest.raises(ValidationFailed):
        await world.q.traverse(Traverse("g", "n0", ()))


def bfs_distance(adj: dict[str, set[str]], source: str, target: str) -> int | None:
    seen, queue = {source: 0}, deque([source])
    while queue:
        node = queue.popleft()
        if node == target:
            return seen[node]
        for nb in sorted(adj.get(node, ())):
            if nb not in seen:
                seen[nb] = seen[node] + 1
                queue.append(nb)
    return None


@pytest.mark.parametrize("seed", range(6))
async def test_find_path_matches_independent_bfs(world, seed):
    rng = random.Random(seed)
    n = 40
    events = [world.ev.create(f"v{i}") for i in range(n)]
    edges = {(f"v{rng.randrange(n)}", f"v{rng.randrange(n)}") for _ in range(70)}
    edges = {(a, b) for a, b in edges if a != b}
    events += [world.ev.link(a, b) for a, b in sorted(edges)]
    await world.write(*events)
    out_adj: dict[str, set[str]] = {}
    both_adj: dict[str, set[str]] = {}
    for a, b in edges:
        out_adj.setdefault(a, set()).add(b)
        both_adj.setdefault(a, set()).add(b)
        both_adj.setdefault(b, set()).add(a)
    for _ in range(15):
        s, t = f"v{rng.randrange(n)}", f"v{rng.randrange(n)}"
        for direction, adj in ((Direction.OUT, out_adj), (Direction.BOTH, both_adj)):
            expected = bfs_distance(adj, s, t)
            result = await world.q.find_path(FindPath("g", s, t, direction=direction, max_depth=12))
            if expected is None:
                assert not result.found
                continue
            assert result.found and len(result.node_ids) == expected + 1
            assert result.node_ids[0] == s and result.node_ids[-1] == t
            for (a, b), e in zip(zip(result.node_ids, result.node_ids[1:]), result.edges):  # a real path
                assert {e.source, e.target} == {a, b}
                if direction is Direction.OUT:
                    assert (e.source, e.target) == (a, b)


async def test_find_path_depth_limit_and_missing(world):
    await world.write(*[world.ev.create(f"c{i}") for i in range(5)],
                      *[world.ev.link(f"c{i}", f"c{i + 1}") for i in range(4)])
    assert (await world.q.find_path(FindPath("g", "c0", "c4", max_depth=4))).found
    assert not (await world.q.find_path(FindPath("g", "c0", "c4", max_depth=3))).found
    assert not (await world.q.find_path(FindPath("g", "c4", "c0"))).found
    with pytest.raises(NotFound):
        await world.q.find_path(FindPath("g", "c0", "zz"))


class _Latest:
    async def ensure(self, consistency, graph=None):
        return None


async def test_find_path_is_not_hidden_by_edges_of_types_it_does_not_follow(world):
    """The lists are read per type and whole: newer edges of another type never hide a path."""
    await world.write(*[world.ev.create(n) for n in ("s", "t", "x1", "x2", "y1", "y2")],
                      world.ev.link("s", "t"),  # the oldest edge of both ends
                      *[world.ev.link(a, b, edge_type="blocks") for a, b in
                        (("x1", "t"), ("x2", "t"), ("s", "y1"), ("s", "y2"))])
    handler = FindPathHandler(world.rm, _Latest())
    world.rm.round_trips = 0
    result = await handler(FindPath("g", "s", "t", edge_types=("follows", "owns")))
    assert result.found and result.node_ids == ["s", "t"] and not result.truncated
    assert world.rm.round_trips == 2  # one read for both types of s, the path's edge rows (a path proves the ends)
