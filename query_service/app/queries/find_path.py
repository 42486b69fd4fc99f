"""FindPath: a shortest path by bidirectional BFS over ids, one read per level.

Exact within ``max_depth``: every level reads the WHOLE adjacency lists of the side it
expands (ids only, chunk by chunk in one read), so a path through an old edge of a
heavily followed node is found like any other. The side with the smaller frontier is
expanded each round; after a round, every node reached that the other side has also
reached is a meeting point, and the one with the smallest total distance gives a
shortest path. The ends are read only when no path is found (a found path proves
both exist: lists hold live nodes only). Only a budget can end the search early — the call's deadline or
MAX_VISITED nodes — and then the answer says ``truncated`` with the reason, so
``found = false`` is never silently "not found within what we happened to read".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from domain.edge import Direction
from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.views import AdjacencyKey, Detail, EdgeView, NodeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel
from query_service.app.queries.get_node import node_not_found
from query_service.loading.loaders import RequestLoaders

DEFAULT_MAX_DEPTH, MAX_DEPTH = 6, 12
MAX_VISITED = 200_000  # nodes reached by both sides together before the search gives up
DEADLINE_MARGIN = 0.02

_REVERSE = {Direction.OUT: Direction.IN, Direction.IN: Direction.OUT, Direction.BOTH: Direction.BOTH}

# node -> (the node one step nearer the side's root, edge type, direction of that step), None at the root
Parents = dict[str, "tuple[str, str, Direction] | None"]


@dataclass(frozen=True)
class FindPath:
    graph: str
    source: str
    target: str
    edge_types: tuple[str, ...] = ()
    direction: Direction = Direction.OUT
    max_depth: int = 0
    consistency: Consistency | None = None
    detail: Detail = Detail.NAMES


@dataclass
class PathResult:
    found: bool = False
    node_ids: list[str] = field(default_factory=list)
    edges: list[EdgeView] = field(default_factory=list)
    nodes: list[NodeView] = field(default_factory=list)  # for the BASIC and FULL views
    truncated: bool = False
    truncated_reason: str = ""
    detail: Detail = Detail.NAMES


class FindPathHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate, *,
                 time_remaining: Callable[[], float | None] = lambda: None, max_visited: int = MAX_VISITED) -> None:
        self._rm = read_model
        self._gate = gate
        self._remaining = time_remaining
        self._max_visited = max_visited
        self.last_loaders: RequestLoaders | None = None

    async def __call__(self, query: FindPath) -> PathResult:
        if query.max_depth < 0:
            raise ValidationFailed("max_depth must not be negative", reason=Reason.INVALID_ARGUMENT,
                                   violations=[FieldViolation("max_depth", "must be >= 0")])
        max_depth = DEFAULT_MAX_DEPTH if query.max_depth == 0 else min(query.max_depth, MAX_DEPTH)
        await self._gate.ensure(query.consistency, query.graph)
        loaders = self.last_loaders = RequestLoaders(self._rm, query.graph)
        if query.source == query.target:
            await self._require_ends(loaders, query)
            return await self._answer(loaders, query, [query.source], [])
        edge_types = list(dict.fromkeys(query.edge_types))
        if not edge_types:  # every type the schema declares: each list is read whole, per type
            schema = await self._rm.get_schema(query.graph)
            edge_types = sorted(schema.edge_types) if schema is not None else []
        parents: list[Parents] = [{query.source: None}, {query.target: None}]
        dist: list[dict[str, int]] = [{query.source: 0}, {query.target: 0}]
        frontiers: list[list[str]] = [[query.source], [query.target]]
        directions = [query.direction, _REVERSE[query.direction]]
        depth = [0, 0]
        while frontiers[0] and frontiers[1] and depth[0] + depth[1] < max_depth and edge_types:
            left = self._remaining()
            if left is not None and left <= DEADLINE_MARGIN:
                await self._require_ends(loaders, query)
                return PathResult(truncated=True, truncated_reason="deadline", detail=query.detail)
            side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
            other = 1 - side
            dirs = (Direction.OUT, Direction.IN) if directions[side] is Direction.BOTH else (directions[side],)
            keys = [AdjacencyKey(n, d, t) for n in frontiers[side] for d in dirs for t in edge_types]
            lists = await loaders.neighbour_ids(keys, None)  # ONE read per level, whole lists
            depth[side] += 1
            seen, back = dist[side], parents[side]
            nxt: list[str] = []
            for key in keys:
                entry = lists.get(key)
                if entry is None:
                    continue
                for nb in entry.ids:
                    if nb in seen:
                        continue
                    seen[nb] = depth[side]
                    back[nb] = (key.node, key.edge_type or "", key.direction)
                    nxt.append(nb)
            frontiers[side] = nxt
            meets = [n for n in nxt if n in dist[other]]
            if meets:
                best = min(meets, key=lambda n: dist[side][n] + dist[other][n])
                nodes, triples = _path(best, parents)
                return await self._answer(loaders, query, nodes, triples)
            if len(dist[0]) + len(dist[1]) > self._max_visited:
                await self._require_ends(loaders, query)
                return PathResult(truncated=True, truncated_reason="max_visited", detail=query.detail)
        await self._require_ends(loaders, query)
        return PathResult(found=False, detail=query.detail)

    @staticmethod
    async def _require_ends(loaders: RequestLoaders, query: FindPath) -> None:
        """NOT_FOUND for a missing end. Read only when no path was found (or source is target):
        adjacency lists hold live nodes only, so a path found proves both ends exist."""
        ends = await loaders.get_nodes([query.source, query.target], properties=False)
        missing = [i for i in (query.source, query.target) if i not in ends]
        if missing:
            raise node_not_found(query.graph, missing)

    @staticmethod
    async def _answer(loaders: RequestLoaders, query: FindPath, node_ids: list[str],
                      triples: list[tuple[str, str, str]]) -> PathResult:
        found = await loaders.get_edges(triples)  # the path's edges with their properties: one read
        result = PathResult(found=True, node_ids=node_ids, edges=[found[t] for t in triples if t in found],
                            detail=query.detail)
        if query.detail is not Detail.NAMES:
            views = await loaders.get_nodes(node_ids, properties=query.detail is Detail.FULL)
            result.nodes = [views[i] for i in node_ids if i in views]
        return result


def _triple(node: str, step: tuple[str, str, Direction]) -> tuple[str, str, str]:
    """The stored edge between ``node`` and the node one step nearer its side's root."""
    nearer, edge_type, direction = step
    return (nearer, edge_type, node) if direction is Direction.OUT else (node, edge_type, nearer)


def _path(meet: str, parents: Sequence[Parents]) -> tuple[list[str], list[tuple[str, str, str]]]:
    nodes: list[str] = [meet]
    triples: list[tuple[str, str, str]] = []
    node = meet
    while (step := parents[0][node]) is not None:
        triples.append(_triple(node, step))
        node = step[0]
        nodes.append(node)
    nodes.reverse()
    triples.reverse()
    node = meet
    while (step := parents[1][node]) is not None:
        triples.append(_triple(node, step))
        node = step[0]
        nodes.append(node)
    return nodes, triples
