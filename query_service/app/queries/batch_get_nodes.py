"""BatchGetNodes (AIP-231): up to 1000 nodes in request order, one read; any missing
node fails the whole call with NOT_FOUND naming the missing ones."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.views import Detail, NodeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel
from query_service.app.queries.get_node import node_not_found

MAX_BATCH = 1000


@dataclass(frozen=True)
class BatchGetNodes:
    graph: str
    node_ids: tuple[str, ...]
    consistency: Consistency | None = None
    detail: Detail = Detail.FULL


class BatchGetNodesHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate) -> None:
        self._rm = read_model
        self._gate = gate

    async def __call__(self, query: BatchGetNodes) -> list[NodeView]:
        if len(query.node_ids) > MAX_BATCH:
            raise ValidationFailed(f"at most {MAX_BATCH} names per call, got {len(query.node_ids)}",
                                   reason=Reason.BATCH_TOO_LARGE,
                                   violations=[FieldViolation("names", f"must hold at most {MAX_BATCH} names")],
                                   metadata={"limit": str(MAX_BATCH)})
        await self._gate.ensure(query.consistency, query.graph)
        found = await self._rm.get_nodes(query.graph, list(query.node_ids),
                                         properties=query.detail is Detail.FULL) if query.node_ids else {}
        missing = [i for i in dict.fromkeys(query.node_ids) if i not in found]
        if missing:
            raise node_not_found(query.graph, missing)
        return [found[i] for i in query.node_ids]
