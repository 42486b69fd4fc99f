"""Traverse: level-synchronous BFS from a start node along a sequence of steps.

Each level costs exactly two batched reads through the request's loaders (every
frontier node's adjacency, then every newly reached node), so a traversal of
depth d costs 2 + 2d round trips (schema, start node, then two per level)
whatever the fan-out. Budgets cut it short with ``truncated`` and the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from domain.edge import Direction
from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.schema import Schema
from domain.specifications import MATCH_ALL, Specification, parse_filter
from domain.views import AdjacencyKey, EdgeView, NodeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel
from query_service.app.queries.get_node import node_not_found
from query_service.loading.loaders import AdjacencyRequest, NaiveLoaders, RequestLoaders

MAX_STEPS = 10
DEFAULT_MAX_NODES, MAX_MAX_NODES = 1000, 10_000
DEFAULT_FANOUT, MAX_FANOUT = 100, 1000
DEADLINE_MARGIN = 0.02  # seconds kept back to send what we have


@dataclass(frozen=True)
class TraversalStep:
    edge_type: str
    direction: Direction
    node_filter: str = ""
    per_node_limit: int = 0
    repeat: bool = False  # only on the last step: apply it level after level up to max_depth


@dataclass(frozen=True)
class TraversalBudget:
    max_depth: int = 0
    max_nodes: int = 0
    per_node_fanout: int = 0


@dataclass(frozen=True)
class Traverse:
    graph: str
    start: str
    steps: tuple[TraversalStep, ...]
    budget: TraversalBudget = TraversalBudget()
    consistency: Consistency | None = None


@dataclass(frozen=True)
class TraversalLevel:
    depth: int
    node_ids: list[str]


@dataclass
class TraversalResult:
    nodes: list[NodeView] = field(default_factory=list)
    edges: list[EdgeView] = field(default_factory=list)
    levels: list[TraversalLevel] = field(default_factory=list)
    truncated: bool = False
    truncated_reason: str = ""


class Loaders(Protocol):
    async def get_nodes(self, ids: Sequence[str]) -> dict[str, NodeView]: ...

    async def get_adjacency(self, requests: Sequence[AdjacencyRequest]) -> list[list[EdgeView]]: ...


def _invalid(field_path: str, description: str) -> ValidationFailed:
    return ValidationFailed(f"{field_path}: {description}", reason=Reason.INVALID_ARGUMENT,
                            violations=[FieldViolation(field_path, description)])


def _bounded(value: int, default: int, maximum: int, field_path: str) -> int:
    if value < 0:
        raise _invalid(field_path, "must not be negative")
    return default if value == 0 else min(value, maximum)


class TraverseHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate, *,
                 time_remaining: Callable[[], float | None] = lambda: None, engine: str = "batched") -> None:
        if engine not in ("batched", "naive", "shadow"):
            raise ValueError(f"unknown traverse engine {engine!r}")
        self._rm = read_model
        self._gate = gate
        self._remaining = time_remaining
        self.engine = engine
        self.shadow_mismatches = 0

    async def __call__(self, query: Traverse) -> TraversalResult:
        if not query.steps:
            raise _invalid("steps", "at least one step is required")
        if len(query.steps) > MAX_STEPS:
            raise _invalid("steps", f"at most {MAX_STEPS} steps")
        max_depth = _bounded(query.budget.max_depth, MAX_STEPS, MAX_STEPS, "budget.max_depth")
        max_nodes = _bounded(query.budget.max_nodes, DEFAULT_MAX_NODES, MAX_MAX_NODES, "budget.max_nodes")
        fanout = _bounded(query.budget.per_node_fanout, DEFAULT_FANOUT, MAX_FANOUT, "budget.per_node_fanout")
        for i, step in enumerate(query.steps):
            _bounded(step.per_node_limit, 0, MAX_FANOUT, f"steps[{i}].per_node_limit")
            if step.repeat and i != len(query.steps) - 1:
                raise _invalid(f"steps[{i}].repeat", "only the last step may repeat")
        steps = list(query.steps)
        if steps[-1].repeat:
            steps += [steps[-1]] * max(0, max_depth - len(steps))
        await self._gate.ensure(query.consistency)
        schema = await self._rm.get_schema(query.graph) or Schema(graph=query.graph)
        filters = self._compile(schema, steps)
        run = lambda loaders: self._walk(loaders, query, steps, filters, max_depth, max_nodes, fanout)  # noqa: E731
        if self.engine == "naive":
            return await run(NaiveLoaders(self._rm, query.graph))
        result = await run(RequestLoaders(self._rm, query.graph))
        if self.engine == "shadow":
            legacy = await run(NaiveLoaders(self._rm, query.graph))
            if _fingerprint(legacy) != _fingerprint(result):
                self.shadow_mismatches += 1
        return result

    @staticmethod
    def _compile(schema: Schema, steps: Sequence[TraversalStep]) -> list[Specification]:
        filters: list[Specification] = []
        for i, step in enumerate(steps):
            edge_type = schema.edge_type(step.edge_type, f"steps[{i}].edge_type")
            if not step.node_filter:
                filters.append(MATCH_ALL)
                continue
            # the node type a step reaches is fixed by its edge type (both ends for BOTH)
            reached = {Direction.OUT: [edge_type.target_type], Direction.IN: [edge_type.source_type],
                       Direction.BOTH: [edge_type.target_type, edge_type.source_type]}[step.direction]
            if len(set(reached)) > 1:
                raise _invalid(f"steps[{i}].node_filter",
                               "a filter on a BOTH step needs an edge type whose ends have the same node type")
            node_type = schema.node_type(reached[0], f"steps[{i}].edge_type")
            filters.append(parse_filter(step.node_filter, node_type, field=f"steps[{i}].node_filter"))
        return filters

    async def _walk(self, loaders: Loaders, query: Traverse, steps: Sequence[TraversalStep],
                    filters: list[Specification], max_depth: int,
                    max_nodes: int, fanout: int) -> TraversalResult:
        result = TraversalResult()
        start = (await loaders.get_nodes([query.start])).get(query.start)
        if start is None:
            raise node_not_found(query.graph, [query.start])
        result.nodes.append(start)
        result.levels.append(TraversalLevel(0, [start.id]))
        visited = {start.id}
        seen_edges: set[tuple[str, str, str]] = set()
        frontier = [start.id]

        def cut(reason: str) -> None:
            if not result.truncated:
                result.truncated, result.truncated_reason = True, reason

        for depth, (step, spec) in enumerate(zip(steps, filters), start=1):
            if not frontier:
                break
            if depth > max_depth:
                cut("max_depth")
                break
            remaining = self._remaining()
            if remaining is not None and remaining <= DEADLINE_MARGIN:
                cut("deadline")
                break
            limit = min(step.per_node_limit or fanout, fanout)
            directions = [Direction.OUT, Direction.IN] if step.direction is Direction.BOTH else [step.direction]
            requests = [(AdjacencyKey(n, d, step.edge_type), limit + 1) for n in frontier for d in directions]
            lists = await loaders.get_adjacency(requests)  # ONE batched read for the level
            followed: list[tuple[str, EdgeView]] = []
            for (key, _), edges in zip(requests, lists):
                if len(edges) > limit:
                    cut("per_node_fanout")
                for edge in edges[:limit]:
                    followed.append((edge.neighbour_of(key.node) if edge.source != edge.target else key.node, edge))
            new_ids = list(dict.fromkeys(nb for nb, _ in followed if nb not in visited))
            views = await loaders.get_nodes(new_ids) if new_ids else {}  # ONE batched read for the level
            admitted: list[str] = []
            for nb in new_ids:
                view = views.get(nb)
                if view is None or not spec.is_satisfied_by(view.properties):
                    continue
                if len(result.nodes) >= max_nodes:
                    cut("max_nodes")
                    break
                admitted.append(nb)
                visited.add(nb)
                result.nodes.append(view)
            reached = set(admitted)
            for nb, edge in followed:
                ident = (edge.source, edge.type, edge.target)
                if ident in seen_edges:
                    continue
                if nb in reached or (nb in visited and nb not in new_ids):
                    seen_edges.add(ident)
                    result.edges.append(edge)
            if admitted:
                result.levels.append(TraversalLevel(depth, admitted))
            frontier = admitted
            if result.truncated and result.truncated_reason == "max_nodes":
                break
            await asyncio.sleep(0)
        return result


def _fingerprint(result: TraversalResult) -> tuple:
    return (tuple(n.id for n in result.nodes), tuple((e.source, e.type, e.target) for e in result.edges),
            result.truncated, result.truncated_reason)
