"""Traverse: level-synchronous BFS from a start node along a sequence of steps.

The walk handles ids only: each level is ONE read of the frontier's neighbour ids
(no edge rows, no node views), so a traversal of depth d costs 2 + d round trips
(schema, start node, one per level) whatever the fan-out, plus one read of the
admitted nodes' views for the BASIC and FULL views, one of the tree edges' rows for
FULL with ``include_edges``, and one per budget-sized batch of candidates a step's
node filter must see. ``max_nodes`` is applied to ids before any view is read.
Budgets cut the walk short with ``truncated`` and the first reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from domain.edge import Direction
from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.schema import Schema
from domain.specifications import MATCH_ALL, Specification, parse_filter
from domain.views import AdjacencyKey, Detail, EdgeView, NodeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.ports import ReadModel
from query_service.app.queries.get_node import node_not_found
from query_service.loading.loaders import Loaders, NaiveLoaders, RequestLoaders

MAX_STEPS = 10
DEFAULT_MAX_NODES, MAX_MAX_NODES = 1000, 10_000
DEFAULT_FANOUT, MAX_FANOUT = 100, 1000
DEADLINE_MARGIN = 0.02  # seconds kept back to send what we have
MIN_FILTER_BATCH = 64  # candidates whose views a step filter reads at once, at least


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
    detail: Detail = Detail.BASIC
    include_edges: bool = False


@dataclass(frozen=True)
class TraversalLevel:
    depth: int
    node_ids: list[str]


@dataclass
class TraversalResult:
    node_ids: list[str] = field(default_factory=list)  # BFS order, the start first
    nodes: list[NodeView] = field(default_factory=list)  # in node_ids order; empty for Detail.NAMES
    edges: list[EdgeView] = field(default_factory=list)  # the BFS tree, when asked for
    levels: list[TraversalLevel] = field(default_factory=list)
    truncated: bool = False
    truncated_reason: str = ""
    detail: Detail = Detail.BASIC


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
        self.last_loaders: RequestLoaders | None = None

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
        await self._gate.ensure(query.consistency, query.graph)
        schema = await self._rm.get_schema(query.graph) or Schema(graph=query.graph)
        filters = self._compile(schema, steps)
        walk = _Walk(query, steps, filters, max_depth, max_nodes, fanout, self._remaining)
        if self.engine == "naive":
            return await walk.run(NaiveLoaders(self._rm, query.graph), legacy=True)
        loaders = RequestLoaders(self._rm, query.graph)
        result = await walk.run(loaders)
        self.last_loaders = loaders  # for tests and the benchmark: what the last walk read
        if self.engine == "shadow":
            legacy = await walk.run(NaiveLoaders(self._rm, query.graph), legacy=True)
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



class _Walk:
    """One level-synchronous BFS over ids only.

    Per level: ONE ``neighbour_ids`` read for the whole frontier (ids and list lengths, no
    views), then admission in BFS order until ``max_nodes``; node views are read only for
    candidates a step filter must see (in budget-sized batches) and, once at the end, for
    the admitted nodes when the view asks for them. Order within a level: parents in the
    order of the level before, each parent's neighbours newest first (OUT before IN on a
    BOTH step); a node met twice keeps its first place.
    """

    def __init__(self, query: Traverse, steps: Sequence[TraversalStep], filters: list[Specification],
                 max_depth: int, max_nodes: int, fanout: int, remaining: Callable[[], float | None]) -> None:
        self.q, self.steps, self.filters = query, steps, filters
        self.max_depth, self.max_nodes, self.fanout = max_depth, max_nodes, fanout
        self.remaining = remaining

    async def run(self, loaders: Loaders, *, legacy: bool = False) -> TraversalResult:
        """``legacy``: read every candidate's node as the walk meets it, before ``max_nodes``
        (the pre-chunk walk; with ``NaiveLoaders`` that is one read per node, the N+1 baseline)."""
        q = self.q
        result = TraversalResult(detail=q.detail)
        full = q.detail is Detail.FULL
        if not await loaders.get_nodes([q.start], properties=full):
            raise node_not_found(q.graph, [q.start])
        order = [q.start]
        visited = {q.start}
        reached_by: dict[str, tuple[str, Direction, str]] = {}  # node -> (parent, direction, edge type)
        result.levels.append(TraversalLevel(0, [q.start]))
        frontier = [q.start]

        def cut(reason: str) -> None:
            if not result.truncated:
                result.truncated, result.truncated_reason = True, reason

        for depth, (step, spec) in enumerate(zip(self.steps, self.filters), start=1):
            if not frontier:
                break
            if depth > self.max_depth:
                cut("max_depth")
                break
            if len(order) >= self.max_nodes:  # full: the next level could only be cut off
                cut("max_nodes")
                break
            left = self.remaining()
            if left is not None and left <= DEADLINE_MARGIN:
                cut("deadline")
                break
            limit = min(step.per_node_limit or self.fanout, self.fanout)
            directions = (Direction.OUT, Direction.IN) if step.direction is Direction.BOTH else (step.direction,)
            keys = [AdjacencyKey(n, d, step.edge_type) for n in frontier for d in directions]
            lists = await loaders.neighbour_ids(keys, limit)  # ONE read for the level
            candidates: list[str] = []
            met: set[str] = set()
            for key in keys:
                entry = lists.get(key)
                if entry is None:
                    continue
                if entry.total > limit:
                    cut("per_node_fanout")
                for nb in entry.ids:
                    if nb in visited or nb in met:
                        continue
                    met.add(nb)
                    candidates.append(nb)
                    if q.include_edges:
                        reached_by[nb] = (key.node, key.direction, step.edge_type)
            room = self.max_nodes - len(order)
            if legacy and candidates:
                live = await loaders.get_nodes(candidates, properties=True)
                candidates = [c for c in candidates if c in live]
            if spec is MATCH_ALL:
                admitted = candidates[:room]
                if len(candidates) > room:
                    cut("max_nodes")
            else:
                admitted = await self._admit_filtered(loaders, candidates, spec, room, cut)
            order += admitted
            visited.update(admitted)
            if admitted:
                result.levels.append(TraversalLevel(depth, admitted))
            frontier = admitted
        result.node_ids = order
        if q.detail is not Detail.NAMES:
            views = await loaders.get_nodes(order, properties=full)  # admitted nodes only
            result.nodes = [views[i] for i in order if i in views]
        if q.include_edges:
            result.edges = await self._tree_edges(loaders, order, reached_by, full)
        return result

    @staticmethod
    async def _admit_filtered(loaders: Loaders, candidates: list[str], spec: Specification, room: int,
                              cut: Callable[[str], None]) -> list[str]:
        admitted: list[str] = []
        i = 0
        while i < len(candidates) and len(admitted) < room:
            batch = candidates[i:i + max(room - len(admitted), MIN_FILTER_BATCH)]
            i += len(batch)
            views = await loaders.get_nodes(batch, properties=True)
            for nb in batch:
                view = views.get(nb)
                if view is None or not spec.is_satisfied_by(view.properties):
                    continue
                if len(admitted) >= room:
                    cut("max_nodes")
                    return admitted
                admitted.append(nb)
        if i < len(candidates):
            cut("max_nodes")  # the budget filled up with candidates left unexamined
        return admitted

    async def _tree_edges(self, loaders: Loaders, order: list[str],
                          reached_by: dict[str, tuple[str, Direction, str]], full: bool) -> list[EdgeView]:
        triples = []
        for node in order[1:]:
            parent, direction, edge_type = reached_by[node]
            triples.append((parent, edge_type, node) if direction is Direction.OUT else (node, edge_type, parent))
        if full:  # properties and create times come from the edge rows: one read for the tree
            found = await loaders.get_edges(triples)
            return [found[t] for t in triples if t in found]
        return [EdgeView(self.q.graph, s, t, d, {}, None) for s, t, d in triples]


def _fingerprint(result: TraversalResult) -> tuple[Any, ...]:
    return (tuple(result.node_ids), tuple((e.source, e.type, e.target) for e in result.edges),
            result.truncated, result.truncated_reason)
