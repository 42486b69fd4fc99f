"""``DynamoProjectionStore``: the projector's writer on the read table (ADR 0010, 0012).

``apply(projector, shard, events, change)``:

1. Read the shard's checkpoint (consistent GetItem); drop the events at or below it.
2. Prefetch, with consistent BatchGetItem, the items the events obviously name: node views
   and the schema view for node events; the edge view, both endpoints' views and both
   lists' heads for edge events.
3. Decide: run ``change`` (query_service.projection.apply.apply_events) over a
   ``ProjectionOverlay`` — an in-memory ProjectionTransaction whose reads are served from
   the prefetched items and whose writes are recorded as item puts and deletes — ONE EVENT
   AT A TIME, so each event's writes are known. ``change`` is synchronous, so what it needs
   is discovered by optimistic replay: a read of an item that was not fetched is recorded
   and answered as "absent"; after the pass the store fetches every recorded item (and runs
   the ``by_type`` Queries ``nodes_of_type`` asked for) and runs the whole batch again from
   scratch, until a pass needs nothing new (at most ``max_rounds``). Nothing is written
   before a clean pass, so a ``change`` that raises leaves everything as it was.
4. Write: events are grouped in order into TransactWriteItems of at most 98 items (and
   ~3.5 MB), never splitting an event; each transaction puts the checkpoint of its last
   event (conditioned on the checkpoint it moves from, so two writers cannot both advance
   it) and, with a lease, carries a ConditionCheck that this process still holds the
   shard's lease (``LeaseLost`` otherwise). An event whose own writes exceed one
   transaction (a supernode's NodeDeleted, an index backfill) is written in several, the
   checkpoint only in the last, ordered so that a crash in between is repaired by replaying
   the event: neighbours' lists, views and the edge views first, then the node's own
   chunks, then its heads and index entries, its view (the tombstone, which makes a replay
   a no-op) last. A failure part-way leaves the transactions before it applied, with the
   checkpoint at their last event: the projector re-reads from there.

Consistency: ``nodes_of_type`` (an index backfill when a schema makes a property indexed)
lists the type's nodes through the ``by_type`` index, which is eventually consistent: a
node created by a batch committed a moment (typically < 1 s) before the SchemaApplied may
be missed, and get no entry for the new index until its next update. Everything else the
projection reads is a strongly consistent read of the read table.

Adjacency lists (read_items): appends go to the head; past HEAD_MAX entries its oldest part
is sealed as chunk ``nc + 1`` (~HEAD_MIN entries); a head below HEAD_MIN takes the newest
chunk back. A removal finds its entry in the head or, through the directory's per-chunk
time range and the entry's create time (from the edge view, or the deleted node's own
list), in the sealed chunk that holds it: one chunk rewritten.

``positions(projector)``: the shards the projector has a checkpoint in are listed under
``keys.projection_index_partition(projector)`` (one item per shard, written when the shard
is first checkpointed): one consistent Query, then a consistent BatchGetItem of the
checkpoints. ``reset`` writes checkpoints (and index items) with BatchWriteItem.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

from deploy.dynamodb.tables import BY_TYPE_INDEX, BY_TYPE_PK
from domain.edge import Direction
from domain.errors import Internal, Reason, Unavailable
from domain.events import EdgeAdded, EdgeRemoved, NodeCreated, NodeDeleted, NodeUpdated, SchemaApplied
from domain.ports import LoggedEvent
from domain.schema import schema_from_dict
from domain.values import PropertyKind, PropertyValue, epoch_micros, from_epoch_micros, properties_from_json, \
    properties_json, sortable

from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.attributes import Item, Key, get_str, key_tuple
from infrastructure.persistence.dynamodb.client import MAX_TRANSACTION_ITEMS, DynamoClient
from infrastructure.persistence.dynamodb.errors import TransactionCancelled
from infrastructure.persistence.dynamodb.lease import DynamoProjectionLease
from infrastructure.persistence.dynamodb.read_items import (
    CREATE_US,
    DELETED,
    DIRECTORY,
    EDGE_COUNTS,
    EDGE_CREATE_US,
    HEAD_MAX,
    HEAD_MIN,
    ID_SEPARATOR,
    INDEXED,
    LIST_IDS,
    LIST_TIMES,
    LIST_TOTAL,
    NODE_TYPE,
    POSITION,
    PROPERTIES,
    SCHEMA_BODY,
    SCHEMA_VERSION,
    SEALED_CHUNKS,
    SEALED_MAX_US,
    SHARD,
    UPDATE_US,
    VERSION,
    item_size,
    list_entries,
    optional_int,
    optional_str,
    pack_counts,
    pack_directory,
    pack_times,
    unpack_directory,
)
from infrastructure.persistence.edge_counts import unpack_counts

_log = logging.getLogger("edgewise.dynamodb.projection")

KeyT = tuple[str, str]
Write = tuple[Key, Item | None]  # an item's key and what to put there (None: delete it)
ListKey = tuple[str, str, Direction, str]  # (graph, node, direction, edge type)
EdgeT = tuple[str, str, str, str]  # (graph, source, edge type, target)

# One TransactWriteItems holds 100 items and 4 MB: the checkpoint and the lease check take two.
MAX_DATA_ITEMS = MAX_TRANSACTION_ITEMS - 2
MAX_TRANSACTION_BYTES = 3_500_000
DEFAULT_MAX_ROUNDS = 16
# The projection store's item cache (ItemCache): the hot items of the shards it projects.
DEFAULT_CACHE_BYTES = 64 << 20
# Rounds of derived prefetching (derived_keys) before the first pass.
PREFETCH_LEVELS = 2


class CheckpointMoved(Unavailable):
    """Another writer moved the shard's checkpoint while this batch was decided (two
    projectors without a lease): nothing of the refused transaction was written."""


class _Missing:
    def __repr__(self) -> str:
        return "<not fetched>"


MISSING = _Missing()


@dataclass(frozen=True)
class NodeMeta:
    """What ``apply_events`` reads of a node (query_service.projection.apply.NodeMeta)."""

    type: str
    version: int
    deleted: bool
    create_time: datetime


class EdgeChange(Protocol):
    """query_service.projection.apply.EdgeChange, structurally."""

    graph: str
    source: str
    edge_type: str
    target: str
    present: bool
    replace: bool
    properties: dict[str, PropertyValue]
    create_time: datetime | None


class _View:
    __slots__ = ("graph", "node", "type", "properties", "version", "deleted", "create_us", "update_us", "counts",
                 "indexed")

    def __init__(self, graph: str, node: str, type_: str, properties: str, version: int, deleted: bool,
                 create_us: int, update_us: int, counts: dict[tuple[str, Direction], int],
                 indexed: list[str]) -> None:
        self.graph, self.node, self.type, self.properties = graph, node, type_, properties
        self.version, self.deleted, self.create_us, self.update_us = version, deleted, create_us, update_us
        self.counts, self.indexed = counts, indexed

    @classmethod
    def from_item(cls, graph: str, node: str, item: Item) -> "_View":
        indexed = optional_str(item, INDEXED)
        return cls(graph, node, optional_str(item, NODE_TYPE), optional_str(item, PROPERTIES, "{}"),
                   optional_int(item, VERSION), DELETED in item, optional_int(item, CREATE_US),
                   optional_int(item, UPDATE_US), unpack_counts(optional_str(item, EDGE_COUNTS)),
                   indexed.split(" ") if indexed else [])

    def item(self) -> Item:
        item: Item = {**keys.node_view_key(self.graph, self.node), VERSION: {"N": str(self.version)},
                      CREATE_US: {"N": str(self.create_us)}, UPDATE_US: {"N": str(self.update_us)}}
        if self.type:
            item[NODE_TYPE] = {"S": self.type}
        if self.properties != "{}":
            item[PROPERTIES] = {"S": self.properties}
        if self.deleted:
            item[DELETED] = {"BOOL": True}
        elif self.type:
            item.update(keys.type_index_attributes(self.graph, self.type, self.node))
        counts = pack_counts(self.counts)
        if counts:
            item[EDGE_COUNTS] = {"S": counts}
        if self.indexed:
            item[INDEXED] = {"S": " ".join(self.indexed)}
        return item


@dataclass(slots=True)
class _Edge:
    properties: str  # JSON
    create_us: int


class _List:
    """One adjacency list during a projection: the head's entries (oldest first in memory,
    so an append is O(1)), and the directory and sealed chunks once loaded."""

    __slots__ = ("key", "ids", "times", "total", "sealed", "sealed_max", "directory", "chunks", "dirty",
                 "dirty_directory", "dirty_chunks")

    def __init__(self, key: ListKey, head: Item | None) -> None:
        self.key = key
        ids, times = list_entries(head) if head is not None else ([], [])
        ids.reverse()
        times.reverse()
        self.ids, self.times = ids, times
        self.total = optional_int(head, LIST_TOTAL) if head is not None else 0
        self.sealed = optional_int(head, SEALED_CHUNKS) if head is not None else 0
        self.sealed_max = optional_int(head, SEALED_MAX_US) if head is not None else 0
        # per sealed chunk 1..sealed: (entries, oldest, newest create time); None until loaded
        self.directory: list[tuple[int, int, int]] | None = [] if self.sealed == 0 else None
        self.chunks: dict[int, tuple[list[str], list[int]]] = {}  # loaded sealed chunks, oldest first
        self.dirty = False
        self.dirty_directory = False
        self.dirty_chunks: set[int] = set()

    def keys(self) -> tuple[Key, Key]:
        graph, node, direction, edge_type = self.key
        return (keys.adjacency_head_key(graph, node, direction, edge_type),
                keys.adjacency_directory_key(graph, node, direction, edge_type))

    def chunk_key(self, number: int) -> Key:
        graph, node, direction, edge_type = self.key
        return keys.adjacency_chunk_key(graph, node, direction, edge_type, number)

    def refresh_sealed_max(self) -> None:
        self.sealed_max = max((newest for entries, _, newest in self.directory or () if entries > 0), default=0)

    def writes(self) -> list[Write]:
        head_key, directory_key = self.keys()
        out: list[Write] = []
        if self.dirty:
            if self.total <= 0 or not self.ids:
                out.append((head_key, None))
            else:
                head: Item = {**head_key, LIST_TOTAL: {"N": str(self.total)},
                              LIST_IDS: {"S": ID_SEPARATOR.join(reversed(self.ids))},
                              LIST_TIMES: {"B": pack_times(self.times[::-1])}}
                if self.sealed > 0:
                    head[SEALED_CHUNKS] = {"N": str(self.sealed)}
                    head[SEALED_MAX_US] = {"N": str(self.sealed_max)}
                out.append((head_key, head))
        if self.dirty_directory:
            if self.sealed > 0 and self.directory is not None:
                out.append((directory_key, {**directory_key, DIRECTORY: {"B": pack_directory(self.directory)}}))
            else:
                out.append((directory_key, None))
        for number in sorted(self.dirty_chunks):
            key = self.chunk_key(number)
            chunk = self.chunks.get(number)
            if number > self.sealed or chunk is None:
                out.append((key, None))
            else:
                item: Item = dict(key)
                if chunk[0]:
                    item[LIST_IDS] = {"S": ID_SEPARATOR.join(reversed(chunk[0]))}
                    item[LIST_TIMES] = {"B": pack_times(chunk[1][::-1])}
                out.append((key, item))
        self.dirty = self.dirty_directory = False
        self.dirty_chunks = set()
        return out


_OTHER = {Direction.OUT: Direction.IN, Direction.IN: Direction.OUT}


class ProjectionOverlay:
    """A ProjectionTransaction (query_service.projection.apply) over fetched items.

    Reads come from ``base`` (key -> item, None = known absent); a read of a key not in
    ``base`` is recorded in ``missing`` and answered as absent — that pass's decisions are
    then thrown away (``incomplete``) and the store fetches and runs again. Writes change
    decoded state; ``take_writes`` encodes what changed since the last call (one event)."""

    def __init__(self, base: Mapping[KeyT, Item | None], members: Mapping[tuple[str, str], list[str]]) -> None:
        self._base = base
        self._members = members
        self.missing: dict[KeyT, Key] = {}
        self.missing_members: set[tuple[str, str]] = set()
        self._views: dict[tuple[str, str], _View | None] = {}
        self._lists: dict[ListKey, _List] = {}
        self._edges: dict[EdgeT, _Edge | None] = {}
        self._schemas: dict[str, str | None] = {}  # graph -> schema body JSON
        self._schema_versions: dict[str, int] = {}
        self._kinds: dict[str, dict[tuple[str, str], PropertyKind]] = {}
        self._known_times: dict[tuple[str, str, Direction, str, str], int] = {}
        self._previous: dict[tuple[str, str], str] = {}  # properties before put_node (this event)
        self._dirty_views: set[tuple[str, str]] = set()
        self._dirty_lists: set[ListKey] = set()
        self._dirty_edges: set[EdgeT] = set()
        self._dirty_schemas: set[str] = set()
        self._direct: dict[KeyT, Write] = {}

    @property
    def incomplete(self) -> bool:
        return bool(self.missing or self.missing_members)

    def _load(self, key: Key) -> Item | None | _Missing:
        identity = key_tuple(key)
        if identity in self._base:
            return self._base[identity]
        self.missing[identity] = key
        return MISSING

    # --- decoded state ----------------------------------------------------------------------

    def _view(self, graph: str, node: str) -> _View | None | _Missing:
        key = (graph, node)
        if key in self._views:
            return self._views[key]
        item = self._load(keys.node_view_key(graph, node))
        if isinstance(item, _Missing):
            return MISSING
        view = None if item is None else _View.from_item(graph, node, item)
        self._views[key] = view
        return view

    def _touch_view(self, view: _View) -> None:
        self._views[(view.graph, view.node)] = view
        self._dirty_views.add((view.graph, view.node))

    def _edge(self, edge: EdgeT) -> _Edge | None | _Missing:
        if edge in self._edges:
            return self._edges[edge]
        item = self._load(keys.edge_view_key(*edge))
        if isinstance(item, _Missing):
            return MISSING
        value = None if item is None else _Edge(optional_str(item, PROPERTIES, "{}"), optional_int(item, EDGE_CREATE_US))
        self._edges[edge] = value
        return value

    def _set_edge(self, edge: EdgeT, value: _Edge | None) -> None:
        self._edges[edge] = value
        self._dirty_edges.add(edge)

    def _list(self, graph: str, node: str, direction: Direction, edge_type: str) -> _List | None:
        key = (graph, node, direction, edge_type)
        found = self._lists.get(key)
        if found is not None:
            return found
        head = self._load(keys.adjacency_head_key(graph, node, direction, edge_type))
        if isinstance(head, _Missing):
            return None
        found = self._lists[key] = _List(key, head)
        return found

    def _directory(self, lst: _List) -> list[tuple[int, int, int]] | None:
        if lst.directory is not None:
            return lst.directory
        item = self._load(lst.keys()[1])
        if isinstance(item, _Missing):
            return None
        if item is not None and DIRECTORY in item:
            directory = unpack_directory(item[DIRECTORY]["B"])
            if len(directory) == lst.sealed:
                lst.directory = directory
                return directory
        # no (or a mismatched) directory: rebuild it from the chunks themselves
        _log.warning("adjacency directory of %s missing or stale: rebuilt from its chunks", lst.key)
        rebuilt = []
        for number in range(1, lst.sealed + 1):
            chunk = self._chunk(lst, number)
            if chunk is None:
                return None
            rebuilt.append(_stats(chunk[1]))
        lst.directory = rebuilt
        lst.dirty_directory = True
        self._dirty_lists.add(lst.key)
        return rebuilt

    def _chunk(self, lst: _List, number: int) -> tuple[list[str], list[int]] | None:
        chunk = lst.chunks.get(number)
        if chunk is not None:
            return chunk
        item = self._load(lst.chunk_key(number))
        if isinstance(item, _Missing):
            return None
        ids, times = list_entries(item) if item is not None else ([], [])
        ids.reverse()
        times.reverse()
        chunk = lst.chunks[number] = (ids, times)
        return chunk

    def _kinds_of(self, graph: str) -> dict[tuple[str, str], PropertyKind] | None:
        kinds = self._kinds.get(graph)
        if kinds is None:
            text = self._schema_text(graph)
            if text is None:
                return None
            schema = schema_from_dict(json.loads(text))
            kinds = self._kinds[graph] = {(t.name, p.name): p.kind for t in schema.node_types.values()
                                          for p in t.properties}
        return kinds

    def _schema_text(self, graph: str) -> str | None:
        if graph in self._schemas:
            return self._schemas[graph]
        item = self._load(keys.schema_view_key(graph))
        if isinstance(item, _Missing):
            return None
        text = None if item is None else get_str(item, SCHEMA_BODY)
        self._schemas[graph] = text
        return text

    # --- list operations --------------------------------------------------------------------

    def _append(self, lst: _List, neighbour: str, create_us: int) -> None:
        lst.ids.append(neighbour)
        lst.times.append(create_us)
        lst.total += 1
        lst.dirty = True
        self._dirty_lists.add(lst.key)
        self._seal(lst)

    def _seal(self, lst: _List) -> None:
        """Past HEAD_MAX entries, the head's oldest part becomes sealed chunk ``nc + 1``."""
        if len(lst.ids) <= HEAD_MAX:
            return
        directory = self._directory(lst)
        if directory is None:
            return
        cut = len(lst.ids) - HEAD_MIN
        ids, times = lst.ids[:cut], lst.times[:cut]
        lst.ids, lst.times = lst.ids[cut:], lst.times[cut:]
        lst.sealed += 1
        lst.chunks[lst.sealed] = (ids, times)
        directory.append(_stats(times))
        lst.refresh_sealed_max()
        lst.dirty_chunks.add(lst.sealed)
        lst.dirty = lst.dirty_directory = True

    def _refill(self, lst: _List) -> None:
        """A head below HEAD_MIN takes the newest sealed chunks back."""
        while len(lst.ids) < HEAD_MIN and lst.sealed > 0:
            directory = self._directory(lst)
            chunk = self._chunk(lst, lst.sealed)
            if directory is None or chunk is None:
                return
            lst.ids = chunk[0] + lst.ids
            lst.times = chunk[1] + lst.times
            lst.chunks.pop(lst.sealed, None)
            lst.dirty_chunks.add(lst.sealed)
            directory.pop()
            lst.sealed -= 1
            lst.refresh_sealed_max()
            lst.dirty = lst.dirty_directory = True

    def _locate(self, lst: _List, neighbour: str, create_us: int | None) -> int | None:
        """Where the entry is: 0 for the head, a sealed chunk's number, None if absent (or
        if a chunk it may be in is not fetched yet: the pass is incomplete then)."""
        if neighbour in lst.ids:
            return 0
        if lst.sealed == 0:
            return None
        directory = self._directory(lst)
        if directory is None:
            return None
        numbers = [n for n in range(lst.sealed, 0, -1) if directory[n - 1][0] > 0]
        likely = [n for n in numbers if create_us is None or directory[n - 1][1] <= create_us <= directory[n - 1][2]]
        for group in (likely, [n for n in numbers if n not in likely]):
            complete = True
            for number in group:
                chunk = self._chunk(lst, number)
                if chunk is None:
                    complete = False
                elif neighbour in chunk[0]:
                    return number
            if not complete:
                return None
        return None

    def _remove(self, lst: _List, neighbour: str, create_us: int | None) -> bool:
        where = self._locate(lst, neighbour, create_us)
        if where is None:
            return False
        if where == 0:
            i = lst.ids.index(neighbour)
            del lst.ids[i], lst.times[i]
        else:
            ids, times = lst.chunks[where]
            i = ids.index(neighbour)
            del ids[i], times[i]
            assert lst.directory is not None
            lst.directory[where - 1] = _stats(times)
            lst.refresh_sealed_max()
            lst.dirty_chunks.add(where)
            lst.dirty_directory = True
        lst.total -= 1
        lst.dirty = True
        self._dirty_lists.add(lst.key)
        self._refill(lst)
        return True

    def _entries(self, lst: _List) -> list[tuple[str, int]]:
        out = list(zip(lst.ids, lst.times))
        for number in range(1, lst.sealed + 1):
            chunk = self._chunk(lst, number)
            if chunk is not None:
                out.extend(zip(*chunk))
        return out

    def _clear(self, lst: _List) -> None:
        lst.dirty_chunks.update(range(1, lst.sealed + 1))
        lst.chunks.clear()
        lst.ids, lst.times, lst.total, lst.sealed, lst.sealed_max = [], [], 0, 0, 0
        lst.directory = []
        lst.dirty = lst.dirty_directory = True
        self._dirty_lists.add(lst.key)

    # --- ProjectionTransaction --------------------------------------------------------------

    def node_meta(self, graph: str, node_id: str) -> NodeMeta | None:
        view = self._view(graph, node_id)
        if not isinstance(view, _View):
            return None
        return NodeMeta(view.type, view.version, view.deleted, from_epoch_micros(view.create_us))

    def prefetch_node_meta(self, graph: str, node_ids: Iterable[str]) -> None:
        for node_id in node_ids:
            if (graph, node_id) not in self._views:
                self._view(graph, node_id)

    def apply_edges(self, changes: Sequence[EdgeChange]) -> set[tuple[str, str, str, str]]:
        existed: set[tuple[str, str, str, str]] = set()
        for ch in changes:
            edge = (ch.graph, ch.source, ch.edge_type, ch.target)
            found = self._edge(edge)
            there = isinstance(found, _Edge)
            if isinstance(found, _Edge):
                existed.add(edge)
                if not ch.present or ch.replace:
                    self._unlink(edge, found.create_us)
                    there = False
            if ch.present and not there:
                create_us = epoch_micros(ch.create_time) if ch.create_time is not None else 0
                self._link(edge, properties_json(ch.properties), create_us)
        return existed

    def _link(self, edge: EdgeT, properties: str, create_us: int) -> None:
        graph, source, edge_type, target = edge
        for node, direction, neighbour in ((source, Direction.OUT, target), (target, Direction.IN, source)):
            lst = self._list(graph, node, direction, edge_type)
            if lst is not None:
                self._append(lst, neighbour, create_us)
            self.adjust_count(graph, node, edge_type, direction, 1)
        self._set_edge(edge, _Edge(properties, create_us))

    def _unlink(self, edge: EdgeT, create_us: int) -> None:
        graph, source, edge_type, target = edge
        for node, direction, neighbour in ((source, Direction.OUT, target), (target, Direction.IN, source)):
            lst = self._list(graph, node, direction, edge_type)
            if lst is not None and not self._remove(lst, neighbour, create_us) and not self.incomplete:
                _log.warning("edge %s had no entry in %s's %s list: counted as removed", edge, node, direction.value)
            self.adjust_count(graph, node, edge_type, direction, -1)
        self._set_edge(edge, None)

    def put_node(self, graph: str, node_id: str, node_type: str, properties: dict[str, PropertyValue],
                 version: int, create_time: datetime, update_time: datetime) -> None:
        view = self._view(graph, node_id)
        text = properties_json(properties)
        if isinstance(view, _View):
            if not view.deleted and view.type == node_type:
                self._previous[(graph, node_id)] = view.properties
            view.type, view.properties, view.version, view.deleted = node_type, text, version, False
            view.create_us, view.update_us = epoch_micros(create_time), epoch_micros(update_time)
        else:
            view = _View(graph, node_id, node_type, text, version, False, epoch_micros(create_time),
                         epoch_micros(update_time), {}, [])
        self._touch_view(view)

    def tombstone_node(self, graph: str, node_id: str, version: int, update_time: datetime) -> None:
        view = self._view(graph, node_id)
        update_us = epoch_micros(update_time)
        if isinstance(view, _View):
            view.properties, view.version, view.update_us, view.deleted = "{}", version, update_us, True
        else:
            view = _View(graph, node_id, "", "{}", version, True, update_us, update_us, {}, [])
        self._touch_view(view)

    def replace_index_entries(self, graph: str, node_type: str, node_id: str, entries: dict[str, object]) -> None:
        view = self._view(graph, node_id)
        before = set(view.indexed) if isinstance(view, _View) else set()
        previous_text = self._previous.get((graph, node_id))
        previous = properties_from_json(previous_text) if previous_text is not None else None
        kinds = self._kinds_of(graph) or {}
        kept: list[str] = []
        for prop, value in entries.items():
            kind = kinds.get((node_type, prop))
            if kind is None:
                continue
            key = keys.node_index_entry_key(graph, node_id, prop)
            kept.append(prop)
            if previous is not None and prop in before and prop in previous and sortable(previous[prop]) == value \
                    and type(sortable(previous[prop])) is type(value):
                continue  # the entry there already says this
            try:
                attributes = keys.value_index_attributes(graph, node_type, prop, node_id, value, kind)  # type: ignore[arg-type]
            except ValueError:
                # the property's name and kind only: a value is the caller's data and never logged
                _log.warning("%s/%s: property %s cannot be indexed as %s: no index entry", graph, node_id, prop,
                             kind.value)
                kept.pop()
                continue
            self._direct[key_tuple(key)] = (key, {**key, **attributes})
        for prop in before - set(kept):
            key = keys.node_index_entry_key(graph, node_id, prop)
            self._direct[key_tuple(key)] = (key, None)
        if isinstance(view, _View) and sorted(kept) != view.indexed:
            view.indexed = sorted(kept)
            self._touch_view(view)

    def nodes_of_type(self, graph: str, node_type: str) -> list[tuple[str, dict[str, PropertyValue]]]:
        """The type's live nodes: the ``by_type`` index's members (eventually consistent),
        corrected by what this batch changed."""
        members = self._members.get((graph, node_type))
        if members is None:
            self.missing_members.add((graph, node_type))
            members = []
        found: dict[str, str] = {}
        for node_id in members:
            view = self._view(graph, node_id)
            if isinstance(view, _View) and not view.deleted and view.type == node_type:
                found[node_id] = view.properties
        for (g, node_id), view in self._views.items():
            if g != graph or view is None:
                continue
            if not view.deleted and view.type == node_type:
                found[node_id] = view.properties
            else:
                found.pop(node_id, None)
        return [(node_id, properties_from_json(text)) for node_id, text in sorted(found.items())]

    def add_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str,
                      properties: dict[str, PropertyValue], create_time: datetime) -> bool:
        lst = self._list(graph, node, direction, edge_type)
        if lst is None:
            return False
        edge = (graph, node, edge_type, neighbour) if direction is Direction.OUT else (graph, neighbour, edge_type, node)
        found = self._edge(edge)
        if self._locate(lst, neighbour, found.create_us if isinstance(found, _Edge) else None) is not None:
            return False
        create_us = epoch_micros(create_time)
        self._append(lst, neighbour, create_us)
        self._set_edge(edge, _Edge(properties_json(properties), create_us))
        return True

    def remove_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str) -> bool:
        edge = (graph, node, edge_type, neighbour) if direction is Direction.OUT else (graph, neighbour, edge_type, node)
        # the entry's create time, to find its chunk: from the other end's list, read by adjacency_of
        create_us = self._known_times.get((graph, neighbour, _OTHER[direction], edge_type, node))
        if create_us is None:
            found = self._edge(edge)
            if isinstance(found, _Edge):
                create_us = found.create_us
        lst = self._list(graph, node, direction, edge_type)
        removed = lst is not None and self._remove(lst, neighbour, create_us)
        self._set_edge(edge, None)
        return removed

    def adjust_count(self, graph: str, node: str, edge_type: str, direction: Direction, delta: int) -> None:
        view = self._view(graph, node)
        if not isinstance(view, _View):
            return  # no view to count on (as SQLite's UPDATE of no row)
        count = view.counts.get((edge_type, direction), 0) + delta
        if count > 0:
            view.counts[(edge_type, direction)] = count
        else:
            view.counts.pop((edge_type, direction), None)
        self._touch_view(view)

    def adjacency_of(self, graph: str, node: str) -> list[tuple[Direction, str, str]]:
        view = self._view(graph, node)
        if not isinstance(view, _View):
            return []
        rows: list[tuple[Direction, str, str]] = []
        for (edge_type, direction), count in sorted(view.counts.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
            if count <= 0:
                continue
            lst = self._list(graph, node, direction, edge_type)
            if lst is None:
                continue
            for neighbour, create_us in self._entries(lst):
                rows.append((direction, edge_type, neighbour))
                self._known_times[(graph, node, direction, edge_type, neighbour)] = create_us
        return rows

    def drop_node_adjacency(self, graph: str, node: str) -> None:
        view = self._view(graph, node)
        if not isinstance(view, _View):
            return
        for (edge_type, direction) in list(view.counts):
            lst = self._list(graph, node, direction, edge_type)
            if lst is None:
                continue
            for neighbour, _ in self._entries(lst):  # its edge views (self-loops; the rest are gone already)
                self._set_edge((graph, node, edge_type, neighbour) if direction is Direction.OUT
                               else (graph, neighbour, edge_type, node), None)
            self._clear(lst)
        view.counts = {}
        self._touch_view(view)

    def schema_dict(self, graph: str) -> dict[str, Any] | None:
        text = self._schema_text(graph)
        if text is None:
            return None
        body: dict[str, Any] = json.loads(text)
        return body

    def put_schema(self, graph: str, version: int, body: dict[str, Any]) -> None:
        self._schemas[graph] = json.dumps(body, separators=(",", ":"), sort_keys=True)
        self._schema_versions[graph] = version
        self._kinds.pop(graph, None)
        self._dirty_schemas.add(graph)

    # --- what one event wrote -----------------------------------------------------------------

    def take_writes(self) -> dict[KeyT, Write]:
        """The items changed since the last call, encoded (the event boundary)."""
        writes = self._direct
        self._direct = {}
        for graph, node in self._dirty_views:
            view = self._views[(graph, node)]
            if view is not None:
                key = keys.node_view_key(graph, node)
                writes[key_tuple(key)] = (key, view.item())
        for list_key in self._dirty_lists:
            for key, item in self._lists[list_key].writes():
                writes[key_tuple(key)] = (key, item)
        for edge in self._dirty_edges:
            key = keys.edge_view_key(*edge)
            value = self._edges[edge]
            if value is None:
                writes[key_tuple(key)] = (key, None)
            else:
                edge_item: Item = {**key, EDGE_CREATE_US: {"N": str(value.create_us)}}
                if value.properties != "{}":
                    edge_item[PROPERTIES] = {"S": value.properties}
                writes[key_tuple(key)] = (key, edge_item)
        for graph in self._dirty_schemas:
            key = keys.schema_view_key(graph)
            writes[key_tuple(key)] = (key, {**key, SCHEMA_VERSION: {"N": str(self._schema_versions[graph])},
                                            SCHEMA_BODY: {"S": self._schemas[graph] or "{}"}})
        self._dirty_views.clear()
        self._dirty_lists.clear()
        self._dirty_edges.clear()
        self._dirty_schemas.clear()
        self._previous.clear()
        return writes


def _stats(times: Sequence[int]) -> tuple[int, int, int]:
    return (len(times), min(times), max(times)) if times else (0, 0, 0)


# --- grouping writes into transactions --------------------------------------------------------

@dataclass
class PlannedTransaction:
    """Writes of whole events (or one part of an oversize event) and the checkpoint the
    transaction moves to (None for an oversize event's parts before its last)."""

    writes: list[Write]
    position: int | None


def _write_bytes(write: Write) -> int:
    key, item = write
    return item_size(item if item is not None else key)


def _priority(event: Any, identity: KeyT) -> int:
    """The order of an oversize event's writes: replaying the event after a crash between
    its transactions must redo what is missing, so what makes a replay a no-op comes last."""
    pk, sk = identity
    if isinstance(event, (NodeCreated, NodeUpdated, NodeDeleted)):
        node_pk = keys.node_partition(event.graph, event.aggregate_id)
        if pk == node_pk:
            return 3 if sk == "V" else 2  # the view (version / tombstone) last; index entries before
        if pk.startswith(keys.adjacency_node_prefix(event.graph, event.aggregate_id)):
            return 2 if sk == "H" else 1  # its own heads after its chunks and directories
        return 0  # neighbours' lists and views, edge views
    if isinstance(event, SchemaApplied) and identity == key_tuple(keys.schema_view_key(event.graph)):
        return 3
    return 0


class TransactionPlanner:
    """Groups events' writes, in log order, into transactions of whole events."""

    def __init__(self, max_items: int = MAX_DATA_ITEMS, max_bytes: int = MAX_TRANSACTION_BYTES) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.transactions: list[PlannedTransaction] = []
        self._group: dict[KeyT, Write] = {}
        self._sizes: dict[KeyT, int] = {}
        self._bytes = 0
        self._last: int | None = None

    def add(self, logged: LoggedEvent, writes: dict[KeyT, Write]) -> None:
        sizes = {identity: _write_bytes(write) for identity, write in writes.items()}
        new = [identity for identity in writes if identity not in self._group]
        grown = self._bytes + sum(sizes.values()) - sum(self._sizes[i] for i in writes if i in self._sizes)
        if len(self._group) + len(new) <= self.max_items and grown <= self.max_bytes:
            self._group.update(writes)
            self._sizes.update(sizes)
            self._bytes = grown
            self._last = logged.position
            return
        self._close()
        if len(writes) <= self.max_items and sum(sizes.values()) <= self.max_bytes:
            self._group, self._sizes, self._bytes = dict(writes), sizes, sum(sizes.values())
            self._last = logged.position
            return
        # one event larger than a transaction: parts in replay-safe order, the checkpoint in the last
        ordered = sorted(writes, key=lambda identity: _priority(logged.event, identity))
        part: list[Write] = []
        size = 0
        for identity in ordered:
            if part and (len(part) >= self.max_items or size + sizes[identity] > self.max_bytes):
                self.transactions.append(PlannedTransaction(part, None))
                part, size = [], 0
            part.append(writes[identity])
            size += sizes[identity]
        self.transactions.append(PlannedTransaction(part, logged.position))

    def _close(self) -> None:
        if self._group or self._last is not None:
            self.transactions.append(PlannedTransaction(list(self._group.values()), self._last))
        self._group, self._sizes, self._bytes, self._last = {}, {}, 0, None

    def finish(self) -> list[PlannedTransaction]:
        self._close()
        return self.transactions


# --- the store --------------------------------------------------------------------------------

def event_keys(events: Sequence[LoggedEvent]) -> list[Key]:
    """The items a batch's events obviously read: fetched before the first pass."""
    out: dict[KeyT, Key] = {}

    def want(key: Key) -> None:
        out.setdefault(key_tuple(key), key)

    for logged in events:
        event = logged.event
        graph = event.graph
        if isinstance(event, (NodeCreated, NodeUpdated, NodeDeleted)):
            want(keys.node_view_key(graph, event.aggregate_id))
            want(keys.schema_view_key(graph))
        elif isinstance(event, (EdgeAdded, EdgeRemoved)):
            want(keys.edge_view_key(graph, event.source, event.edge_type, event.target))
            want(keys.node_view_key(graph, event.source))
            want(keys.node_view_key(graph, event.target))
            want(keys.adjacency_head_key(graph, event.source, Direction.OUT, event.edge_type))
            want(keys.adjacency_head_key(graph, event.target, Direction.IN, event.edge_type))
        elif isinstance(event, SchemaApplied):
            want(keys.schema_view_key(graph))
    return list(out.values())


def _indexed_by_type(body: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    if not body:
        return {}
    schema = schema_from_dict(body)
    return {t.name: tuple(p.name for p in t.indexed_properties) for t in schema.node_types.values()}


def _backfilled_types(events: Sequence[LoggedEvent], base: Mapping[KeyT, Item | None]) -> set[tuple[str, str]]:
    """The node types whose indexed properties a SchemaApplied of the batch changes: the
    projection lists their nodes (``nodes_of_type``) to backfill the new index entries."""
    out: set[tuple[str, str]] = set()
    current: dict[str, dict[str, tuple[str, ...]]] = {}
    for logged in events:
        event = logged.event
        if not isinstance(event, SchemaApplied):
            continue
        graph = event.graph
        if graph not in current:
            stored = base.get(key_tuple(keys.schema_view_key(graph)))
            current[graph] = _indexed_by_type(json.loads(get_str(stored, SCHEMA_BODY)) if stored else None)
        after = _indexed_by_type({**event.schema, "graph": graph})
        out.update((graph, t) for t, props in after.items() if current[graph].get(t, ()) != props)
        current[graph] = after
    return out


def derived_keys(events: Sequence[LoggedEvent], base: Mapping[KeyT, Item | None]) -> list[Key]:
    """Items the batch will read that the items fetched so far point at, not fetched yet:
    the directory of a list with sealed chunks; the sealed chunk a removal's entry is in (by
    its create time) and the chunks a shrinking head takes back; a deleted node's own lists
    (heads, then chunks) and, from its heads, its neighbours' mirror lists and views. A guess
    that misses costs a replay round, one that over-reaches a few reads."""
    out: dict[KeyT, Key] = {}

    def want(key: Key) -> None:
        identity = key_tuple(key)
        if identity not in base:
            out.setdefault(identity, key)

    removals: dict[ListKey, list[tuple[str, int]]] = {}
    touched: set[ListKey] = set()
    for logged in events:
        event = logged.event
        graph = event.graph
        if isinstance(event, (EdgeAdded, EdgeRemoved)):
            edge = base.get(key_tuple(keys.edge_view_key(graph, event.source, event.edge_type, event.target)))
            for node, direction, neighbour in ((event.source, Direction.OUT, event.target),
                                               (event.target, Direction.IN, event.source)):
                list_key = (graph, node, direction, event.edge_type)
                touched.add(list_key)
                if edge is not None and isinstance(event, EdgeRemoved):
                    removals.setdefault(list_key, []).append((neighbour, optional_int(edge, EDGE_CREATE_US)))
        elif isinstance(event, NodeDeleted):
            view = base.get(key_tuple(keys.node_view_key(graph, event.aggregate_id)))
            if view is None or DELETED in view:
                continue
            for (edge_type, direction) in unpack_counts(optional_str(view, EDGE_COUNTS)):
                list_key = (graph, event.aggregate_id, direction, edge_type)
                head = base.get(key_tuple(keys.adjacency_head_key(*list_key)), MISSING)
                if isinstance(head, _Missing):
                    want(keys.adjacency_head_key(*list_key))
                    continue
                if head is None:
                    continue
                for number in range(1, optional_int(head, SEALED_CHUNKS) + 1):
                    want(keys.adjacency_chunk_key(*list_key, number))
                for neighbour in list_entries(head)[0]:
                    mirror = (graph, neighbour, _OTHER[direction], edge_type)
                    want(keys.node_view_key(graph, neighbour))
                    want(keys.adjacency_head_key(*mirror))
                    touched.add(mirror)
    for list_key in touched:
        head = base.get(key_tuple(keys.adjacency_head_key(*list_key)))
        sealed = optional_int(head, SEALED_CHUNKS) if head is not None else 0
        if head is None or sealed == 0:
            continue
        directory_item = base.get(key_tuple(keys.adjacency_directory_key(*list_key)), MISSING)
        if isinstance(directory_item, _Missing):
            want(keys.adjacency_directory_key(*list_key))
            continue
        gone = removals.get(list_key)
        if not gone or directory_item is None or DIRECTORY not in directory_item:
            continue
        directory = unpack_directory(directory_item[DIRECTORY]["B"])
        ids = set(list_entries(head)[0])
        in_head = 0
        for neighbour, create_us in gone:
            if neighbour in ids:
                in_head += 1
                continue
            for number, (count, oldest, newest) in enumerate(directory, start=1):
                if count > 0 and oldest <= create_us <= newest:
                    want(keys.adjacency_chunk_key(*list_key, number))
        short = HEAD_MIN - (len(ids) - in_head)  # entries the head will take back from the newest chunks
        number = sealed
        while short > 0 and number > 0:
            want(keys.adjacency_chunk_key(*list_key, number))
            short -= max(1, directory[number - 1][0] if number <= len(directory) else HEAD_MIN)
            number -= 1
    return list(out.values())


class ItemCache:
    """Read-table items as this store last wrote or read them, per shard: LRU, bounded by an
    estimate of their size. The projector is the single writer of its shard's items (its
    lease), so what it wrote is what is stored — as long as nobody else wrote since. Each
    ``apply`` checks that first: the shard's entries are kept only if the projector's
    checkpoint (a consistent read) is the one this store last wrote or read for the same
    projector; any failed write drops them. So a lease taken over by another process, a
    ``reset``, another projector name on the same shard, or a transaction of unknown outcome
    cost a cold batch, never a stale read.

    A replay also stays correct if another process wrote only part of an oversize event
    before dying (that moves no checkpoint): the cached items are the state before that
    event, and applying the event to them rewrites what the other process wrote, alike."""

    ENTRY_OVERHEAD = 800  # bytes of Python objects per cached item, roughly

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, KeyT], tuple[Item | None, int]] = OrderedDict()
        self._bytes = 0
        self._valid: dict[str, tuple[str, int]] = {}  # shard -> (projector, checkpoint) the entries are at
        self.hits = 0
        self.misses = 0

    def check(self, shard: str, projector: str, checkpoint: int) -> None:
        """Keep the shard's entries only if they are at ``projector``'s ``checkpoint``."""
        if self._valid.get(shard) != (projector, checkpoint):
            self.drop(shard)
            self._valid[shard] = (projector, checkpoint)

    def moved(self, shard: str, projector: str, checkpoint: int) -> None:
        self._valid[shard] = (projector, checkpoint)

    def drop(self, shard: str) -> None:
        self._valid.pop(shard, None)
        for entry in [e for e in self._entries if e[0] == shard]:
            self._bytes -= self._entries.pop(entry)[1]

    def get(self, shard: str, identity: KeyT) -> Item | None | _Missing:
        entry = self._entries.get((shard, identity))
        if entry is None:
            return MISSING
        self._entries.move_to_end((shard, identity))
        return entry[0]

    def put(self, shard: str, identity: KeyT, item: Item | None) -> None:
        if self.max_bytes <= 0:
            return
        size = self.ENTRY_OVERHEAD + (item_size(item) if item is not None else 0)
        old = self._entries.pop((shard, identity), None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[(shard, identity)] = (item, size)
        self._bytes += size
        while self._bytes > self.max_bytes and self._entries:
            self._bytes -= self._entries.popitem(last=False)[1][1]


class _Items(Mapping[KeyT, "Item | None"]):
    """What one ``apply`` knows of the read table: what it fetched, over the item cache."""

    def __init__(self, cache: ItemCache, shard: str) -> None:
        self.local: dict[KeyT, Item | None] = {}
        self._cache = cache
        self._shard = shard

    def __getitem__(self, identity: KeyT) -> Item | None:
        if identity in self.local:
            return self.local[identity]
        found = self._cache.get(self._shard, identity)
        if isinstance(found, _Missing):
            raise KeyError(identity)
        self.local[identity] = found
        return found

    def __contains__(self, identity: object) -> bool:
        if identity in self.local:
            return True
        if not isinstance(identity, tuple):
            return False
        found = self._cache.get(self._shard, identity)
        if isinstance(found, _Missing):
            return False
        self.local[identity] = found  # pinned for this apply, whatever the cache evicts meanwhile
        return True

    def __iter__(self) -> Iterator[KeyT]:
        return iter(self.local)

    def __len__(self) -> int:
        return len(self.local)

    def fetched(self, identity: KeyT, item: Item | None) -> None:
        self.local[identity] = item
        self._cache.put(self._shard, identity, item)


class DynamoProjectionStore:
    """ProjectionStore (and Checkpoints) on the read table. ``lease``: when given, every
    transaction of its projector's batches carries ``lease.condition(shard)``, so a process
    that lost the shard's lease cannot write (``LeaseLost``)."""

    def __init__(self, client: DynamoClient, *, lease: DynamoProjectionLease | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, max_rounds: int = DEFAULT_MAX_ROUNDS,
                 max_items: int = MAX_DATA_ITEMS, max_bytes: int = MAX_TRANSACTION_BYTES) -> None:
        if not 1 <= max_items <= MAX_DATA_ITEMS:
            raise ValueError(f"max_items must be in [1, {MAX_DATA_ITEMS}]")
        self._client = client
        self._table = client.tables.read
        self.lease = lease
        self.cache = ItemCache(cache_bytes)
        self.max_rounds = max_rounds
        self._max_items = max_items
        self._max_bytes = max_bytes
        # what the last apply did (tests and the benchmark read it)
        self.last_rounds = 0
        self.last_transactions = 0

    async def ensure_schema(self) -> None:
        """Nothing to create: the tables are ``cli tables create``'s (the bootstrap checks them)."""

    # --- checkpoints ------------------------------------------------------------------------

    async def positions(self, projector: str) -> dict[str, int]:
        index = await self._client.query_all(self._table, key_condition="#pk = :pk", names={"#pk": "pk"},
                                             values={":pk": {"S": keys.projection_index_partition(projector)}},
                                             consistent=True)
        shards = [keys.parse_projection_index_sk(get_str(item, "sk")) for item in index]
        wanted = {key_tuple(self._checkpoint_key(shard, projector)): shard for shard in shards}
        items = await self._client.batch_get(self._table, [self._checkpoint_key(s, projector) for s in shards],
                                             projection=(POSITION,), consistent=True)
        return {wanted[key_tuple(item)]: optional_int(item, POSITION) for item in items if key_tuple(item) in wanted}

    async def reset(self, projector: str, positions: Mapping[str, int] | None = None) -> None:
        if positions is None:
            positions = {shard: 0 for shard in await self.positions(projector)}
        puts: list[Item] = []
        for shard, position in positions.items():
            puts.append({**self._checkpoint_key(shard, projector), POSITION: {"N": str(int(position))}})
            puts.append({**keys.projection_index_key(projector, shard), SHARD: {"S": shard}})
        if puts:
            await self._client.batch_write(self._table, puts=puts)

    @staticmethod
    def _checkpoint_key(shard: str, projector: str) -> Key:
        graph, bucket = keys.parse_shard_id(shard)
        return keys.checkpoint_key(graph, bucket, projector)

    # --- apply ------------------------------------------------------------------------------

    async def apply(self, projector: str, shard: str, events: Sequence[LoggedEvent],
                    change: Callable[[Any, Sequence[LoggedEvent]], Any]) -> int:
        graph, _ = keys.parse_shard_id(shard)
        checkpoint = await self._client.get_item(self._table, self._checkpoint_key(shard, projector),
                                                 consistent=True)
        current = optional_int(checkpoint, POSITION) if checkpoint is not None else 0
        fresh = [e for e in events if e.position > current]
        if not fresh:
            return current
        self.cache.check(shard, projector, current)
        strangers = {e.event.graph for e in fresh} - {graph}
        if strangers:
            raise Internal(f"shard {shard} holds graph {graph!r} only; asked to apply events of "
                           f"{', '.join(sorted(strangers))}")
        transactions = await self._decide(shard, fresh, change)
        if checkpoint is None:  # first checkpoint in this shard: list it for positions()
            await self._client.put_item(self._table, {**keys.projection_index_key(projector, shard),
                                                      SHARD: {"S": shard}})
        return await self._write(projector, shard, transactions, current)

    async def _decide(self, shard: str, events: Sequence[LoggedEvent],
                      change: Callable[[Any, Sequence[LoggedEvent]], Any]) -> list[PlannedTransaction]:
        base = _Items(self.cache, shard)
        members: dict[tuple[str, str], list[str]] = {}
        await self._fetch(base, event_keys(events))
        for _ in range(PREFETCH_LEVELS):  # what the fetched items show the batch will read next
            wanted = derived_keys(events, base)
            if not wanted:
                break
            await self._fetch(base, wanted)
        backfills = _backfilled_types(events, base)
        if backfills:  # known now: saves the pass that would discover them
            await self._fetch_members(base, members, backfills)
        for rounds in range(1, self.max_rounds + 1):
            overlay = ProjectionOverlay(base, members)
            planner = TransactionPlanner(self._max_items, self._max_bytes)
            try:
                for logged in events:
                    change(overlay, [logged])
                    planner.add(logged, overlay.take_writes())
            except Exception:
                if not overlay.incomplete:
                    raise  # a clean pass failed: the change itself fails
                # decided on items not fetched yet: fetch them and decide again
            if not overlay.incomplete:
                self.last_rounds = rounds
                return planner.finish()
            await self._fetch_members(base, members, overlay.missing_members)
            await self._fetch(base, overlay.missing.values())
        raise Internal(f"projecting {len(events)} events still needed unread items after {self.max_rounds} "
                       "rounds of reads", metadata={"first_position": str(events[0].position)})

    async def _fetch(self, base: _Items, wanted: Iterable[Key]) -> None:
        keys_ = {key_tuple(key): key for key in wanted if key_tuple(key) not in base}
        if not keys_:
            return
        items = {key_tuple(item): item
                 for item in await self._client.batch_get(self._table, list(keys_.values()), consistent=True)}
        for identity in keys_:
            base.fetched(identity, items.get(identity))

    async def _fetch_members(self, base: _Items, members: dict[tuple[str, str], list[str]],
                             wanted: Iterable[tuple[str, str]]) -> None:
        """The ``by_type`` members of each (graph, node type) and their views."""
        views: list[Key] = []
        for graph, node_type in wanted:
            if (graph, node_type) in members:
                continue
            ids = members[(graph, node_type)] = await self._members(graph, node_type)
            views += [keys.node_view_key(graph, node_id) for node_id in ids]
        await self._fetch(base, views)

    async def _members(self, graph: str, node_type: str) -> list[str]:
        """The node ids in the type's ``by_type`` partitions (eventually consistent)."""
        pages = await asyncio.gather(*[
            self._client.query_all(self._table, index=BY_TYPE_INDEX, key_condition="#pk = :pk",
                                   names={"#pk": BY_TYPE_PK}, values={":pk": {"S": partition}})
            for partition in keys.type_index_partitions(graph, node_type)])
        return [keys.parse_node_partition(get_str(item, "pk"))[1] for page in pages for item in page]

    async def _write(self, projector: str, shard: str, transactions: list[PlannedTransaction], current: int) -> int:
        checkpoint_key = self._checkpoint_key(shard, projector)
        lease = self.lease if self.lease is not None and self.lease.projector == projector else None
        expected = current
        self.last_transactions = 0
        for planned in transactions:
            items: list[dict[str, Any]] = [
                {"Put": {"TableName": self._table, "Item": item}} if item is not None
                else {"Delete": {"TableName": self._table, "Key": key}} for key, item in planned.writes]
            condition = {"ConditionExpression": "attribute_not_exists(#pk) OR #pos = :expected",
                         "ExpressionAttributeNames": {"#pk": "pk", "#pos": POSITION},
                         "ExpressionAttributeValues": {":expected": {"N": str(expected)}}}
            checkpoint_index = len(items)
            if planned.position is not None:
                items.append({"Put": {"TableName": self._table, **condition,
                                      "Item": {**checkpoint_key, POSITION: {"N": str(planned.position)}}}})
            else:
                items.append({"ConditionCheck": {"TableName": self._table, "Key": checkpoint_key, **condition}})
            lease_index = None
            if lease is not None:
                lease_index = len(items)
                items.append(lease.condition(shard))
            try:
                await self._transact(items, projector, shard, expected, checkpoint_index, lease, lease_index)
            except BaseException:
                self.cache.drop(shard)  # a refused, failed or unknown outcome: read afresh next time
                raise
            if planned.position is not None:
                expected = planned.position
            for key, item in planned.writes:
                self.cache.put(shard, key_tuple(key), item)
            self.cache.moved(shard, projector, expected)
            self.last_transactions += 1
        return expected

    async def _transact(self, items: list[dict[str, Any]], projector: str, shard: str, expected: int,
                        checkpoint_index: int, lease: DynamoProjectionLease | None, lease_index: int | None) -> None:
        try:
            await self._client.transact_write(items)
        except TransactionCancelled as exc:
            failed = exc.condition_failed_at()
            if lease is not None and lease_index in failed:
                raise lease.lost(shard) from None
            if checkpoint_index in failed:
                raise CheckpointMoved(f"the checkpoint of {projector!r} on shard {shard} moved from {expected} "
                                      "while this batch was decided (another projector?)",
                                      reason=Reason.STORAGE_UNAVAILABLE,
                                      metadata={"shard": shard, "projector": projector}) from None
            raise Internal(f"a projection transaction on shard {shard} was refused: {exc}") from None
