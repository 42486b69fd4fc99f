"""GetNode: one node view (properties, version, edge counts) in one read."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import NotFound, Reason
from domain.values import NodeRef
from domain.views import NodeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel

NODE_RESOURCE_TYPE = "edgewise.graph.v1/Node"


def node_not_found(graph: str, node_ids: list[str]) -> NotFound:
    names = [NodeRef(graph, i).name for i in node_ids]
    message = f"node {names[0]} not found" if len(names) == 1 else f"{len(names)} nodes not found: {', '.join(names[:20])}"
    return NotFound(message, resource_type=NODE_RESOURCE_TYPE, resource_name=names[0], reason=Reason.NODE_NOT_FOUND,
                    metadata={"missing": ",".join(names[:20]), "missing_count": str(len(names))})


@dataclass(frozen=True)
class GetNode:
    graph: str
    node_id: str
    consistency: Consistency | None = None


class GetNodeHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate) -> None:
        self._rm = read_model
        self._gate = gate

    async def __call__(self, query: GetNode) -> NodeView:
        await self._gate.ensure(query.consistency, query.graph)
        found = await self._rm.get_nodes(query.graph, [query.node_id])
        view = found.get(query.node_id)
        if view is None:
            raise node_not_found(query.graph, [query.node_id])
        return view
