"""The process-wide read cache (DESIGN §4 "Cache") and the ``ReadModel`` decorator over it.

What is cached, per graph (every key starts with the graph id, so nothing is ever served
across graphs):
- node views, with and without properties (absent nodes too, as ``None``);
- edge counts per (node, edge type, direction) (``CountEdges``);
- the head of each adjacency id list (``neighbour_ids`` for ``limit <= head_size``): the
  newest ``head_size`` ids and the list's length, sliced for smaller limits; empty lists
  as ``None``;
- the first ``ListEdges`` page of each (node, direction, edge type or all types), without
  time bounds, served for any page size up to the one it was read with;
- the schema.

``CachingReadModel`` reads through the cache; a call with some keys cached reads only the
missing ones, in ONE inner call (the port's one-round-trip-per-call contract holds). Entries
are bounded by an estimated byte size (LRU eviction).

Invalidation is the projection's job (``query_service.projection.cache_sync``): after the
store committed a batch and BEFORE the projection progress moves, every entry the batch
changed is dropped (``keys_for``). A reader that missed, read the store before that commit
and inserts after the invalidation would leave a stale entry behind: every invalidation
bumps the graph's generation, readers capture it before their inner read, and an insert
whose generation moved is skipped (``ReadCache.put``).

Values are shared between requests: callers never mutate what a read returns.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Hashable, Iterable, Sequence, TypeVar

from domain.edge import Direction
from domain.events import DomainEvent, EdgeAdded, EdgeRemoved, NodeCreated, NodeDeleted, NodeUpdated, SchemaApplied
from domain.schema import Schema
from domain.views import AdjacencyKey, EdgeView, NeighbourIds, NodeAccess, NodeView
from query_service.app.ports import ReadModel

# The adjacency head cached per list: the SQLite read model's HEAD_MIN (every per-node limit
# up to 1000, plus one to tell "more"); bootstrap passes the adapter's own value.
DEFAULT_HEAD_SIZE = 1001
KINDS = ("node", "count", "adjacency", "edges_page", "schema")
MISSING: Any = object()

# key tags (the second element of every key; the first is the graph id)
_FULL, _BASIC, _COUNT, _IDS, _PAGE, _SCHEMA = "n", "b", "c", "a", "p", "s"

Key = tuple[Hashable, ...]
V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    hits: dict[str, int]
    misses: dict[str, int]
    evictions: int
    bytes: int
    entries: int
    max_bytes: int


class ReadCache:
    """An LRU map bounded by estimated bytes, with per-graph generations (see the module doc).

    Single-threaded: every method runs on the event loop (``stats`` may be read from another
    thread; it only copies counters)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("a read cache needs a positive size")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, tuple[Any, int, int]] = OrderedDict()  # key -> (value, size, epoch)
        self._bytes = 0
        self._cleared = 0  # bumped by clear(): part of every generation
        self._generation: dict[str, int] = {}  # per graph: bumped by every invalidation
        self._epoch: dict[str, int] = {}  # per graph: bumped by a whole-graph drop (entries of older epochs are dead)
        self.hits = dict.fromkeys(KINDS, 0)
        self.misses = dict.fromkeys(KINDS, 0)
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    # --- reads -------------------------------------------------------------------------
    def get(self, key: Key) -> Any:
        """The value, or ``MISSING``. Counts nothing: callers count hits and misses per kind."""
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        if entry[2] != self._epoch.get(key[0], 0):  # type: ignore[call-overload]
            self._drop(key)
            return MISSING
        self._entries.move_to_end(key)
        return entry[0]

    def generation(self, graph: str) -> int:
        """Capture BEFORE reading the store; pass to ``put``."""
        return self._cleared + self._generation.get(graph, 0)

    def put(self, key: Key, value: Any, size: int, generation: int) -> bool:
        """Insert unless the key's graph saw an invalidation since ``generation`` was taken
        (the value may predate it) or the entry alone is larger than the cache."""
        graph = key[0]
        if self._cleared + self._generation.get(graph, 0) != generation:  # type: ignore[call-overload]
            return False
        if size > self.max_bytes:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (value, size, self._epoch.get(graph, 0))  # type: ignore[call-overload]
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, evicted, _) = self._entries.popitem(last=False)
            self._bytes -= evicted
            self.evictions += 1
        return True

    # --- invalidation ------------------------------------------------------------------
    def invalidate(self, graph: str, keys: Iterable[Key]) -> None:
        self._generation[graph] = self._generation.get(graph, 0) + 1
        for key in keys:
            self._drop(key)

    def invalidate_graph(self, graph: str) -> None:
        """Every entry of the graph, at once (its entries die lazily: O(1) here)."""
        self._generation[graph] = self._generation.get(graph, 0) + 1
        self._epoch[graph] = self._epoch.get(graph, 0) + 1

    def clear(self) -> None:
        self._cleared += 1
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    def stats(self) -> CacheStats:
        return CacheStats(hits=dict(self.hits), misses=dict(self.misses), evictions=self.evictions,
                          bytes=self._bytes, entries=len(self._entries), max_bytes=self.max_bytes)


# --- what an event changes -------------------------------------------------------------

def node_keys(graph: str, node: str) -> list[Key]:
    return [(graph, _FULL, node), (graph, _BASIC, node)]


def list_keys(graph: str, node: str, direction: Direction, edge_type: str) -> list[Key]:
    """Everything derived from one adjacency list: its ids, its count, the first ListEdges
    page of the type and of all types."""
    return [(graph, _IDS, node, direction, edge_type), (graph, _COUNT, node, edge_type, direction),
            (graph, _PAGE, node, direction, edge_type), (graph, _PAGE, node, direction, None)]


def schema_key(graph: str) -> Key:
    return (graph, _SCHEMA)


_MIRROR = {Direction.OUT: Direction.IN, Direction.IN: Direction.OUT}


def keys_for(event: DomainEvent, adjacency: Sequence[tuple[Direction, str, str]] | None = None) -> list[Key] | None:
    """The entries ``event`` may change; ``None`` means "the whole graph".

    ``adjacency`` is, for a NodeDeleted, the deleted node's adjacency rows (direction, edge
    type, neighbour) as the projection saw them just before applying it: the event does not
    carry the neighbours whose lists and counts lose the node. Without them (a replica that
    only tails the log) a NodeDeleted drops the whole graph."""
    g = event.graph
    if isinstance(event, (NodeCreated, NodeUpdated)):
        return node_keys(g, event.aggregate_id)
    if isinstance(event, NodeDeleted):
        if adjacency is None:
            return None
        node = event.aggregate_id
        keys = node_keys(g, node)
        for direction, edge_type, neighbour in adjacency:
            keys += list_keys(g, node, direction, edge_type)
            keys += list_keys(g, neighbour, _MIRROR[direction], edge_type)
            keys += node_keys(g, neighbour)  # its edge counts
        return keys
    if isinstance(event, (EdgeAdded, EdgeRemoved)):
        return [*node_keys(g, event.source), *node_keys(g, event.target),
                *list_keys(g, event.source, Direction.OUT, event.edge_type),
                *list_keys(g, event.target, Direction.IN, event.edge_type)]
    if isinstance(event, SchemaApplied):
        return [schema_key(g)]  # views and lists do not depend on the schema
    return None  # an event this code does not know: be safe


# --- sizes (estimates: CPython object overheads, not exact) ----------------------------

def _value_size(value: Any) -> int:
    if isinstance(value, (str, bytes)):
        return 50 + len(value)
    return 32


def _node_size(view: NodeView | None) -> int:
    if view is None:
        return 160
    return (600 + 300 + 2 * len(view.id)  # 300: its memoised wire encodings (NodeView.encoded) + len(view.type) + 200 * len(view.edge_counts)
            + sum(90 + len(k) + _value_size(v) for k, v in view.properties.items()))


def _first(entry: NeighbourIds, limit: int | None) -> NeighbourIds:
    return entry if limit is None or len(entry.ids) <= limit else NeighbourIds(entry.ids[:limit], entry.total)


def _ids_size(ids: NeighbourIds | None) -> int:
    if ids is None:
        return 160
    return 200 + sum(58 for _ in ids.ids) + sum(map(len, ids.ids))


def _edge_size(edge: EdgeView) -> int:
    return (450 + len(edge.source) + len(edge.target) + len(edge.type)
            + sum(90 + len(k) + _value_size(v) for k, v in edge.properties.items()))


def _page_size(rows: list[tuple[tuple[int, str, str], EdgeView]]) -> int:
    return 200 + sum(200 + len(c[1]) + len(c[2]) + _edge_size(e) for c, e in rows)


def _schema_size(schema: Schema | None) -> int:
    if schema is None:
        return 160
    return 2000 + 1500 * (len(schema.node_types) + len(schema.edge_types))


class CachingReadModel:
    """``ReadModel`` through a ``ReadCache`` (composed in ``query_service.bootstrap``).

    ``round_trips`` is the inner model's: a hit costs none."""

    def __init__(self, inner: ReadModel, cache: ReadCache, *, head_size: int) -> None:
        self._inner = inner
        self.cache = cache
        self._head = head_size

    @property
    def round_trips(self) -> int:
        return self._inner.round_trips

    @round_trips.setter
    def round_trips(self, value: int) -> None:
        self._inner.round_trips = value

    async def _one(self, graph: str, kind: str, key: Key, load: Callable[[], Awaitable[V]],
                   size: Callable[[V], int]) -> V:
        """Cache-aside for one key: a hit, or one inner read stored under the generation
        taken before it (so an invalidation during the read keeps the value out)."""
        cache = self.cache
        value: V = cache.get(key)  # what ``load`` returned when it was stored (or MISSING)
        if value is not MISSING:
            cache.hits[kind] += 1
            return value
        cache.misses[kind] += 1
        generation = cache.generation(graph)
        value = await load()
        cache.put(key, value, size(value), generation)
        return value

    async def get_schema(self, graph: str) -> Schema | None:
        return await self._one(graph, "schema", schema_key(graph), lambda: self._inner.get_schema(graph),
                               _schema_size)

    async def get_nodes(self, graph: str, ids: Sequence[str], *, properties: bool = True) -> dict[str, NodeView]:
        if not ids:
            return {}
        cache = self.cache
        out: dict[str, NodeView] = {}
        missing: list[str] = []
        unique = dict.fromkeys(ids) if len(ids) > 1 else ids
        for i in unique:
            view = cache.get((graph, _FULL, i))
            if not properties:
                if view is MISSING:
                    view = cache.get((graph, _BASIC, i))
                elif view is not None:
                    view = replace(view, properties={})
            if view is MISSING:
                missing.append(i)
            elif view is not None:
                out[i] = view
        cache.hits["node"] += len(unique) - len(missing)
        if missing:
            cache.misses["node"] += len(missing)
            generation = cache.generation(graph)
            found = await self._inner.get_nodes(graph, missing, properties=properties)
            tag = _FULL if properties else _BASIC
            for i in missing:
                view = found.get(i)
                cache.put((graph, tag, i), view, _node_size(view), generation)
                if view is not None:
                    out[i] = view
        return out

    async def neighbour_ids(self, graph: str, keys: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
        """Heads (the newest ``HEAD_MIN`` ids and the length) are cached. A read within the head
        is served by any cached head; a read past it (FindPath reads whole lists) only by a
        head that holds its whole list, and a list read whole that fits a head is cached."""
        if not keys:
            return {}
        whole = limit is None or limit > self._head
        cache = self.cache
        out: dict[AdjacencyKey, NeighbourIds] = {}
        missing: list[AdjacencyKey] = []
        unique = dict.fromkeys(keys)
        for key in unique:
            entry = cache.get((graph, _IDS, key.node, key.direction, key.edge_type))
            if entry is MISSING or (whole and entry is not None and entry.total > len(entry.ids)):
                missing.append(key)
            elif entry is not None:
                out[key] = _first(entry, limit)
        cache.hits["adjacency"] += len(unique) - len(missing)
        if missing:
            cache.misses["adjacency"] += len(missing)
            generation = cache.generation(graph)
            found = await self._inner.neighbour_ids(graph, missing, limit if whole else self._head)
            for key in missing:
                entry = found.get(key)
                if not whole or entry is None or entry.total <= self._head:
                    cache.put((graph, _IDS, key.node, key.direction, key.edge_type), entry, _ids_size(entry),
                              generation)
                if entry is not None:
                    out[key] = _first(entry, limit)
        return out

    async def get_edges(self, graph: str,
                        triples: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], EdgeView]:
        return await self._inner.get_edges(graph, triples)

    async def get_edge(self, graph: str, source: str, edge_type: str, target: str) -> EdgeView | None:
        return await self._inner.get_edge(graph, source, edge_type, target)

    async def count_edges(self, graph: str, node: str, edge_type: str, direction: Direction) -> int:
        return await self._one(graph, "count", (graph, _COUNT, node, edge_type, direction),
                               lambda: self._inner.count_edges(graph, node, edge_type, direction), lambda _: 120)

    async def list_adjacency(self, graph: str, key: AdjacencyKey, *, limit: int,
                             after: tuple[int, str, str] | None = None,
                             created_after_us: int | None = None,
                             created_before_us: int | None = None) -> list[tuple[tuple[int, str, str], EdgeView]]:
        if after is not None or created_after_us is not None or created_before_us is not None:
            return await self._inner.list_adjacency(graph, key, limit=limit, after=after,
                                                    created_after_us=created_after_us,
                                                    created_before_us=created_before_us)
        cache = self.cache
        cache_key = (graph, _PAGE, key.node, key.direction, key.edge_type)
        entry = cache.get(cache_key)
        rows: list[tuple[tuple[int, str, str], EdgeView]]
        if entry is not MISSING:
            fetched, rows = entry
            if limit <= fetched or len(rows) < fetched:  # a prefix of what was read, or the whole list
                cache.hits["edges_page"] += 1
                return rows[:limit]
        cache.misses["edges_page"] += 1
        generation = cache.generation(graph)
        rows = await self._inner.list_adjacency(graph, key, limit=limit)
        cache.put(cache_key, (limit, rows), _page_size(rows), generation)
        return list(rows)

    async def scan_nodes(self, graph: str, access: NodeAccess, *, after: tuple[Any, ...] | None,
                         limit: int) -> list[tuple[tuple[Any, ...], NodeView]]:
        return await self._inner.scan_nodes(graph, access, after=after, limit=limit)
