"""An in-memory read model: the same ports as the SQLite one, for fast unit tests.

Passes the same contract suites (tests/contract/suites/read_model.py, projection_store.py). Each
public read counts one round trip, as the SQLite adapter does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from domain.edge import Direction
from domain.ports import LoggedEvent
from domain.schema import Schema, schema_from_dict
from domain.values import PropertyValue, epoch_micros
from domain.views import AccessKind, AdjacencyKey, EdgeView, NeighbourIds, NodeAccess, NodeView


@dataclass
class _Node:
    type: str
    properties: dict[str, PropertyValue]
    version: int
    create_time: datetime
    update_time: datetime
    deleted: bool = False


@dataclass(frozen=True)
class _Meta:
    type: str
    version: int
    deleted: bool
    create_time: datetime


@dataclass
class _State:
    nodes: dict[tuple[str, str], _Node] = field(default_factory=dict)
    # (graph, node, direction, type, neighbour) -> (properties, create_time)
    adjacency: dict[tuple[str, str, Direction, str, str], tuple[dict[str, PropertyValue], datetime]] = \
        field(default_factory=dict)
    counts: dict[tuple[str, str, str, Direction], int] = field(default_factory=dict)
    index: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)  # (graph, node) -> {prop: value}
    index_type: dict[tuple[str, str], str] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[tuple[str, str], int] = field(default_factory=dict)  # (projector, shard)


def _us(value: datetime) -> int:
    return epoch_micros(value)


class _Tx:
    def __init__(self, s: _State) -> None:
        self.s = s

    def node_meta(self, graph: str, node_id: str) -> _Meta | None:
        n = self.s.nodes.get((graph, node_id))
        return None if n is None else _Meta(n.type, n.version, n.deleted, n.create_time)

    def prefetch_node_meta(self, graph: str, node_ids: Any) -> None:
        return None

    def put_node(self, graph: str, node_id: str, node_type: str, properties: dict[str, PropertyValue],
                 version: int, create_time: datetime, update_time: datetime) -> None:
        self.s.nodes[(graph, node_id)] = _Node(node_type, dict(properties), version, create_time, update_time)

    def tombstone_node(self, graph: str, node_id: str, version: int, update_time: datetime) -> None:
        n = self.s.nodes.get((graph, node_id))
        if n is None:
            self.s.nodes[(graph, node_id)] = _Node("", {}, version, update_time, update_time, True)
        else:
            n.properties, n.version, n.update_time, n.deleted = {}, version, update_time, True

    def replace_index_entries(self, graph: str, node_type: str, node_id: str, entries: dict[str, object]) -> None:
        self.s.index[(graph, node_id)] = dict(entries)
        self.s.index_type[(graph, node_id)] = node_type

    def nodes_of_type(self, graph: str, node_type: str) -> list[tuple[str, dict[str, PropertyValue]]]:
        return [(i, dict(n.properties)) for (g, i), n in self.s.nodes.items()
                if g == graph and n.type == node_type and not n.deleted]

    def add_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str,
                      properties: dict[str, PropertyValue], create_time: datetime) -> bool:
        key = (graph, node, direction, edge_type, neighbour)
        if key in self.s.adjacency:
            return False
        self.s.adjacency[key] = (dict(properties), create_time)
        return True

    def remove_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str) -> bool:
        return self.s.adjacency.pop((graph, node, direction, edge_type, neighbour), None) is not None

    def apply_edges(self, changes: Sequence[Any]) -> set[tuple[str, str, str, str]]:
        existed: set[tuple[str, str, str, str]] = set()
        for ch in changes:
            halves = ((ch.source, Direction.OUT, ch.target), (ch.target, Direction.IN, ch.source))
            for node, direction, neighbour in halves:
                key = (ch.graph, node, direction, ch.edge_type, neighbour)
                there = key in self.s.adjacency
                if there and direction is Direction.OUT:
                    existed.add((ch.graph, ch.source, ch.edge_type, ch.target))
                if there and (not ch.present or ch.replace):
                    del self.s.adjacency[key]
                    self.adjust_count(ch.graph, node, ch.edge_type, direction, -1)
                    there = False
                if ch.present and not there:
                    self.s.adjacency[key] = (dict(ch.properties), ch.create_time)
                    self.adjust_count(ch.graph, node, ch.edge_type, direction, +1)
        return existed

    def adjust_count(self, graph: str, node: str, edge_type: str, direction: Direction, delta: int) -> None:
        key = (graph, node, edge_type, direction)
        value = self.s.counts.get(key, 0) + delta
        if value > 0:
            self.s.counts[key] = value
        else:
            self.s.counts.pop(key, None)

    def adjacency_of(self, graph: str, node: str) -> list[tuple[Direction, str, str]]:
        return [(d, t, nb) for (g, n, d, t, nb) in self.s.adjacency if g == graph and n == node]

    def drop_node_adjacency(self, graph: str, node: str) -> None:
        for key in [k for k in self.s.adjacency if k[0] == graph and k[1] == node]:
            del self.s.adjacency[key]
        for count_key in [k for k in self.s.counts if k[0] == graph and k[1] == node]:
            del self.s.counts[count_key]

    def schema_dict(self, graph: str) -> dict[str, Any] | None:
        body = self.s.schemas.get(graph)
        return copy.deepcopy(body) if body is not None else None

    def put_schema(self, graph: str, version: int, body: dict[str, Any]) -> None:
        self.s.schemas[graph] = copy.deepcopy(body)


class InMemoryReadModel:
    """ReadModel + ProjectionStore over plain dicts."""

    def __init__(self) -> None:
        self._s = _State()
        self.round_trips = 0

    # --- ProjectionStore ------------------------------------------------------------
    async def ensure_schema(self) -> None:
        return None

    async def positions(self, projector: str) -> dict[str, int]:
        return {s: p for (name, s), p in self._s.checkpoints.items() if name == projector}

    async def apply(self, projector: str, shard: str, events: Sequence[LoggedEvent],
                    change: Callable[[Any, Sequence[LoggedEvent]], Any]) -> int:
        current = self._s.checkpoints.get((projector, shard), 0)
        fresh = [e for e in events if e.position > current]
        if not fresh:
            return current
        work = copy.deepcopy(self._s)  # all or nothing, like a transaction
        change(_Tx(work), fresh)
        work.checkpoints[(projector, shard)] = fresh[-1].position
        self._s = work
        return fresh[-1].position

    async def reset(self, projector: str, positions: Mapping[str, int] | None = None) -> None:
        for key in [k for k in self._s.checkpoints if k[0] == projector]:
            del self._s.checkpoints[key]
        for shard, position in (positions or {}).items():
            self._s.checkpoints[(projector, shard)] = position

    # --- ReadModel ------------------------------------------------------------------
    def _view(self, graph: str, node_id: str) -> NodeView | None:
        n = self._s.nodes.get((graph, node_id))
        if n is None or n.deleted:
            return None
        counts = {(t, d): c for (g, i, t, d), c in self._s.counts.items() if g == graph and i == node_id}
        return NodeView(graph=graph, id=node_id, type=n.type, properties=dict(n.properties), version=n.version,
                        create_time=n.create_time, update_time=n.update_time, edge_counts=counts)

    def _edge(self, key: tuple[str, str, Direction, str, str]) -> EdgeView:
        graph, node, direction, edge_type, neighbour = key
        props, created = self._s.adjacency[key]
        out = direction is Direction.OUT
        return EdgeView(graph=graph, source=node if out else neighbour, type=edge_type,
                        target=neighbour if out else node, properties=dict(props), create_time=created)

    def _list(self, graph: str, key: AdjacencyKey) -> list[tuple[tuple[int, str, str], EdgeView]]:
        rows = [(k, v) for k, v in self._s.adjacency.items()
                if k[0] == graph and k[1] == key.node and k[2] is key.direction
                and (key.edge_type is None or k[3] == key.edge_type)]
        entries = [((_us(v[1]), k[3], k[4]), self._edge(k)) for k, v in rows]
        entries.sort(key=lambda e: (-e[0][0], e[0][1], e[0][2]))
        return entries

    async def get_schema(self, graph: str) -> Schema | None:
        self.round_trips += 1
        body = self._s.schemas.get(graph)
        return schema_from_dict(copy.deepcopy(body)) if body is not None else None

    async def get_nodes(self, graph: str, ids: Sequence[str], *, properties: bool = True) -> dict[str, NodeView]:
        if not ids:
            return {}
        self.round_trips += 1
        out = {}
        for i in ids:
            view = self._view(graph, i)
            if view is not None:
                out[i] = view if properties else replace(view, properties={})
        return out

    async def neighbour_ids(self, graph: str, keys: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
        if not keys:
            return {}
        self.round_trips += 1
        out = {}
        for key in dict.fromkeys(keys):
            if key.edge_type is None:
                raise ValueError("neighbour_ids needs keys with an edge type")
            # newest first in the order the projector applied them (the dict keeps insertion order)
            ids = [k[4] for k in reversed(self._s.adjacency) if k[0] == graph and k[1] == key.node
                   and k[2] is key.direction and k[3] == key.edge_type]
            if ids:
                out[key] = NeighbourIds(ids if limit is None else ids[:limit], len(ids))
        return out

    async def get_edges(self, graph: str,
                        triples: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], EdgeView]:
        if not triples:
            return {}
        self.round_trips += 1
        out = {}
        for source, edge_type, target in triples:
            key = (graph, source, Direction.OUT, edge_type, target)
            if key in self._s.adjacency:
                out[(source, edge_type, target)] = self._edge(key)
        return out

    async def get_edge(self, graph: str, source: str, edge_type: str, target: str) -> EdgeView | None:
        self.round_trips += 1
        key = (graph, source, Direction.OUT, edge_type, target)
        return self._edge(key) if key in self._s.adjacency else None

    async def count_edges(self, graph: str, node: str, edge_type: str, direction: Direction) -> int:
        self.round_trips += 1
        return self._s.counts.get((graph, node, edge_type, direction), 0)

    async def list_adjacency(self, graph: str, key: AdjacencyKey, *, limit: int,
                             after: tuple[int, str, str] | None = None,
                             created_after_us: int | None = None,
                             created_before_us: int | None = None) -> list[tuple[tuple[int, str, str], EdgeView]]:
        self.round_trips += 1
        out = []
        for cursor, edge in self._list(graph, key):
            if created_after_us is not None and cursor[0] <= created_after_us:
                continue
            if created_before_us is not None and cursor[0] >= created_before_us:
                continue
            if after is not None and not (cursor[0] < after[0] or (cursor[0] == after[0] and cursor[1:] > after[1:])):
                continue
            out.append((cursor, edge))
            if len(out) >= limit:
                break
        return out

    async def scan_nodes(self, graph: str, access: NodeAccess, *, after: tuple[Any, ...] | None,
                         limit: int) -> list[tuple[tuple[Any, ...], NodeView]]:
        self.round_trips += 1
        rows: list[tuple[tuple[Any, ...], str]] = []
        if access.kind is AccessKind.TYPE_SCAN:
            rows = [((i,), i) for (g, i), n in self._s.nodes.items()
                    if g == graph and n.type == access.node_type and not n.deleted]
        else:
            for (g, i), entries in self._s.index.items():
                if g != graph or self._s.index_type.get((g, i)) != access.node_type or access.property not in entries:
                    continue
                v = entries[access.property]
                if access.kind is AccessKind.INDEX_RANGE:
                    if access.lower is not None and (v < access.lower or (v == access.lower and not access.lower_inclusive)):  # type: ignore[operator]
                        continue
                    if access.upper is not None and (v > access.upper or (v == access.upper and not access.upper_inclusive)):  # type: ignore[operator]
                        continue
                    rows.append(((v, i), i))
                elif v == access.value and isinstance(v, str) == isinstance(access.value, str):
                    rows.append(((i,), i))
        desc = access.kind is AccessKind.INDEX_RANGE and access.descending
        rows.sort(key=lambda r: r[0], reverse=desc)
        if after is not None:
            rows = [r for r in rows if (r[0] < tuple(after) if desc else r[0] > tuple(after))]
        out = []
        for key, i in rows:
            view = self._view(graph, i)
            if view is not None:
                out.append((key, view))
            if len(out) >= limit:
                break
        return out
