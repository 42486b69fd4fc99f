"""RemoveEdge: removes the edge and, for a symmetric type, its mirror."""

from __future__ import annotations

from dataclasses import dataclass

from domain.edge import edge_not_found
from domain.events import Causation
from domain.ports import Prefetch
from domain.rules import needs_mirror
from domain.schema import Schema
from domain.values import EdgeKey

from command_service.app.common import CommandMeta, WriteBudget, require_schema
from command_service.app.ports import WriteUnitOfWork


@dataclass(frozen=True)
class RemoveEdge:
    graph: str
    source: str
    type: str
    target: str
    request_id: str = ""
    meta: CommandMeta = CommandMeta()


@dataclass(frozen=True)
class RemoveEdgeResult:
    removed_edges: int  # stored entries: 2 for a symmetric edge
    consistency_token: str = ""


class RemoveEdgeHandler:
    command_type = RemoveEdge
    result_type = RemoveEdgeResult

    def plan(self, command: RemoveEdge, schema: Schema, reads: Prefetch) -> RemoveEdge:
        """Name what ``execute`` reads (for a batch's prefetch): the key and its mirror."""
        key = EdgeKey(command.graph, command.source, command.type, command.target)
        reads.edges.add(key)
        et = schema.edge_types.get(command.type)
        if et is not None and needs_mirror(et):
            reads.edges.add(key.reversed())
        return command

    async def execute(self, uow: WriteUnitOfWork, command: RemoveEdge, causation: Causation,
                      budget: WriteBudget | None = None) -> RemoveEdgeResult:
        schema = await require_schema(uow, command.graph)
        et = schema.edge_type(command.type, "type")
        key = EdgeKey(command.graph, command.source, command.type, command.target)
        edge = await uow.edges.get(key)
        if edge is None:
            raise edge_not_found(key)
        victims = [edge]
        if needs_mirror(et) and command.source != command.target:
            mirror = await uow.edges.get(key.reversed())
            if mirror is not None:
                victims.append(mirror)
        if budget is not None:
            budget.spend(len(victims), f"removing edge {key.id}")
        for victim in victims:
            victim.remove(causation)
        await uow.edges.remove_many(victims)
        return RemoveEdgeResult(removed_edges=len(victims))
