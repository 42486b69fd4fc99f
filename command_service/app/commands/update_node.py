"""UpdateNode: AIP-134 partial update guarded by the etag (AIP-154)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from domain.events import Causation
from domain.node import Node, version_from_etag
from domain.ports import Prefetch
from domain.schema import Schema
from domain.values import PropertyValue

from command_service.app.common import CommandMeta, WriteBudget, claim_unique_value, require_node, require_schema
from command_service.app.ports import WriteUnitOfWork


@dataclass(frozen=True)
class UpdateNode:
    graph: str
    node_id: str
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    update_mask: tuple[str, ...] = ()  # empty: every property present in `properties`
    etag: str = ""  # empty: no optimistic lock
    type: str = ""  # empty, or the node's (immutable) type
    request_id: str = ""
    meta: CommandMeta = CommandMeta()


@dataclass(frozen=True)
class UpdateNodeResult:
    node: Node
    consistency_token: str = ""


class UpdateNodeHandler:
    command_type = UpdateNode
    result_type = UpdateNodeResult

    def plan(self, command: UpdateNode, schema: Schema, reads: Prefetch) -> UpdateNode:
        """Name what ``execute`` reads (for a batch's prefetch): the node."""
        reads.nodes.add((command.graph, command.node_id))
        return command

    async def execute(self, uow: WriteUnitOfWork, command: UpdateNode, causation: Causation,
                      budget: WriteBudget | None = None) -> UpdateNodeResult:
        expected = version_from_etag(command.etag, "node.etag") if command.etag else None
        schema = await require_schema(uow, command.graph)
        node = await require_node(uow, command.graph, command.node_id)
        before = node.unique_values(schema)
        node.update(properties=dict(command.properties), update_mask=list(command.update_mask) or None,
                    expected_version=expected, schema=schema, causation=causation, type_name=command.type)
        after = node.unique_values(schema)
        for prop in sorted(set(before) | set(after)):
            old, new = before.get(prop), after.get(prop)
            if old == new:
                continue
            if old is not None:
                await uow.nodes.release_unique(node.graph, node.type, prop, old, node.id)
            if new is not None:
                await claim_unique_value(uow, node, prop, new)
        await uow.nodes.save(node)
        return UpdateNodeResult(node=node)
