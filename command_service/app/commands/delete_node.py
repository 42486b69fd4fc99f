"""DeleteNode: RESTRICT refuses, CASCADE removes the node's edges with it.

A node with more edges than one transaction holds is tombstoned at once (no edge
can attach to it, reads treat it as gone) and a cascade job removes its edges in
bounded background batches (command_service.app.cascade.CascadeWorker).
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.edge import Direction, Edge
from domain.events import Causation
from domain.node import version_from_etag
from domain.ports import CascadeJob, Prefetch
from domain.rules import NoRestrictingEdges, check_rule
from domain.schema import Schema
from domain.values import EdgeKey

from command_service.app.common import (
    CommandMeta,
    TransactionLimits,
    WriteBudget,
    require_node,
    require_schema,
)
from command_service.app.ports import WriteUnitOfWork


@dataclass(frozen=True)
class DeleteNode:
    graph: str
    node_id: str
    etag: str = ""
    request_id: str = ""
    meta: CommandMeta = CommandMeta()


@dataclass(frozen=True)
class DeleteNodeResult:
    node_name: str
    removed_edges: int  # stored edge entries removed now (a symmetric edge is two)
    cascade_pending: bool  # the rest are removed in the background
    consistency_token: str = ""


async def remove_edges_of(uow: WriteUnitOfWork, graph: str, node_id: str, causation: Causation,
                          limit: int) -> int:
    """Remove up to ``limit`` stored edges touching the node (each with its EdgeRemoved)."""
    listed = await uow.edges.list_for_node(graph, node_id, Direction.BOTH, limit=limit)
    unique: dict[EdgeKey, Edge] = {}
    for edge in listed:
        unique.setdefault(edge.key, edge)  # a self-loop is listed as OUT and as IN
    edges = list(unique.values())
    for edge in edges:
        edge.remove(causation)
    await uow.edges.remove_many(edges)
    return len(edges)


class DeleteNodeHandler:
    command_type = DeleteNode
    result_type = DeleteNodeResult

    def __init__(self, limits: TransactionLimits = TransactionLimits()) -> None:
        self._limits = limits

    def plan(self, command: DeleteNode, schema: Schema, reads: Prefetch) -> DeleteNode:
        """Name what ``execute`` reads by key (for a batch's prefetch): the node."""
        reads.nodes.add((command.graph, command.node_id))
        return command

    async def execute(self, uow: WriteUnitOfWork, command: DeleteNode, causation: Causation,
                      budget: WriteBudget | None = None) -> DeleteNodeResult:
        budget = budget or WriteBudget.single(self._limits)
        expected = version_from_etag(command.etag, "etag") if command.etag else None
        schema = await require_schema(uow, command.graph)
        node = await require_node(uow, command.graph, command.node_id)
        counts = await uow.edges.counts_for_node(command.graph, command.node_id)
        for (edge_type, _direction), count in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
            et = schema.edge_types.get(edge_type)
            if et is not None:
                check_rule(NoRestrictingEdges(node.name, et, count))
        edges = sum(counts.values())  # an upper bound: a self-loop counts twice
        node.delete(expected_version=expected, causation=causation)
        for prop, value in node.unique_values(schema).items():
            await uow.nodes.release_unique(node.graph, node.type, prop, value, node.id)
        await uow.nodes.save(node)
        if edges == 0:
            return DeleteNodeResult(node_name=node.name, removed_edges=0, cascade_pending=False)
        if budget.fits(edges):
            budget.spend(edges, f"deleting {node.name}")
            removed = await remove_edges_of(uow, node.graph, node.id, causation, limit=edges)
            return DeleteNodeResult(node_name=node.name, removed_edges=removed, cascade_pending=False)
        if not budget.defer_cascades:
            budget.spend(edges, f"deleting {node.name}")  # raises BATCH_TOO_LARGE
        await uow.cascades.enqueue(CascadeJob(graph=node.graph, node_id=node.id, request_id=causation.request_id,
                                              trace_context=causation.trace_context,
                                              created_at=causation.occurred_at))
        return DeleteNodeResult(node_name=node.name, removed_edges=0, cascade_pending=True)
