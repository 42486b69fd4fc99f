"""CountEdges: O(1) from the per-node per-type per-direction counter."""

from __future__ import annotations

from dataclasses import dataclass

from domain.edge import Direction
from domain.errors import FieldViolation, Reason, ValidationFailed
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel
from query_service.app.queries.get_node import node_not_found


def require_one_direction(direction: Direction, field: str = "direction") -> Direction:
    if direction not in (Direction.OUT, Direction.IN):
        raise ValidationFailed(f"{field} must be OUT or IN", reason=Reason.INVALID_ARGUMENT,
                               violations=[FieldViolation(field, "must be OUT or IN")])
    return direction


@dataclass(frozen=True)
class CountEdges:
    graph: str
    node_id: str
    edge_type: str
    direction: Direction
    consistency: Consistency | None = None


class CountEdgesHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate) -> None:
        self._rm = read_model
        self._gate = gate

    async def __call__(self, query: CountEdges) -> int:
        require_one_direction(query.direction)
        await self._gate.ensure(query.consistency, query.graph)
        count = await self._rm.count_edges(query.graph, query.node_id, query.edge_type, query.direction)
        if count == 0 and not await self._rm.get_nodes(query.graph, [query.node_id], properties=False):
            raise node_not_found(query.graph, [query.node_id])  # as GetNode: no such node is not "0 edges"
        return count
