"""AddEdge: endpoints, cardinality, acyclicity and symmetry, checked in the transaction.

Acyclicity is a bounded BFS over ``EdgeRepository.out_neighbours`` (one storage round
per level) guarded by the (graph, edge type) topology version, so that it holds on an
engine without recursive queries and under concurrent writers (``app.acyclicity``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from domain.edge import Direction, Edge, edge_already_exists
from domain.events import Causation
from domain.ports import Prefetch
from domain.rules import CardinalityRespected, EndpointExists, EndpointHasType, NoCycle, check_rule, needs_mirror
from domain.schema import Cardinality, EdgeType, Schema
from domain.values import EdgeKey, NodeRef, PropertyValue

from command_service.app.acyclicity import guard_topology, reaches
from command_service.app.common import CommandMeta, TransactionLimits, WriteBudget, require_schema
from command_service.app.ports import WriteUnitOfWork


@dataclass(frozen=True)
class AddEdge:
    graph: str
    source: str
    type: str
    target: str
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    request_id: str = ""
    meta: CommandMeta = CommandMeta()


@dataclass(frozen=True)
class AddEdgeResult:
    edge: Edge
    consistency_token: str = ""


async def _check_cardinality(uow: WriteUnitOfWork, et: EdgeType, graph: str, source: str, target: str) -> None:
    if et.cardinality.max_out is not None:
        out = await uow.edges.count(graph, source, et.name, Direction.OUT)
        check_rule(CardinalityRespected(et, NodeRef(graph, source).name, "OUT", out))
    if et.cardinality.max_in is not None:
        incoming = await uow.edges.count(graph, target, et.name, Direction.IN)
        check_rule(CardinalityRespected(et, NodeRef(graph, target).name, "IN", incoming))


class AddEdgeHandler:
    command_type = AddEdge
    result_type = AddEdgeResult

    def __init__(self, limits: TransactionLimits = TransactionLimits()) -> None:
        self._max_cycle_check_nodes = limits.max_cycle_check_nodes

    def plan(self, command: AddEdge, schema: Schema, reads: Prefetch) -> AddEdge:
        """Name what ``execute`` reads (for a batch's prefetch): the endpoints, the key
        (and its mirror), and the counters a capped cardinality checks."""
        graph, source, target = command.graph, command.source, command.target
        key = EdgeKey(graph, source, command.type, target)
        reads.nodes.update(((graph, source), (graph, target)))
        reads.edges.add(key)
        et = schema.edge_types.get(command.type)
        if et is None:
            return command
        mirrored = needs_mirror(et) and source != target
        if mirrored:
            reads.edges.add(key.reversed())
        for a, b in ((source, target), (target, source)) if mirrored else ((source, target),):
            if et.cardinality.max_out is not None:
                reads.counters.add((graph, a, et.name, "OUT"))
            if et.cardinality.max_in is not None:
                reads.counters.add((graph, b, et.name, "IN"))
        return command

    async def execute(self, uow: WriteUnitOfWork, command: AddEdge, causation: Causation,
                      budget: WriteBudget | None = None) -> AddEdgeResult:
        graph = command.graph
        schema = await require_schema(uow, graph)
        et = schema.edge_type(command.type)
        props = schema.validate_edge_properties(command.type, dict(command.properties))
        nodes = await uow.nodes.get_many(graph, [command.source, command.target])
        source, target = nodes.get(command.source), nodes.get(command.target)
        check_rule(EndpointExists("source", f"graphs/{graph}/nodes/{command.source}", source))  # NodeRef.name
        check_rule(EndpointExists("target", f"graphs/{graph}/nodes/{command.target}", target))
        assert source is not None and target is not None
        check_rule(EndpointHasType("source", source, et))
        check_rule(EndpointHasType("target", target, et))

        key = EdgeKey(graph, command.source, command.type, command.target)
        if await uow.edges.get(key) is not None:
            # Retries are made safe by request_id (AIP-155), so a second AddEdge of the
            # same key is a caller error, whatever its properties. Checked before the
            # cardinality rules, which the existing edge itself would otherwise break.
            raise edge_already_exists(key)

        mirrored = needs_mirror(et) and command.source != command.target
        if et.cardinality is not Cardinality.MANY_TO_MANY:  # nothing to count otherwise
            await _check_cardinality(uow, et, graph, command.source, command.target)
            if mirrored:
                await _check_cardinality(uow, et, graph, command.target, command.source)
        if et.acyclic:
            # the version first: a topology change committed after this read fails our commit
            await guard_topology(uow.edges, graph, et.name)
            closes = await reaches(uow.edges, graph, et.name, command.target, command.source,
                                   max_visited=self._max_cycle_check_nodes)
            check_rule(NoCycle(et, source.name, target.name, closes))
        if budget is not None:
            budget.spend(2 if mirrored else 1, f"adding edge {key.id}")

        edge = Edge.create(graph=graph, source=command.source, type_name=command.type, target=command.target,
                           properties=props, schema=schema, causation=causation)
        await uow.edges.add(edge)
        if mirrored:
            await uow.edges.add(edge.mirror(causation))
        return AddEdgeResult(edge=edge)
