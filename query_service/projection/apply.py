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

Edge events are applied set-based: a run of them (up to the next NodeDeleted, which
reads the adjacency it removes) is reduced to one ``EdgeChange`` per edge, the state
that sequential application would leave, and handed to the store at once
(``apply_edges``). Per edge, the last event wins; an add after a remove replaces the
row (its create time and properties, and its place in the lists: newest), an add
without a remove before it inserts only if the row is absent, and lists receive the
new rows in the order of the events that inserted them. Any split of the log into
batches therefore gives the same read model.
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


class NodeMeta(Protocol):
    """What the applier reads of a stored node; each store returns its own row type."""

    @property
    def type(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def deleted(self) -> bool: ...

    @property
    def create_time(self) -> datetime: ...


@dataclass(slots=True)
class EdgeChange:
    """The net effect of a run of events on one edge (see the module doc)."""

    graph: str
    source: str
    edge_type: str
    target: str
    present: bool  # the edge exists after the run
    replace: bool  # present, and a remove came before the add: an older row is replaced
    properties: dict[str, PropertyValue]
    create_time: datetime | None


class ProjectionTransaction(Protocol):
    """Primitive, synchronous read-model changes inside one open transaction."""

    def node_meta(self, graph: str, node_id: str) -> NodeMeta | None: ...

    def prefetch_node_meta(self, graph: str, node_ids: Iterable[str]) -> None:
        """A hint: ``node_meta`` will be asked for these nodes (a store may read them at once)."""

    def apply_edges(self, changes: Sequence[EdgeChange]) -> set[tuple[str, str, str, str]]:
        """Bring each edge (both adjacency rows) to its final state; counters and lists move
        only for rows that really changed, present edges join their lists in the order given.
        Returns the (graph, source, edge type, target) of the edges whose OUT row was there before."""

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


class _PendingEdge:
    __slots__ = ("ops", "removed", "add", "order")

    def __init__(self) -> None:
        self.ops: list[int] = []  # +1 add / -1 remove, in log order (to count what changed)
        self.removed = False
        self.add: EdgeAdded | None = None  # the add that sets the row: the first after the last remove
        self.order = 0


class _EdgeRun:
    """Edge events since the last flush, reduced per edge (last event wins)."""

    def __init__(self) -> None:
        self._edges: dict[tuple[str, str, str, str], _PendingEdge] = {}
        self._seq = 0

    def __bool__(self) -> bool:
        return bool(self._edges)

    def record(self, tx: ProjectionTransaction, event: EdgeAdded | EdgeRemoved) -> None:
        g = event.graph
        if isinstance(event, EdgeAdded):
            for endpoint in (event.source, event.target):
                meta = tx.node_meta(g, endpoint)
                if meta is not None and meta.deleted:
                    return  # a replay after the delete
        key = (g, event.source, event.edge_type, event.target)
        pending = self._edges.get(key)
        if pending is None:
            pending = self._edges[key] = _PendingEdge()
        self._seq += 1
        if isinstance(event, EdgeAdded):
            pending.ops.append(1)
            if pending.add is None:
                pending.add, pending.order = event, self._seq
        else:
            pending.ops.append(-1)
            pending.removed, pending.add = True, None

    def flush(self, tx: ProjectionTransaction) -> int:
        """Hand the run to the store; how many of its events changed something."""
        if not self._edges:
            return 0
        edges, self._edges = self._edges, {}
        changes = []
        for (g, source, edge_type, target), p in sorted(edges.items(), key=lambda kv: kv[1].order):
            add = p.add
            if add is None:
                changes.append(EdgeChange(g, source, edge_type, target, False, False, {}, None))
            else:
                changes.append(EdgeChange(g, source, edge_type, target, True, p.removed, dict(add.properties),
                                          add.create_time or add.occurred_at))
        existed = tx.apply_edges(changes)
        changed = 0
        for key, p in edges.items():
            present = key in existed
            for op in p.ops:
                if (op > 0) != present:
                    present = op > 0
                    changed += 1
        return changed


def _prefetch(tx: ProjectionTransaction, events: Sequence[LoggedEvent]) -> None:
    ids: dict[str, dict[str, None]] = {}
    for logged in events:
        event = logged.event
        if isinstance(event, (EdgeAdded, EdgeRemoved)):
            seen = ids.setdefault(event.graph, {})
            seen[event.source] = None
            seen[event.target] = None
        elif isinstance(event, (NodeCreated, NodeUpdated, NodeDeleted)):
            ids.setdefault(event.graph, {})[event.aggregate_id] = None
    for graph, nodes in ids.items():
        tx.prefetch_node_meta(graph, nodes)


def apply_events(tx: ProjectionTransaction, events: Iterable[LoggedEvent]) -> int:
    """Apply events in log order; returns how many changed something."""
    events = list(events)
    _prefetch(tx, events)
    indexed = _IndexedProperties(tx)
    run = _EdgeRun()
    changed = 0
    for logged in events:
        event = logged.event
        if isinstance(event, (EdgeAdded, EdgeRemoved)):
            run.record(tx, event)
            continue
        if isinstance(event, NodeDeleted):
            changed += run.flush(tx)  # the delete reads (and removes) the adjacency so far
        if _apply(tx, event, indexed):
            changed += 1
    return changed + run.flush(tx)


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
