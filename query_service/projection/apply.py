"""How each event changes the read model — written once, for every store.

``apply_events`` runs inside the store's transaction (on its thread, for SQLite)
against the small synchronous ``ProjectionTransaction`` port; the store commits
the changes together with the checkpoint.

Idempotency (the log is at-least-once for us until the checkpoint commits):
- node events apply only when ``aggregate_version`` is newer than the view (deleted
  nodes keep a tombstone carrying their last version, so a replayed NodeCreated
  cannot resurrect them);
- edges are a set: EdgeAdded inserts if absent, EdgeRemoved deletes if present,
  and counters move only when a row really changed, so the last event per edge wins
  and replaying any suffix of the log converges to the same state;
- EdgeAdded touching a tombstoned endpoint is ignored (a replay after the delete).
A NodeDeleted removes the node's adjacency in both directions at once, so the
EdgeRemoved events that a tombstoning delete emits later are no-ops, and so are
the ones that came before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Protocol, Sequence

from domain.edge import Direction
from domain.events import (
    DomainEvent,
    EdgeAdded,
    EdgeRemoved,
    NodeCreated,
    NodeDeleted,
    NodeUpdated,
    SchemaApplied,
)
from domain.ports import LoggedEvent
from domain.schema import schema_from_dict
from domain.values import PropertyValue, sortable


@dataclass(frozen=True)
class NodeMeta:
    type: str
    version: int
    deleted: bool
    create_time: datetime


class ProjectionTransaction(Protocol):
    """Primitive, synchronous read-model changes inside one open transaction."""

    def node_meta(self, graph: str, node_id: str) -> NodeMeta | None: ...

    def put_node(self, graph: str, node_id: str, node_type: str, properties: dict[str, PropertyValue],
                 version: int, create_time: datetime, update_time: datetime) -> None: ...

    def tombstone_node(self, graph: str, node_id: str, version: int, update_time: datetime) -> None: ...

    def replace_index_entries(self, graph: str, node_type: str, node_id: str, entries: dict[str, object]) -> None:
        """Replace every index entry of the node (values already in ``sortable`` form)."""

    def nodes_of_type(self, graph: str, node_type: str) -> list[tuple[str, dict[str, PropertyValue]]]: ...

    def add_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str,
                      properties: dict[str, PropertyValue], create_time: datetime) -> bool:
        """Insert one adjacency row; False when it was already there."""

    def remove_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str) -> bool: ...

    def adjust_count(self, graph: str, node: str, edge_type: str, direction: Direction, delta: int) -> None: ...

    def adjacency_of(self, graph: str, node: str) -> list[tuple[Direction, str, str]]:
        """(direction, edge type, neighbour) of every adjacency row of the node."""

    def drop_node_adjacency(self, graph: str, node: str) -> None:
        """Delete the node's own adjacency rows and counters."""

    def schema_dict(self, graph: str) -> dict[str, Any] | None: ...

    def put_schema(self, graph: str, version: int, body: dict[str, Any]) -> None: ...


class _IndexedProperties:
    """Indexed property names per (graph, node type), read once per batch."""

    def __init__(self, tx: ProjectionTransaction) -> None:
        self._tx = tx
        self._cache: dict[str, dict[str, tuple[str, ...]]] = {}

    def of(self, graph: str, node_type: str) -> tuple[str, ...]:
        if graph not in self._cache:
            self._cache[graph] = _indexed_by_type(self._tx.schema_dict(graph))
        return self._cache[graph].get(node_type, ())

    def forget(self, graph: str) -> None:
        self._cache.pop(graph, None)


def _indexed_by_type(body: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    if not body:
        return {}
    schema = schema_from_dict(body)
    return {t.name: tuple(p.name for p in t.indexed_properties) for t in schema.node_types.values()}


def _index_entries(properties: dict[str, PropertyValue], indexed: Sequence[str]) -> dict[str, object]:
    return {name: sortable(properties[name]) for name in indexed if name in properties}


def apply_events(tx: ProjectionTransaction, events: Iterable[LoggedEvent]) -> int:
    """Apply events in log order; returns how many changed something."""
    indexed = _IndexedProperties(tx)
    changed = 0
    for logged in events:
        if _apply(tx, logged.event, indexed):
            changed += 1
    return changed


def _apply(tx: ProjectionTransaction, event: DomainEvent, indexed: _IndexedProperties) -> bool:
    g = event.graph
    if isinstance(event, (NodeCreated, NodeUpdated)):
        meta = tx.node_meta(g, event.aggregate_id)
        if meta is not None and event.aggregate_version <= meta.version:
            return False
        create_time = event.occurred_at if meta is None or meta.deleted else meta.create_time
        tx.put_node(g, event.aggregate_id, event.node_type, dict(event.properties), event.aggregate_version,
                    create_time, event.occurred_at)
        tx.replace_index_entries(g, event.node_type, event.aggregate_id,
                                 _index_entries(event.properties, indexed.of(g, event.node_type)))
        return True
    if isinstance(event, NodeDeleted):
        meta = tx.node_meta(g, event.aggregate_id)
        if meta is not None and event.aggregate_version <= meta.version:
            return False
        node = event.aggregate_id
        for direction, edge_type, neighbour in tx.adjacency_of(g, node):
            if neighbour == node:
                continue  # a self-loop: both rows are the node's own
            mirror = Direction.IN if direction is Direction.OUT else Direction.OUT
            if tx.remove_adjacency(g, neighbour, mirror, edge_type, node):
                tx.adjust_count(g, neighbour, edge_type, mirror, -1)
        tx.drop_node_adjacency(g, node)
        tx.replace_index_entries(g, event.node_type, node, {})
        tx.tombstone_node(g, node, event.aggregate_version, event.occurred_at)
        return True
    if isinstance(event, EdgeAdded):
        for endpoint in {event.source, event.target}:
            meta = tx.node_meta(g, endpoint)
            if meta is not None and meta.deleted:
                return False
        create_time = event.create_time or event.occurred_at
        did = False
        if tx.add_adjacency(g, event.source, Direction.OUT, event.edge_type, event.target, dict(event.properties),
                            create_time):
            tx.adjust_count(g, event.source, event.edge_type, Direction.OUT, +1)
            did = True
        if tx.add_adjacency(g, event.target, Direction.IN, event.edge_type, event.source, dict(event.properties),
                            create_time):
            tx.adjust_count(g, event.target, event.edge_type, Direction.IN, +1)
            did = True
        return did
    if isinstance(event, EdgeRemoved):
        did = False
        if tx.remove_adjacency(g, event.source, Direction.OUT, event.edge_type, event.target):
            tx.adjust_count(g, event.source, event.edge_type, Direction.OUT, -1)
            did = True
        if tx.remove_adjacency(g, event.target, Direction.IN, event.edge_type, event.source):
            tx.adjust_count(g, event.target, event.edge_type, Direction.IN, -1)
            did = True
        return did
    if isinstance(event, SchemaApplied):
        current = tx.schema_dict(g)
        if current is not None and int(current.get("version", 0)) >= event.aggregate_version:
            return False
        before = _indexed_by_type(current)
        body = dict(event.schema)
        body.setdefault("graph", g)
        body["version"] = event.aggregate_version
        tx.put_schema(g, event.aggregate_version, body)
        indexed.forget(g)
        after = _indexed_by_type(body)
        for node_type, props in after.items():
            if before.get(node_type, ()) != props:  # a property became indexed: backfill
                for node_id, properties in tx.nodes_of_type(g, node_type):
                    tx.replace_index_entries(g, node_type, node_id, _index_entries(properties, props))
        return True
    return False
