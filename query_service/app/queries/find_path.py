"""FindPath: a shortest path by bidirectional BFS, one batched adjacency read per level.

The smaller frontier is expanded each round; after a round, every node reached
that the other side has also reached is a meeting point, and the one with the
smallest total distance gives a shortest path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from domain.edge import Direction
from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.views import AdjacencyKey, EdgeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel
from query_service.app.queries.get_node import node_not_found
from query_service.loading.loaders import RequestLoaders

DEFAULT_MAX_DEPTH, MAX_DEPTH = 6, 12
PER_NODE_LIMIT = 1000
MAX_VISITED = 100_000

_REVERSE = {Direction.OUT: Direction.IN, Direction.IN: Direction.OUT, Direction.BOTH: Direction.BOTH}


@dataclass(frozen=True)
class FindPath:
    graph: str
    source: str
    target: str
    edge_types: tuple[str, ...] = ()
    direction: Direction = Direction.OUT
    max_depth: int = 0
    consistency: Consistency | None = None


@dataclass
class PathResult:
    found: bool = False
    node_ids: list[str] = field(default_factory=list)
    edges: list[EdgeView] = field(default_factory=list)


class FindPathHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate, *, per_node_limit: int = PER_NODE_LIMIT) -> None:
        self._rm = read_model
        self._gate = gate
        self._limit = per_node_limit

    async def __call__(self, query: FindPath) -> PathResult:
        if query.max_depth < 0:
            raise ValidationFailed("max_depth must not be negative", reason=Reason.INVALID_ARGUMENT,
                                   violations=[FieldViolation("max_depth", "must be >= 0")])
        max_depth = DEFAULT_MAX_DEPTH if query.max_depth == 0 else min(query.max_depth, MAX_DEPTH)
        await self._gate.ensure(query.consistency)
        loaders = RequestLoaders(self._rm, query.graph)
        ends = await loaders.get_nodes([query.source, query.target])
        missing = [i for i in (query.source, query.target) if i not in ends]
        if missing:
            raise node_not_found(query.graph, missing)
        if query.source == query.target:
            return PathResult(found=True, node_ids=[query.source])
        # one list per requested type: a list of every type, cut at the per-node limit and
        # filtered afterwards, could be filled by other types and hide the path
        edge_types: list[str | None] = list(dict.fromkeys(query.edge_types)) or [None]

        # parent[node] = (previous node towards the side's root, edge between them)
        parents: list[dict[str, tuple[str, EdgeView] | None]] = [{query.source: None}, {query.target: None}]
        dist: list[dict[str, int]] = [{query.source: 0}, {query.target: 0}]
        frontiers: list[list[str]] = [[query.source], [query.target]]
        directions = [query.direction, _REVERSE[query.direction]]
        depth = [0, 0]
        while frontiers[0] and frontiers[1] and depth[0] + depth[1] < max_depth:
            side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
            other = 1 - side
            dirs = [Direction.OUT, Direction.IN] if directions[side] is Direction.BOTH else [directions[side]]
            requests = [(AdjacencyKey(n, d, t), self._limit) for n in frontiers[side] for d in dirs
                        for t in edge_types]
            lists = await loaders.get_adjacency(requests)  # ONE batched read per level
            depth[side] += 1
            nxt: list[str] = []
            for (key, _), edges in zip(requests, lists):
                for edge in edges:
                    nb = edge.neighbour_of(key.node) if edge.source != edge.target else key.node
                    if nb in dist[side]:
                        continue
                    dist[side][nb] = depth[side]
                    parents[side][nb] = (key.node, edge)
                    nxt.append(nb)
            frontiers[side] = nxt
            meets = [n for n in nxt if n in dist[other]]
            if meets:
                best = min(meets, key=lambda n: dist[side][n] + dist[other][n])
                return self._path(best, parents)
            if len(dist[0]) + len(dist[1]) > MAX_VISITED:
                break
        return PathResult(found=False)

    @staticmethod
    def _path(meet: str, parents: Sequence[dict[str, tuple[str, EdgeView] | None]]) -> PathResult:
        left: list[str] = [meet]
        left_edges: list[EdgeView] = []
        node = meet
        while parents[0][node] is not None:
            prev, edge = parents[0][node]  # type: ignore[misc]
            left.append(prev)
            left_edges.append(edge)
            node = prev
        left.reverse()
        left_edges.reverse()
        node = meet
        while parents[1][node] is not None:
            nxt, edge = parents[1][node]  # type: ignore[misc]
            left.append(nxt)
            left_edges.append(edge)
            node = nxt
        return PathResult(found=True, node_ids=left, edges=left_edges)
