"""``DynamoReadModel``: the query side's ReadModel port on the read table (ADR 0009, 0012).

Eventually consistent reads by default (``consistent=True`` for strongly consistent ones);
no Query on any path but the node listings, which use the ``by_type`` / ``by_value``
indexes (themselves eventually consistent). What each port method costs:

- ``get_nodes`` / ``get_edges``: BatchGetItem of the node (edge) views, ⌈n / 100⌉ calls
  (1,000 nodes: 10 calls, run ``ClientOptions.batch_concurrency`` at a time).
- ``get_edge`` / ``count_edges`` / ``get_schema``: one GetItem.
- ``neighbour_ids``: one BatchGetItem of the head of every list (per 100 lists); only a
  list whose wanted prefix goes past its head adds a BatchGetItem of the sealed chunks it
  needs (a traversal's per-node limit ≤ 1,000 never does: a head holds ≥ 1,001 ids).
- ``list_adjacency``: [GetItem of the node view, to know its lists, when no edge type is
  given] + BatchGetItem of the heads + [the sealed-chunk directories and the chunks that
  may hold entries of the page — only when the page reaches past the heads or the list
  was appended out of time order] + BatchGetItem of the page's edge views (properties).
- ``scan_nodes``: one Query per index bucket (8, concurrent) per page, k-way merged, then
  BatchGetItem of the views; candidates whose view no longer matches (the index lags) are
  dropped and the scan continues, so a short page still means the end.

``round_trips`` counts port calls, as the SQLite adapter does; the storage calls behind
each are in the client's ``CapacityMeter`` (and any open ``capacity_scope``).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Sequence

from deploy.dynamodb.tables import BY_TYPE_INDEX, BY_TYPE_PK, BY_TYPE_SK, BY_VALUE_INDEX, BY_VALUE_PK, BY_VALUE_SK
from domain.edge import Direction
from domain.schema import Schema, schema_from_dict
from domain.values import PropertyKind, PropertyValue, from_epoch_micros, properties_from_json, sortable
from domain.views import AccessKind, AdjacencyKey, EdgeView, NeighbourIds, NodeAccess, NodeView

from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.attributes import AttributeValue, Item, Key, get_str, key_tuple
from infrastructure.persistence.dynamodb.client import DynamoClient
from infrastructure.persistence.dynamodb.read_items import (
    CREATE_US,
    DELETED,
    DIRECTORY,
    EDGE_COUNTS,
    EDGE_CREATE_US,
    HEAD_MIN,
    LIST_IDS,
    LIST_TOTAL,
    NODE_TYPE,
    NODE_VIEW_BASIC,
    PROPERTIES,
    SCHEMA_BODY,
    SEALED_CHUNKS,
    SEALED_MAX_US,
    UPDATE_US,
    VERSION,
    list_entries,
    list_ids,
    optional_int,
    optional_str,
    unpack_directory,
)
from infrastructure.persistence.edge_counts import unpack_counts

Cursor = tuple[int, str, str]  # (create_us, edge type, neighbour): a ListEdges keyset position


def node_view_from_item(graph: str, node_id: str, item: Item, *, properties: bool = True) -> NodeView | None:
    """The view a node-view item stands for; None for a tombstone."""
    if DELETED in item:
        return None
    text = optional_str(item, PROPERTIES, "{}") if properties else "{}"
    return NodeView(graph=graph, id=node_id, type=optional_str(item, NODE_TYPE),
                    properties={} if text == "{}" else properties_from_json(text),
                    version=optional_int(item, VERSION), create_time=from_epoch_micros(optional_int(item, CREATE_US)),
                    update_time=from_epoch_micros(optional_int(item, UPDATE_US)),
                    edge_counts=unpack_counts(optional_str(item, EDGE_COUNTS)))


def edge_view_from_item(graph: str, source: str, edge_type: str, target: str, item: Item) -> EdgeView:
    text = optional_str(item, PROPERTIES, "{}")
    return EdgeView(graph=graph, source=source, type=edge_type, target=target,
                    properties={} if text == "{}" else properties_from_json(text),
                    create_time=from_epoch_micros(optional_int(item, EDGE_CREATE_US)))


def _after(cursor: Cursor | None, create_us: int, edge_type: str, neighbour: str) -> bool:
    """Whether the entry comes after ``cursor`` in (create time desc, type, neighbour) order."""
    if cursor is None:
        return True
    return create_us < cursor[0] or (create_us == cursor[0] and (edge_type, neighbour) > (cursor[1], cursor[2]))


def _order(entry: Cursor) -> tuple[int, str, str]:
    return -entry[0], entry[1], entry[2]


class DynamoReadModel:
    """ReadModel over the read table. ``consistent`` makes every read strongly consistent
    (twice the read capacity; the indexes of ``scan_nodes`` stay eventually consistent)."""

    def __init__(self, client: DynamoClient, *, consistent: bool = False) -> None:
        self._client = client
        self._table = client.tables.read
        self._consistent = consistent
        self.round_trips = 0
        # property kinds per graph, from the last schema this adapter parsed: a listing by
        # value encodes its bounds with the property's kind (an INT bound on a DOUBLE property)
        self._kinds: dict[str, dict[tuple[str, str], PropertyKind]] = {}

    # --- schema ----------------------------------------------------------------------------

    async def _schema(self, graph: str) -> Schema | None:
        item = await self._client.get_item(self._table, keys.schema_view_key(graph), consistent=self._consistent)
        if item is None:
            self._kinds.pop(graph, None)
            return None
        schema = schema_from_dict(json.loads(get_str(item, SCHEMA_BODY)))
        self._kinds[graph] = {(t.name, p.name): p.kind for t in schema.node_types.values() for p in t.properties}
        return schema

    async def get_schema(self, graph: str) -> Schema | None:
        self.round_trips += 1
        return await self._schema(graph)

    # --- nodes and edges -------------------------------------------------------------------

    async def get_nodes(self, graph: str, ids: Sequence[str], *, properties: bool = True) -> dict[str, NodeView]:
        if not ids:
            return {}
        self.round_trips += 1
        return await self._views(graph, ids, properties=properties)

    async def _views(self, graph: str, ids: Sequence[str], *, properties: bool = True) -> dict[str, NodeView]:
        wanted = {key_tuple(keys.node_view_key(graph, i)): i for i in dict.fromkeys(ids)}
        items = await self._client.batch_get(self._table, [keys.node_view_key(graph, i) for i in wanted.values()],
                                             projection=None if properties else NODE_VIEW_BASIC,
                                             consistent=self._consistent)
        out: dict[str, NodeView] = {}
        for item in items:
            node_id = wanted.get(key_tuple(item))
            if node_id is not None:
                view = node_view_from_item(graph, node_id, item, properties=properties)
                if view is not None:
                    out[node_id] = view
        return out

    async def get_edges(self, graph: str,
                        triples: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], EdgeView]:
        if not triples:
            return {}
        self.round_trips += 1
        return await self._edges(graph, triples)

    async def _edges(self, graph: str,
                     triples: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], EdgeView]:
        wanted = {key_tuple(keys.edge_view_key(graph, *t)): t for t in dict.fromkeys(triples)}
        items = await self._client.batch_get(self._table, [keys.edge_view_key(graph, *t) for t in wanted.values()],
                                             consistent=self._consistent)
        out: dict[tuple[str, str, str], EdgeView] = {}
        for item in items:
            triple = wanted.get(key_tuple(item))
            if triple is not None:
                out[triple] = edge_view_from_item(graph, *triple, item)
        return out

    async def get_edge(self, graph: str, source: str, edge_type: str, target: str) -> EdgeView | None:
        self.round_trips += 1
        item = await self._client.get_item(self._table, keys.edge_view_key(graph, source, edge_type, target),
                                           consistent=self._consistent)
        return None if item is None else edge_view_from_item(graph, source, edge_type, target, item)

    async def count_edges(self, graph: str, node: str, edge_type: str, direction: Direction) -> int:
        self.round_trips += 1
        item = await self._client.get_item(self._table, keys.node_view_key(graph, node),
                                           projection=(DELETED, EDGE_COUNTS), consistent=self._consistent)
        if item is None or DELETED in item:
            return 0
        return unpack_counts(optional_str(item, EDGE_COUNTS)).get((edge_type, direction), 0)

    # --- adjacency -------------------------------------------------------------------------

    async def neighbour_ids(self, graph: str, keys_: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
        if not keys_:
            return {}
        unique = list(dict.fromkeys(keys_))
        heads: dict[tuple[str, str], AdjacencyKey] = {}
        for key in unique:
            if key.edge_type is None:
                raise ValueError("neighbour_ids needs keys with an edge type")
            heads[key_tuple(keys.adjacency_head_key(graph, key.node, key.direction, key.edge_type))] = key
        self.round_trips += 1
        items = await self._client.batch_get(
            self._table, [keys.adjacency_head_key(graph, k.node, k.direction, k.edge_type or "") for k in unique],
            projection=(LIST_TOTAL, LIST_IDS, SEALED_CHUNKS), consistent=self._consistent)
        out: dict[AdjacencyKey, NeighbourIds] = {}
        # lists whose wanted prefix goes past the head: [ids so far, total, next sealed chunk to read]
        pending: dict[AdjacencyKey, tuple[list[str], int, int]] = {}
        for item in items:
            found = heads.get(key_tuple(item))
            total = optional_int(item, LIST_TOTAL)
            if found is None or total <= 0:
                continue
            key = found
            ids = list_ids(item)
            sealed = optional_int(item, SEALED_CHUNKS)
            if sealed == 0 or (limit is not None and len(ids) >= limit):
                out[key] = NeighbourIds(ids if limit is None else ids[:limit], total)
            else:
                pending[key] = (ids, total, sealed)
        while pending:
            wanted: dict[tuple[str, str], tuple[AdjacencyKey, int]] = {}
            for key, (ids, _, top) in pending.items():
                count = top if limit is None else max(1, math.ceil((limit - len(ids)) / HEAD_MIN))
                for chunk in range(top, max(0, top - count), -1):
                    wanted[key_tuple(self._chunk_key(graph, key, chunk))] = (key, chunk)
            chunks: dict[tuple[AdjacencyKey, int], list[str]] = {}
            for item in await self._client.batch_get(self._table, [self._chunk_key(graph, k, c)
                                                                   for k, c in wanted.values()],
                                                     projection=(LIST_IDS,), consistent=self._consistent):
                where = wanted.get(key_tuple(item))
                if where is not None:
                    chunks[where] = list_ids(item)
            requested = set(wanted.values())
            for key, (ids, total, top) in list(pending.items()):
                chunk = top
                while chunk > 0 and (key, chunk) in requested:
                    ids += chunks.get((key, chunk), [])  # newer chunks first, each newest first
                    chunk -= 1
                if chunk == 0 or (limit is not None and len(ids) >= limit):
                    out[key] = NeighbourIds(ids if limit is None else ids[:limit], total)
                    del pending[key]
                else:
                    pending[key] = (ids, total, chunk)
        return out

    @staticmethod
    def _chunk_key(graph: str, key: AdjacencyKey, chunk: int) -> Key:
        return keys.adjacency_chunk_key(graph, key.node, key.direction, key.edge_type or "", chunk)

    async def list_adjacency(self, graph: str, key: AdjacencyKey, *, limit: int,
                             after: Cursor | None = None,
                             created_after_us: int | None = None,
                             created_before_us: int | None = None) -> list[tuple[Cursor, EdgeView]]:
        """Newest first (ties by edge type, neighbour). The heads' entries are candidates;
        a sealed chunk is read only when its time range can hold an entry that ranks before
        the page's last candidate (the directory says, per chunk), so a page costs its heads,
        rarely a chunk or two, and its edge views."""
        self.round_trips += 1
        if limit <= 0:
            return []
        if key.edge_type is not None:
            types = [key.edge_type]
        else:
            view = await self._client.get_item(self._table, keys.node_view_key(graph, key.node),
                                               projection=(DELETED, EDGE_COUNTS), consistent=self._consistent)
            if view is None or DELETED in view:
                return []
            types = sorted(t for (t, d), c in unpack_counts(optional_str(view, EDGE_COUNTS)).items()
                           if d is key.direction and c > 0)
            if not types:
                return []

        def admits(create_us: int, edge_type: str, neighbour: str) -> bool:
            if created_after_us is not None and create_us <= created_after_us:
                return False
            if created_before_us is not None and create_us >= created_before_us:
                return False
            return _after(after, create_us, edge_type, neighbour)

        candidates: list[Cursor] = []

        def take(edge_type: str, item: Item) -> None:
            ids, times = list_entries(item)
            candidates.extend((us, edge_type, nb) for nb, us in zip(ids, times) if admits(us, edge_type, nb))

        def limit_th() -> Cursor | None:
            """The page's last entry so far (None while fewer than ``limit`` candidates)."""
            if len(candidates) < limit:
                return None
            candidates.sort(key=_order)
            return candidates[limit - 1]

        by_head = {key_tuple(keys.adjacency_head_key(graph, key.node, key.direction, t)): t for t in types}
        sealed: dict[str, int] = {}  # edge type -> newest sealed create time
        for item in await self._client.batch_get(
                self._table, [keys.adjacency_head_key(graph, key.node, key.direction, t) for t in types],
                consistent=self._consistent):
            edge_type = by_head.get(key_tuple(item))
            if edge_type is None:
                continue
            take(edge_type, item)
            if optional_int(item, SEALED_CHUNKS) > 0:
                sealed[edge_type] = optional_int(item, SEALED_MAX_US)
        last = limit_th()
        reach = [t for t, newest in sealed.items()
                 if (last is None or newest >= last[0]) and (created_after_us is None or newest > created_after_us)]
        if reach:
            await self._read_sealed(graph, key, reach, limit, candidates, take, limit_th, admits_range=(
                created_after_us, created_before_us, after[0] if after is not None else None))
        candidates.sort(key=_order)
        page = candidates[:limit]
        out = key.direction is Direction.OUT
        triples = [(key.node, t, nb) if out else (nb, t, key.node) for _, t, nb in page]
        edges = await self._edges(graph, triples) if triples else {}
        rows: list[tuple[Cursor, EdgeView]] = []
        for entry, triple in zip(page, triples):
            edge = edges.get(triple)
            if edge is None:  # removed since the list was read (eventual consistency): its identity
                edge = EdgeView(graph, triple[0], triple[1], triple[2], {}, from_epoch_micros(entry[0]))
            rows.append((entry, edge))
        return rows

    async def _read_sealed(self, graph: str, key: AdjacencyKey, types: list[str], limit: int,
                           candidates: list[Cursor], take: Any, limit_th: Any,
                           admits_range: tuple[int | None, int | None, int | None]) -> None:
        """Read the sealed chunks that may hold entries of the page: their directories first,
        then chunks round by round (usually one) until no unread chunk can rank before the
        page's last candidate."""
        created_after_us, created_before_us, at_most_us = admits_range
        by_dir = {key_tuple(keys.adjacency_directory_key(graph, key.node, key.direction, t)): t for t in types}
        unread: list[tuple[int, int, str, int]] = []  # (newest, entries, edge type, chunk)
        for item in await self._client.batch_get(
                self._table, [keys.adjacency_directory_key(graph, key.node, key.direction, t) for t in types],
                consistent=self._consistent):
            edge_type = by_dir.get(key_tuple(item))
            if edge_type is None or DIRECTORY not in item:
                continue
            for number, (entries, oldest, newest) in enumerate(unpack_directory(item[DIRECTORY]["B"]), start=1):
                if entries <= 0:
                    continue
                if created_after_us is not None and newest <= created_after_us:
                    continue
                if created_before_us is not None and oldest >= created_before_us:
                    continue
                if at_most_us is not None and oldest > at_most_us:
                    continue
                unread.append((newest, entries, edge_type, number))
        while unread:
            last = limit_th()
            if last is not None:
                picked = [c for c in unread if c[0] >= last[0]]
            else:  # not a full page yet: the newest chunks that can fill it
                unread.sort(reverse=True)
                picked, room = [], limit - len(candidates)
                for chunk in unread:
                    picked.append(chunk)
                    room -= chunk[1]
                    if room <= 0:
                        break
            if not picked:
                return
            chosen = {(t, n) for _, _, t, n in picked}
            unread = [c for c in unread if (c[2], c[3]) not in chosen]
            by_chunk = {key_tuple(keys.adjacency_chunk_key(graph, key.node, key.direction, t, n)): t
                        for t, n in chosen}
            for item in await self._client.batch_get(
                    self._table, [keys.adjacency_chunk_key(graph, key.node, key.direction, t, n) for t, n in chosen],
                    consistent=self._consistent):
                edge_type = by_chunk.get(key_tuple(item))
                if edge_type is not None:
                    take(edge_type, item)

    # --- node listings ---------------------------------------------------------------------

    async def _kind(self, graph: str, node_type: str, prop: str) -> PropertyKind | None:
        kinds = self._kinds.get(graph)
        if kinds is None or (node_type, prop) not in kinds:
            await self._schema(graph)
            kinds = self._kinds.get(graph) or {}
        return kinds.get((node_type, prop))

    async def scan_nodes(self, graph: str, access: NodeAccess, *, after: tuple[Any, ...] | None,
                         limit: int) -> list[tuple[tuple[Any, ...], NodeView]]:
        """Nodes in ``access``'s order (NodeAccess): the 8 buckets of the index are queried
        concurrently and merged by sort key; each candidate is checked on its view."""
        self.round_trips += 1
        if limit <= 0:
            return []
        low: str | None
        high: str | None
        if access.kind is AccessKind.TYPE_SCAN:
            partitions = keys.type_index_partitions(graph, access.node_type)
            start = keys.escape(str(after[0])) if after else None
            return await self._merged_scan(
                graph, BY_TYPE_INDEX, BY_TYPE_PK, BY_TYPE_SK, partitions, start, None, start, False, limit,
                lambda view: view.type == access.node_type, lambda view: (view.id,))
        prop = access.property or ""
        kind = await self._kind(graph, access.node_type, prop)
        if kind is None:
            return []
        partitions = keys.value_index_partitions(graph, access.node_type, prop)
        try:
            if access.kind in (AccessKind.UNIQUE, AccessKind.INDEX_EQ):
                encoded = keys.encode_index_value(access.value, kind)  # type: ignore[arg-type]
                low = encoded.text + " "
                high = encoded.text + "!"
                exclude = None
                if after:
                    low = exclude = f"{encoded.text} {keys.escape(str(after[0]))}"
                value = access.value
                return await self._merged_scan(
                    graph, BY_VALUE_INDEX, BY_VALUE_PK, BY_VALUE_SK, partitions, low, high, exclude, False, limit,
                    lambda view: view.type == access.node_type and _equal(view.properties.get(prop), value),
                    lambda view: (view.id,))
            low, high = keys.value_index_bounds(kind, access.lower, access.lower_inclusive,  # type: ignore[arg-type]
                                                access.upper, access.upper_inclusive)  # type: ignore[arg-type]
            exclude = None
            if after:
                exclude = f"{keys.encode_index_value(after[0], kind).text} {keys.escape(str(after[1]))}"
                if access.descending:
                    high = exclude if high is None else min(high, exclude)
                else:
                    low = exclude if low is None else max(low, exclude)
        except ValueError:  # a value the property's kind cannot hold: nothing matches
            return []
        return await self._merged_scan(
            graph, BY_VALUE_INDEX, BY_VALUE_PK, BY_VALUE_SK, partitions, low, high, exclude, access.descending,
            limit, lambda view: view.type == access.node_type and _in_range(view.properties.get(prop), access),
            lambda view: (sortable(view.properties[prop]), view.id))

    async def _merged_scan(self, graph: str, index: str, pk_name: str, sk_name: str, partitions: list[str],
                           low: str | None, high: str | None, exclude: str | None, descending: bool, limit: int,
                           matches: Any, cursor_of: Any) -> list[tuple[tuple[Any, ...], NodeView]]:
        """Up to ``limit`` live, matching nodes from the index buckets, merged by sort key
        within [low, high] (inclusive; ``exclude`` is the exclusive keyset position)."""
        out: list[tuple[tuple[Any, ...], NodeView]] = []
        while len(out) < limit:
            if low is not None and high is not None and low > high:
                return out
            want = limit - len(out)
            condition = "#pk = :pk"
            values: dict[str, AttributeValue] = {}
            if low is not None and high is not None:
                condition += " AND #sk BETWEEN :lo AND :hi"
                values = {":lo": {"S": low}, ":hi": {"S": high}}
            elif low is not None:
                condition += " AND #sk >= :lo"
                values = {":lo": {"S": low}}
            elif high is not None:
                condition += " AND #sk <= :hi"
                values = {":hi": {"S": high}}
            names = {"#pk": pk_name, "#sk": sk_name} if values else {"#pk": pk_name}
            pages = await asyncio.gather(*[
                self._client.query(self._table, index=index, key_condition=condition, names=names,
                                   values={**values, ":pk": {"S": partition}}, limit=want + 1, forward=not descending)
                for partition in partitions])
            entries = [(get_str(item, sk_name), get_str(item, "pk")) for page in pages for item in page.items
                       if get_str(item, sk_name) != exclude]
            entries.sort(reverse=descending)
            more = any(page.last_key is not None for page in pages) or len(entries) > want
            entries = entries[:want]
            if not entries:
                return out
            ids = [keys.parse_node_partition(pk)[1] for _, pk in entries]
            views = await self._views(graph, ids)
            for node_id in ids:
                view = views.get(node_id)
                if view is not None and matches(view):
                    out.append((cursor_of(view), view))
            if not more:
                return out
            exclude = entries[-1][0]
            if descending:
                high = exclude
            else:
                low = exclude
        return out[:limit]


def _equal(value: PropertyValue | None, wanted: object) -> bool:
    if value is None:
        return False
    have = sortable(value)
    return have == wanted and isinstance(have, str) == isinstance(wanted, str)


def _in_range(value: PropertyValue | None, access: NodeAccess) -> bool:
    if value is None:
        return False
    have: Any = sortable(value)
    try:
        if access.lower is not None and (have < access.lower or (have == access.lower and not access.lower_inclusive)):
            return False
        if access.upper is not None and (have > access.upper or (have == access.upper and not access.upper_inclusive)):
            return False
    except TypeError:  # a value of another kind (the index lags a schema change)
        return False
    return True
