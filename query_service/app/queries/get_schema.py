"""GetSchema: a graph's current schema (an empty version-0 schema if none was applied)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.schema import Schema
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel


@dataclass(frozen=True)
class GetSchema:
    graph: str
    consistency: Consistency | None = None


class GetSchemaHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate) -> None:
        self._rm = read_model
        self._gate = gate

    async def __call__(self, query: GetSchema) -> Schema:
        await self._gate.ensure(query.consistency, query.graph)
        return await self._rm.get_schema(query.graph) or Schema(graph=query.graph)
