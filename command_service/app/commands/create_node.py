"""CreateNode: a typed node whose unique properties are claimed in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from domain.events import Causation
from domain.node import Node
from domain.ports import IdGenerator, Prefetch
from domain.schema import Schema
from domain.values import PropertyValue

from command_service.app.common import CommandMeta, WriteBudget, claim_unique_value, require_schema
from command_service.app.ports import WriteUnitOfWork


@dataclass(frozen=True)
class CreateNode:
    graph: str
    type: str
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    node_id: str = ""  # empty: the server generates one
    request_id: str = ""
    meta: CommandMeta = CommandMeta()


@dataclass(frozen=True)
class CreateNodeResult:
    node: Node
    consistency_token: str = ""


class CreateNodeHandler:
    command_type = CreateNode
    result_type = CreateNodeResult

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids

    def plan(self, command: CreateNode, schema: Schema, reads: Prefetch) -> CreateNode:
        """Name what ``execute`` reads (for a batch's prefetch): the id (generated now if
        the caller left it empty) and the unique values it will claim."""
        if not command.node_id:
            command = replace(command, node_id=self._ids.new_id())
        reads.nodes.add((command.graph, command.node_id))
        nt = schema.node_types.get(command.type)
        for prop in nt.unique_properties if nt is not None else ():
            if prop.name in command.properties:
                reads.unique_values.append((command.graph, command.type, prop.name, command.properties[prop.name]))
        return command

    async def execute(self, uow: WriteUnitOfWork, command: CreateNode, causation: Causation,
                      budget: WriteBudget | None = None) -> CreateNodeResult:
        schema = await require_schema(uow, command.graph)
        schema.node_type(command.type, "node.type")
        node = Node.create(graph=command.graph, node_id=command.node_id or self._ids.new_id(),
                           type_name=command.type, properties=dict(command.properties), schema=schema,
                           causation=causation)
        # Added before its unique values are claimed, so a taken id (tombstones included)
        # is ALREADY_EXISTS, whatever its unique values.
        await uow.nodes.add(node)
        for prop, value in node.unique_values(schema).items():
            await claim_unique_value(uow, node, prop, value)
        return CreateNodeResult(node=node)
