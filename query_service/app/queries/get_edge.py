"""GetEdge: one edge by (source, type, target)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import NotFound, Reason
from domain.values import EdgeKey
from domain.views import EdgeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel

EDGE_RESOURCE_TYPE = "edgewise.graph.v1/Edge"


@dataclass(frozen=True)
class GetEdge:
    graph: str
    source: str
    edge_type: str
    target: str
    consistency: Consistency | None = None


class GetEdgeHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate) -> None:
        self._rm = read_model
        self._gate = gate

    async def __call__(self, query: GetEdge) -> EdgeView:
        await self._gate.ensure(query.consistency, query.graph)
        edge = await self._rm.get_edge(query.graph, query.source, query.edge_type, query.target)
        if edge is None:
            key = EdgeKey(query.graph, query.source, query.edge_type, query.target)
            raise NotFound(f"edge {key.id} not found in graph {query.graph!r}", resource_type=EDGE_RESOURCE_TYPE,
                           resource_name=f"graphs/{query.graph}/edges/{key.id}", reason=Reason.EDGE_NOT_FOUND)
        return edge
