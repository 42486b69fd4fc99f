"""ListEdges: a node's adjacency, newest first, keyset-paged with signed tokens.

``include_neighbors`` loads every neighbour of the page in ONE batched read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.values import epoch_micros
from domain.edge import Direction
from domain.views import AdjacencyKey, Detail, EdgeView, NodeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.paging import PageTokens, page_size
from query_service.app.ports import ReadModel
from query_service.app.queries.count_edges import require_one_direction
from query_service.app.queries.get_node import node_not_found


def _us(value: datetime | None) -> int | None:
    return None if value is None else epoch_micros(value)


@dataclass(frozen=True)
class ListEdges:
    graph: str
    node_id: str
    direction: Direction
    edge_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    page_size: int = 0
    page_token: str = ""
    include_neighbors: bool = False
    neighbor_detail: Detail = Detail.BASIC
    consistency: Consistency | None = None


@dataclass(frozen=True)
class AdjacencyPage:
    edges: list[EdgeView]
    neighbors: list[NodeView] = field(default_factory=list)
    next_page_token: str = ""


class ListEdgesHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate, tokens: PageTokens) -> None:
        self._rm = read_model
        self._gate = gate
        self._tokens = tokens

    async def __call__(self, query: ListEdges) -> AdjacencyPage:
        require_one_direction(query.direction)
        size = page_size(query.page_size)
        params = {"graph": query.graph, "node": query.node_id, "direction": query.direction.value,
                  "edge_type": query.edge_type, "after": _us(query.created_after),
                  "before": _us(query.created_before)}  # include_neighbors shapes the page, not the result set
        cursor = self._tokens.read(query.page_token, "ListEdges", params, graph=query.graph)
        await self._gate.ensure(query.consistency, query.graph)
        after = (int(cursor[0]), str(cursor[1]), str(cursor[2])) if cursor else None
        rows = await self._rm.list_adjacency(
            query.graph, AdjacencyKey(query.node_id, query.direction, query.edge_type or None), limit=size + 1,
            after=after, created_after_us=_us(query.created_after), created_before_us=_us(query.created_before))
        if not rows:
            # an empty page: tell "no edges" from "no such node" (AIP-132), also when a page
            # token points into the adjacency of a node deleted since
            if not await self._rm.get_nodes(query.graph, [query.node_id]):
                raise node_not_found(query.graph, [query.node_id])
        page = rows[:size]
        token = (self._tokens.issue("ListEdges", params, list(page[-1][0]), graph=query.graph)
                 if len(rows) > size else "")
        edges = [e for _, e in page]
        neighbors: list[NodeView] = []
        if query.include_neighbors and edges:
            ids = list(dict.fromkeys(e.neighbour_of(query.node_id) if e.source != e.target else e.source
                                     for e in edges))
            found = await self._rm.get_nodes(query.graph, ids, properties=query.neighbor_detail is Detail.FULL)
            neighbors = [found[i] for i in ids if i in found]
        return AdjacencyPage(edges=edges, neighbors=neighbors, next_page_token=token)
