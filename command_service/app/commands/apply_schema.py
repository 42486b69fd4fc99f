"""ApplySchema: create or evolve a graph's schema (additive changes only)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.events import Causation
from domain.schema import EdgeType, NodeType, Schema
from domain.values import check_graph_id

from command_service.app.common import CommandMeta
from command_service.app.ports import WriteUnitOfWork


@dataclass(frozen=True)
class ApplySchema:
    graph: str
    node_types: tuple[NodeType, ...]
    edge_types: tuple[EdgeType, ...]
    expected_version: int | None = None  # None: no optimistic lock
    request_id: str = ""
    meta: CommandMeta = CommandMeta()


@dataclass(frozen=True)
class ApplySchemaResult:
    schema: Schema
    consistency_token: str = ""


class ApplySchemaHandler:
    command_type = ApplySchema
    result_type = ApplySchemaResult

    async def execute(self, uow: WriteUnitOfWork, command: ApplySchema, causation: Causation) -> ApplySchemaResult:
        check_graph_id(command.graph)
        schema = await uow.schemas.get(command.graph)
        # Schema.apply needs a synchronous "is this type in use?": count, up front, only
        # the types the new declaration drops.
        kept_nodes = {t.name for t in command.node_types}
        kept_edges = {t.name for t in command.edge_types}
        in_use: set[tuple[str, str]] = set()
        for name in schema.node_types:
            if name not in kept_nodes and await uow.nodes.count_of_type(command.graph, name) > 0:
                in_use.add(("node", name))
        for name in schema.edge_types:
            if name not in kept_edges and await uow.edges.count_of_type(command.graph, name) > 0:
                in_use.add(("edge", name))
        schema.apply(command.node_types, command.edge_types, expected_version=command.expected_version,
                     type_in_use=lambda kind, name: (kind, name) in in_use, causation=causation)
        await uow.schemas.save(schema)
        return ApplySchemaResult(schema=schema)
