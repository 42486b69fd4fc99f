"""Client-side graph searches over an ``expand`` callback, and the answer checkers.

The PostgreSQL side of the benchmark runs these with ``expand`` = one SQL statement
per level; the unit tests run them over a dict. Pure: no I/O of their own.

``expand(frontier)`` returns the neighbours (in the walk's direction) of every node
of ``frontier``, duplicates allowed, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

Expand = Callable[[list[str]], Iterable[str]]


@dataclass
class Levels:
    """The nodes first reached at each depth (level 0 is the start) and whether the
    ``max_nodes`` cap cut the walk short."""

    levels: list[list[str]] = field(default_factory=list)
    truncated: bool = False

    def nodes(self) -> set[str]:
        return {n for level in self.levels for n in level}

    def count(self) -> int:
        return sum(len(level) for level in self.levels)


def bfs_levels(expand: Expand, start: str, max_depth: int, max_nodes: int) -> Levels:
    """Level-synchronous BFS with a visited set; at most ``max_nodes`` nodes, the start
    included. ``truncated`` is set when a reached node did not fit."""
    out = Levels(levels=[[start]])
    visited = {start}
    frontier = [start]
    for _ in range(max_depth):
        if not frontier:
            break
        new: list[str] = []
        for nb in expand(frontier):
            if nb in visited:
                continue
            if len(visited) >= max_nodes:
                out.truncated = True
                break
            visited.add(nb)
            new.append(nb)
        if new:
            out.levels.append(new)
        if out.truncated:
            break
        frontier = new
    return out


def bidirectional_distance(forward: Expand, backward: Expand, source: str, target: str,
                           max_depth: int) -> int | None:
    """Length (in edges) of a shortest source->target path of at most ``max_depth`` edges,
    or None. Expands the smaller frontier one whole level at a time and stops after the
    first level that meets the other side (the shortest total over that level's
    meeting points is optimal)."""
    if source == target:
        return 0
    dist: list[dict[str, int]] = [{source: 0}, {target: 0}]
    frontiers: list[list[str]] = [[source], [target]]
    expands = (forward, backward)
    depth = [0, 0]
    while frontiers[0] and frontiers[1] and depth[0] + depth[1] < max_depth:
        side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
        other = 1 - side
        depth[side] += 1
        nxt: list[str] = []
        for nb in expands[side](frontiers[side]):
            if nb not in dist[side]:
                dist[side][nb] = depth[side]
                nxt.append(nb)
        frontiers[side] = nxt
        meets = [n for n in nxt if n in dist[other]]
        if meets:
            return min(dist[0][n] + dist[1][n] for n in meets)
    return None


def compare_levels(a: Levels, b: Levels, a_name: str = "a", b_name: str = "b") -> str | None:
    """None if the answers agree as far as they can be compared, else a description.

    * neither truncated: the same nodes at the same depths (BFS depths are unique);
    * exactly one truncated: the truncated one reached a subset of the other's nodes,
      and the complete one must not hold more nodes than the cap allowed the other;
    * both truncated: nothing to compare (each kept a different first part).
    """
    if not a.truncated and not b.truncated:
        la = [set(level) for level in a.levels]
        lb = [set(level) for level in b.levels]
        if la == lb:
            return None
        depth = next((d for d, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
        extra_a = sorted((la[depth] - lb[depth]) if depth < len(la) and depth < len(lb) else set())[:5]
        extra_b = sorted((lb[depth] - la[depth]) if depth < len(la) and depth < len(lb) else set())[:5]
        return (f"{a_name} {[len(x) for x in la]} vs {b_name} {[len(x) for x in lb]} nodes per level; "
                f"first difference at depth {depth} (only in {a_name}: {extra_a}, only in {b_name}: {extra_b})")
    if a.truncated and b.truncated:
        return None
    cut, full, cut_name, full_name = (a, b, a_name, b_name) if a.truncated else (b, a, b_name, a_name)
    outside = cut.nodes() - full.nodes()
    if outside:
        return (f"{cut_name} (truncated) reached {len(outside)} nodes that {full_name} (complete) did not, "
                f"e.g. {sorted(outside)[:5]}")
    # a cut walk may reach a node later than BFS would (a per-node cap hid the short way), never earlier
    depth_of = {n: d for d, level in enumerate(full.levels) for n in level}
    early = sorted(n for d, level in enumerate(cut.levels) for n in level if d < depth_of[n])
    if early:
        return f"{cut_name} (truncated) reached {len(early)} nodes before their BFS depth, e.g. {early[:5]}"
    return None


class Oracle:
    """Ground truth from the generated graph itself (in memory, no cap): the complete
    BFS levels around a node and exact shortest-path lengths. Adjacency by node index."""

    def __init__(self, nodes: int, edges: Iterable[tuple[int, int]], ident: Callable[[int], str],
                 index: Callable[[str], int]) -> None:
        self.out: list[list[int]] = [[] for _ in range(nodes)]
        self.inc: list[list[int]] = [[] for _ in range(nodes)]
        for s, t in edges:
            self.out[s].append(t)
            self.inc[t].append(s)
        names = [ident(i) for i in range(nodes)]  # one string per node, shared by every cached answer
        self.ident, self.index = names.__getitem__, index
        self._levels: dict[tuple[str, int], Levels] = {}

    def _expand(self, adj: list[list[int]]) -> Expand:
        return lambda frontier: [self.ident(nb) for n in frontier for nb in adj[self.index(n)]]

    def levels_in(self, start: str, max_depth: int) -> Levels:
        key = (start, max_depth)
        if key not in self._levels:
            self._levels[key] = bfs_levels(self._expand(self.inc), start, max_depth, max_nodes=len(self.out) + 1)
        return self._levels[key]

    def distance(self, source: str, target: str, max_depth: int) -> int | None:
        return bidirectional_distance(self._expand(self.out), self._expand(self.inc), source, target, max_depth)


def same_levels(a: Levels, b: Levels) -> bool:
    """Exactly the same answer: levels (as sets) and truncation."""
    return a.truncated == b.truncated and [set(x) for x in a.levels] == [set(x) for x in b.levels]


def compare_paths(a: int | None, b: int | None, a_name: str = "a", b_name: str = "b") -> str | None:
    """Path lengths (None = no path found) must agree."""
    if a == b:
        return None
    show = lambda x: "not found" if x is None else f"length {x}"  # noqa: E731
    return f"{a_name} {show(a)} vs {b_name} {show(b)}"


def levels_from_names(levels: Sequence[Sequence[str]], truncated: bool, prefix: str = "") -> Levels:
    """Levels from resource names (``prefix`` + id), e.g. a TraverseResponse's levels."""
    cut = len(prefix)
    return Levels(levels=[[n[cut:] if prefix and n.startswith(prefix) else n for n in level] for level in levels],
                  truncated=truncated)
