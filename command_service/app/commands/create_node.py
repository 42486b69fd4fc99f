"""CreateNode: a typed node whose unique properties are claimed in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from domain.errors import AlreadyExists, Reason
from domain.events import Causation
from domain.node import Node
from domain.ports import IdGenerator
from domain.rules import UniqueValueFree, check_rule
from domain.values import NodeRef, PropertyValue

from command_service.app.common import NODE_RESOURCE, CommandMeta, WriteBudget, require_schema
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

    async def execute(self, uow: WriteUnitOfWork, command: CreateNode, causation: Causation,
                      budget: WriteBudget | None = None) -> CreateNodeResult:
        schema = await require_schema(uow, command.graph)
        schema.node_type(command.type, "node.type")
        node_id = command.node_id or self._ids.new_id()
        if await uow.nodes.get(command.graph, node_id) is not None:
            # Tombstoned ids stay taken: a re-created node would inherit edges still
            # being cascaded away and confuse readers holding the old etag.
            name = NodeRef(command.graph, node_id).name
            raise AlreadyExists(f"node {name} already exists (or existed: deleted ids are not reused)",
                                resource_type=NODE_RESOURCE, resource_name=name, reason=Reason.NODE_ALREADY_EXISTS)
        node = Node.create(graph=command.graph, node_id=node_id, type_name=command.type,
                           properties=dict(command.properties), schema=schema, causation=causation)
        for prop, value in node.unique_values(schema).items():
            holder = await uow.nodes.unique_holder(node.graph, node.type, prop, value)
            check_rule(UniqueValueFree(node.type, prop, value, holder, node.id))
            await uow.nodes.claim_unique(node.graph, node.type, prop, value, node.id)
        await uow.nodes.add(node)
        return CreateNodeResult(node=node)
