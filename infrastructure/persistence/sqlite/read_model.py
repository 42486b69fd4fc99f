"""The query side's read model in SQLite (tables prefixed ``rm_``).

Reads go through a ``SqliteReaderPool``; the projector writes through its own
``SqliteConnection`` (``SqliteProjectionStore``). Every public read is ONE hop to a
connection thread (one round trip, counted in ``round_trips``) however many keys
it carries: ``IN (...)`` lists for nodes and for the id chunks of a traversal level
(``neighbour_ids``: one statement per edge type and direction, one head row per list),
and one index-ordered LIMITed statement for a ``ListEdges`` page of edge rows.

``rm_node_index.value`` is declared without a type, so it has no affinity: ints and
doubles compare numerically, strings lexically, and timestamps are stored as epoch
microseconds (``domain.values.sortable``).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar

from domain.edge import Direction
from domain.ports import LoggedEvent
from domain.schema import Schema, schema_from_dict
from domain.values import PropertyValue, epoch_micros, from_epoch_micros, properties_from_json, properties_json
from domain.views import AdjacencyKey, EdgeView, NeighbourIds, NodeAccess, NodeView
from domain.errors import Internal
from infrastructure.persistence.sqlite.connection import SqliteRunner
from infrastructure.persistence.sqlite.event_log import SHARD
from infrastructure.persistence.edge_counts import unpack_counts

# The read model's table layout. A file projected under another layout is rebuilt from the
# event log at start-up (``prepare_read_model``): the read model is derived data.
READ_MODEL_LAYOUT = 3

T = TypeVar("T")

READ_MODEL_DDL = """
CREATE TABLE IF NOT EXISTS rm_nodes (
    graph       TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    properties  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    create_time TEXT NOT NULL,
    update_time TEXT NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    -- the node's edge counts, packed "type DIRECTION count" lines (only counts > 0): a
    -- view is ONE row, so reading 1,000 nodes is 1,000 index seeks, not 2,000
    edge_counts TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (graph, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rm_nodes_by_type ON rm_nodes (graph, type, deleted, id);

CREATE TABLE IF NOT EXISTS rm_adjacency (
    graph       TEXT NOT NULL,
    node        TEXT NOT NULL,
    direction   TEXT NOT NULL,
    edge_type   TEXT NOT NULL,
    neighbour   TEXT NOT NULL,
    properties  TEXT NOT NULL,
    create_us   INTEGER NOT NULL,  -- the create time, exactly (epoch microseconds)
    PRIMARY KEY (graph, node, direction, edge_type, neighbour)
) WITHOUT ROWID;
-- The only secondary index: a list without an edge type is the merge of its typed lists.
CREATE INDEX IF NOT EXISTS rm_adjacency_newest
    ON rm_adjacency (graph, node, direction, edge_type, create_us DESC, neighbour);

-- Neighbour ids per (node, direction, edge type), packed newest first in chunks
-- (ADR 0006): chunk 0, the head, holds the newest HEAD_MIN..HEAD_MAX ids and the
-- list's total, so a traversal level is ONE statement returning one row per
-- frontier node; older ids sit in sealed chunks 1, 2, ... (higher = newer).
-- Ids are separated by a space, which no node id contains.
CREATE TABLE IF NOT EXISTS rm_adjacency_chunks (
    graph     TEXT NOT NULL,
    node      TEXT NOT NULL,
    direction TEXT NOT NULL,
    edge_type TEXT NOT NULL,
    chunk     INTEGER NOT NULL,
    total     INTEGER NOT NULL,
    ids       TEXT NOT NULL,
    PRIMARY KEY (graph, node, direction, edge_type, chunk)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rm_node_index (
    graph    TEXT NOT NULL,
    type     TEXT NOT NULL,
    property TEXT NOT NULL,
    value,
    node     TEXT NOT NULL,
    PRIMARY KEY (graph, type, property, value, node)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rm_node_index_by_node ON rm_node_index (graph, node);

CREATE TABLE IF NOT EXISTS rm_schemas (
    graph   TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS rm_checkpoints (
    projector TEXT PRIMARY KEY,
    position  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS rm_layout (
    version INTEGER NOT NULL
);
""" + f"INSERT INTO rm_layout (version) SELECT {READ_MODEL_LAYOUT} WHERE NOT EXISTS (SELECT 1 FROM rm_layout);\n"

# Reads of at most this many nodes run on the event loop's thread (SqliteReaderPool.run_inline).
POINT_READ_MAX_KEYS = 8

# SQLite's default host-parameter limit is 32766; stay far below it.
MAX_KEYS_PER_STATEMENT = 500
# An ids-only level read binds one parameter per frontier node: a whole level fits one statement.
MAX_NODES_PER_ID_STATEMENT = 10_000
# A projection batch checks which adjacency rows exist with four parameters a row.
_EXISTS_ROWS_PER_STATEMENT = 1_000

# Adjacency id chunks (ADR 0006). The head holds at least the newest HEAD_MIN ids of a list
# (every per-node limit up to 1000, plus one to tell "more"), and is split when it passes
# HEAD_MAX, so an append rewrites at most ~HEAD_MAX ids and most lists are their head alone.
HEAD_MIN = 1001
HEAD_MAX = 2 * HEAD_MIN
ID_SEPARATOR = " "




def _us(value: datetime) -> int:
    return epoch_micros(value)


def _ts(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _chunks(items: Sequence[Any], size: int = MAX_KEYS_PER_STATEMENT) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _edge_from_row(graph: str, row: sqlite3.Row) -> EdgeView:
    node, neighbour = row["node"], row["neighbour"]
    out = row["direction"] == Direction.OUT.value
    # The hot path of every traversal: most edges carry no properties, and create_us
    # already holds the time exactly, so skip both parsers where we can.
    text = row["properties"]
    return EdgeView(graph=graph, source=node if out else neighbour, type=row["edge_type"],
                    target=neighbour if out else node,
                    properties={} if text == "{}" else properties_from_json(text),
                    create_time=from_epoch_micros(row["create_us"]))



def pack_counts(counts: dict[tuple[str, str], int]) -> str:
    return "\n".join(f"{t} {d} {c}" for (t, d), c in sorted(counts.items()) if c > 0)


def _nodes_sync(conn: sqlite3.Connection, graph: str, ids: Sequence[str], *,
                properties: bool = True) -> dict[str, NodeView]:
    out: dict[str, NodeView] = {}
    columns = "*" if properties else _BASIC_COLUMNS
    for chunk in _chunks(list(dict.fromkeys(ids)), MAX_NODES_PER_ID_STATEMENT):
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(f"SELECT {columns} FROM rm_nodes WHERE graph = ? AND deleted = 0 AND id IN ({marks})",
                              (graph, *chunk)):
            out[r["id"]] = _node_from_row(r)
    return out


def neighbour_ids_sync(conn: sqlite3.Connection, graph: str, keys: Sequence[AdjacencyKey],
                       limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
    """The newest ``limit`` neighbour ids (every id when ``limit`` is None) of many lists.

    Keys are grouped by (direction, edge type); each group is ONE statement whatever its
    size (up to MAX_NODES_PER_ID_STATEMENT nodes), reading one head row per node when the
    limit fits the head, and the node's chunks otherwise. No row per edge, no view objects."""
    groups: dict[tuple[Direction, str], list[str]] = {}
    for key in dict.fromkeys(keys):
        if key.edge_type is None:
            raise ValueError("neighbour_ids needs keys with an edge type")
        groups.setdefault((key.direction, key.edge_type), []).append(key.node)
    out: dict[AdjacencyKey, NeighbourIds] = {}
    whole = limit is None or limit > HEAD_MIN
    for (direction, edge_type), nodes in groups.items():
        for part in _chunks(nodes, MAX_NODES_PER_ID_STATEMENT):
            marks = ",".join("?" * len(part))
            params = (graph, direction.value, edge_type, *part)
            if not whole:
                for node, total, text in conn.execute(
                        "SELECT node, total, ids FROM rm_adjacency_chunks WHERE graph = ? AND direction = ? "
                        f"AND edge_type = ? AND chunk = 0 AND node IN ({marks})", params):
                    ids = text.split(ID_SEPARATOR)
                    out[AdjacencyKey(node, direction, edge_type)] = NeighbourIds(
                        ids[:limit] if len(ids) > limit else ids, total)  # type: ignore[operator]
                continue
            heads: dict[str, tuple[int, list[str]]] = {}
            sealed: dict[str, list[tuple[int, str]]] = {}
            for node, chunk, total, text in conn.execute(
                    "SELECT node, chunk, total, ids FROM rm_adjacency_chunks WHERE graph = ? AND direction = ? "
                    f"AND edge_type = ? AND node IN ({marks})", params):
                if chunk == 0:
                    heads[node] = (total, text.split(ID_SEPARATOR))
                else:
                    sealed.setdefault(node, []).append((chunk, text))
            for node, (total, ids) in heads.items():
                for _, text in sorted(sealed.get(node, ()), reverse=True):  # newer sealed chunks first
                    if limit is not None and len(ids) >= limit:
                        break
                    ids += text.split(ID_SEPARATOR)
                out[AdjacencyKey(node, direction, edge_type)] = NeighbourIds(
                    ids if limit is None else ids[:limit], total)
    return out


def _edges_sync(conn: sqlite3.Connection, graph: str,
                triples: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], EdgeView]:
    out: dict[tuple[str, str, str], EdgeView] = {}
    for part in _chunks(list(dict.fromkeys(triples)), 300):
        values = ",".join("(?, ?, ?)" for _ in part)
        params: list[Any] = [graph]
        for triple in part:
            params += triple
        # ``IN (SELECT ... FROM (VALUES ...))``, not ``IN (VALUES ...)``: with the latter SQLite
        # walked the graph's whole adjacency (PRIMARY KEY (graph=?)) instead of seeking each edge
        for row in conn.execute(f"SELECT * FROM rm_adjacency WHERE graph = ? AND direction = 'OUT' AND "
                                "(node, edge_type, neighbour) IN "
                                f"(SELECT column1, column2, column3 FROM (VALUES {values}))", params):
            edge = _edge_from_row(graph, row)
            out[(edge.source, edge.type, edge.target)] = edge
    return out


# SQLite's default limit on the arms of one compound SELECT is 500.
_MAX_MERGED_TYPES = 400


def _adjacency_sql(graph: str, key: AdjacencyKey, *, limit: int, after: tuple[int, str, str] | None = None,
                   created_after_us: int | None = None, created_before_us: int | None = None,
                   edge_types: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """One adjacency list, newest first. Each list of one edge type is walked in the order of
    ``rm_adjacency_newest`` and SQLite stops after ``limit`` rows: the cost is bounded by the
    limit, never by the length of a supernode's list. A key without an edge type is the merge
    (``UNION ALL`` with the ORDER BY: SQLite merges the per-type index walks) of the lists of
    ``edge_types``, the types the node has in that direction (``_list_types``); no index of its
    own, so the projector maintains one index fewer per adjacency row."""
    arm = "SELECT * FROM rm_adjacency WHERE graph = ? AND node = ? AND direction = ?"
    common: list[Any] = []
    conditions = ""
    if created_after_us is not None:
        conditions += " AND create_us > ?"
        common.append(created_after_us)
    if created_before_us is not None:
        conditions += " AND create_us < ?"
        common.append(created_before_us)
    if after is not None:
        # the redundant ``create_us <= ?`` is a range the index can seek to; without it the
        # OR made every page re-read the list from its newest entry
        conditions += " AND create_us <= ? AND (create_us < ? OR (edge_type, neighbour) > (?, ?))"
        common += [after[0], after[0], after[1], after[2]]
    types: Sequence[str | None] = [key.edge_type] if key.edge_type is not None else edge_types
    if len(types) > _MAX_MERGED_TYPES:
        types = [None]  # too many arms for one statement: one walk of the whole node, sorted
    params: list[Any] = []
    arms = []
    for edge_type in types:
        params += [graph, key.node, key.direction.value]
        if edge_type is None:
            arms.append(arm + conditions)
        else:
            arms.append(arm + " AND edge_type = ?" + conditions)
            params.append(edge_type)
        params += common
    sql = " UNION ALL ".join(arms) + " ORDER BY create_us DESC, edge_type, neighbour LIMIT ?"
    params.append(limit)
    return sql, params


def _list_types(conn: sqlite3.Connection, graph: str, node: str, direction: Direction) -> list[str]:
    """The edge types of the node's non-empty lists in one direction (their id-chunk heads)."""
    return [r[0] for r in conn.execute("SELECT edge_type FROM rm_adjacency_chunks WHERE graph = ? AND node = ? "
                                       "AND direction = ? AND chunk = 0", (graph, node, direction.value))]


_BASIC_COLUMNS = "graph, id, type, '{}' AS properties, version, create_time, update_time, edge_counts"


def _node_from_row(row: sqlite3.Row) -> NodeView:
    text = row["properties"]
    return NodeView(graph=row["graph"], id=row["id"], type=row["type"],
                    properties={} if text == "{}" else properties_from_json(text), version=row["version"],
                    create_time=_ts(row["create_time"]), update_time=_ts(row["update_time"]),
                    edge_counts=unpack_counts(row["edge_counts"]))


class SqliteReadModel:
    """ReadModel port over a reader pool (or any object with ``async run(fn)``)."""

    def __init__(self, db: SqliteRunner) -> None:
        self._db = db
        self.round_trips = 0

    async def _run_point(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read of a handful of rows: on the loop's thread when the pool offers it."""
        self.round_trips += 1
        inline: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]] | None = getattr(
            self._db, "run_inline", None)  # SqliteReaderPool.run_inline
        return await (inline(fn) if inline is not None else self._db.run(fn))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.round_trips += 1
        return await self._db.run(fn)

    async def get_schema(self, graph: str) -> Schema | None:
        def q(c: sqlite3.Connection) -> Schema | None:
            row = c.execute("SELECT body FROM rm_schemas WHERE graph = ?", (graph,)).fetchone()
            return schema_from_dict(json.loads(row["body"])) if row else None
        return await self._run_point(q)

    async def get_nodes(self, graph: str, ids: Sequence[str], *, properties: bool = True) -> dict[str, NodeView]:
        if not ids:
            return {}
        run = self._run_point if len(ids) <= POINT_READ_MAX_KEYS else self._run
        return await run(lambda c: _nodes_sync(c, graph, ids, properties=properties))

    async def neighbour_ids(self, graph: str, keys: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
        if not keys:
            return {}
        return await self._run(lambda c: neighbour_ids_sync(c, graph, keys, limit))

    async def get_edges(self, graph: str,
                        triples: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], EdgeView]:
        if not triples:
            return {}
        return await self._run(lambda c: _edges_sync(c, graph, triples))

    async def get_edge(self, graph: str, source: str, edge_type: str, target: str) -> EdgeView | None:
        def q(c: sqlite3.Connection) -> EdgeView | None:
            row = c.execute("SELECT * FROM rm_adjacency WHERE graph = ? AND node = ? AND direction = 'OUT' "
                            "AND edge_type = ? AND neighbour = ?", (graph, source, edge_type, target)).fetchone()
            return _edge_from_row(graph, row) if row else None
        return await self._run_point(q)

    async def count_edges(self, graph: str, node: str, edge_type: str, direction: Direction) -> int:
        def q(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT edge_counts FROM rm_nodes WHERE graph = ? AND id = ? AND deleted = 0",
                            (graph, node)).fetchone()
            return unpack_counts(row[0]).get((edge_type, direction), 0) if row else 0
        return await self._run_point(q)

    async def list_adjacency(self, graph: str, key: AdjacencyKey, *, limit: int,
                             after: tuple[int, str, str] | None = None,
                             created_after_us: int | None = None,
                             created_before_us: int | None = None) -> list[tuple[tuple[int, str, str], EdgeView]]:
        def q(c: sqlite3.Connection) -> list[tuple[tuple[int, str, str], EdgeView]]:
            types = _list_types(c, graph, key.node, key.direction) if key.edge_type is None else ()
            if key.edge_type is None and not types:
                return []
            sql, params = _adjacency_sql(graph, key, limit=limit, after=after, created_after_us=created_after_us,
                                         created_before_us=created_before_us, edge_types=types)
            return [((int(r["create_us"]), r["edge_type"], r["neighbour"]), _edge_from_row(graph, r))
                    for r in c.execute(sql, params)]
        return await self._run(q)

    async def scan_nodes(self, graph: str, access: NodeAccess, *, after: tuple[Any, ...] | None,
                         limit: int) -> list[tuple[tuple[Any, ...], NodeView]]:
        kind = access.kind.value
        params: list[Any]
        if kind == "TYPE_SCAN":
            sql = "SELECT n.* FROM rm_nodes n WHERE n.graph = ? AND n.type = ? AND n.deleted = 0"
            params = [graph, access.node_type]
            if after is not None:
                sql += " AND n.id > ?"
                params.append(after[0])
            sql += " ORDER BY n.id LIMIT ?"
        else:
            sql = ("SELECT n.*, i.value AS index_value FROM rm_node_index i JOIN rm_nodes n "
                   "ON n.graph = i.graph AND n.id = i.node AND n.deleted = 0 "
                   "WHERE i.graph = ? AND i.type = ? AND i.property = ?")
            params = [graph, access.node_type, access.property]
            if kind in ("UNIQUE", "INDEX_EQ"):
                sql += " AND i.value = ?"
                params.append(access.value)
                if after is not None:
                    sql += " AND i.node > ?"
                    params.append(after[0])
                sql += " ORDER BY i.node LIMIT ?"
            else:
                if access.lower is not None:
                    sql += f" AND i.value {'>=' if access.lower_inclusive else '>'} ?"
                    params.append(access.lower)
                if access.upper is not None:
                    sql += f" AND i.value {'<=' if access.upper_inclusive else '<'} ?"
                    params.append(access.upper)
                if after is not None:
                    sql += f" AND (i.value, i.node) {'<' if access.descending else '>'} (?, ?)"
                    params += [after[0], after[1]]
                order = "DESC" if access.descending else "ASC"
                sql += f" ORDER BY i.value {order}, i.node {order} LIMIT ?"
        params.append(limit)
        range_scan = kind == "INDEX_RANGE"

        def q(c: sqlite3.Connection) -> list[tuple[tuple[Any, ...], NodeView]]:
            return [((r["index_value"], r["id"]) if range_scan else (r["id"],), _node_from_row(r))
                    for r in c.execute(sql, params)]
        return await self._run(q)


class SqliteProjectionTransaction:
    """``ProjectionTransaction`` primitives over an open sqlite3 transaction.

    Two things are batched for the whole transaction, because a batch of edge events
    otherwise spends most of its statements on them: node metadata is read once per node
    (and kept current by this object's own writes), and counter changes are summed in
    memory and written by ``flush`` just before the commit.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn
        self._meta: dict[tuple[str, str], _NodeMeta | None] = {}
        self._count_deltas: dict[tuple[str, str, str, str], int] = {}
        # (graph, node, direction, edge type) -> ordered (+1 add / -1 remove, neighbour) changes,
        # applied to the id chunks once per batch by ``flush``
        self._list_changes: dict[tuple[str, str, str, str], list[tuple[int, str]]] = {}
        # nodes this transaction created from nothing: they have no index entries to delete yet
        self._unindexed: set[tuple[str, str]] = set()

    def node_meta(self, graph: str, node_id: str) -> _NodeMeta | None:
        key = (graph, node_id)
        if key not in self._meta:
            row = self.c.execute("SELECT type, version, deleted, create_time FROM rm_nodes WHERE graph = ? AND id = ?",
                                 key).fetchone()
            self._meta[key] = None if row is None else _NodeMeta(row[0], int(row[1]), bool(row[2]), row[3])
        return self._meta[key]

    def prefetch_node_meta(self, graph: str, node_ids: Iterable[str]) -> None:
        """Read the metadata of many nodes set-based (one statement per 10,000)."""
        meta = self._meta
        wanted = [n for n in node_ids if (graph, n) not in meta]
        for part in _chunks(wanted, MAX_NODES_PER_ID_STATEMENT):
            for node_id in part:
                meta[(graph, node_id)] = None
            for node_id, type_, version, deleted, create_time in self.c.execute(
                    "SELECT id, type, version, deleted, create_time FROM rm_nodes WHERE graph = ? "
                    f"AND id IN ({','.join('?' * len(part))})", (graph, *part)):
                meta[(graph, node_id)] = _NodeMeta(type_, int(version), bool(deleted), create_time)

    def put_node(self, graph: str, node_id: str, node_type: str, properties: dict[str, PropertyValue],
                 version: int, create_time: datetime, update_time: datetime) -> None:
        self.c.execute(
            "INSERT INTO rm_nodes (graph, id, type, properties, version, create_time, update_time, deleted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (graph, id) DO UPDATE SET type = excluded.type, "
            "properties = excluded.properties, version = excluded.version, create_time = excluded.create_time, "
            "update_time = excluded.update_time, deleted = 0",
            (graph, node_id, node_type, properties_json(properties), version, create_time.isoformat(),
             update_time.isoformat()))
        key = (graph, node_id)
        if key in self._meta and self._meta[key] is None:  # known to have had no row at all
            self._unindexed.add(key)
        self._meta[key] = _NodeMeta(node_type, version, False, create_time)

    def tombstone_node(self, graph: str, node_id: str, version: int, update_time: datetime) -> None:
        cur = self.c.execute("UPDATE rm_nodes SET deleted = 1, properties = '{}', version = ?, update_time = ? "
                             "WHERE graph = ? AND id = ?", (version, update_time.isoformat(), graph, node_id))
        if cur.rowcount == 0:  # deleted before we ever saw it: still remember the version
            self.c.execute("INSERT INTO rm_nodes (graph, id, type, properties, version, create_time, update_time, "
                           "deleted) VALUES (?, ?, '', '{}', ?, ?, ?, 1)",
                           (graph, node_id, version, update_time.isoformat(), update_time.isoformat()))
        self._meta.pop((graph, node_id), None)  # read again if needed: the row decides type and create_time

    def replace_index_entries(self, graph: str, node_type: str, node_id: str, entries: dict[str, object]) -> None:
        key = (graph, node_id)
        if key in self._unindexed:  # a node new in this transaction: nothing to delete
            self._unindexed.discard(key)
        else:
            self.c.execute("DELETE FROM rm_node_index WHERE graph = ? AND node = ?", key)
        if entries:
            self.c.executemany("INSERT OR IGNORE INTO rm_node_index (graph, type, property, value, node) "
                               "VALUES (?, ?, ?, ?, ?)",
                               [(graph, node_type, prop, value, node_id) for prop, value in entries.items()])

    def nodes_of_type(self, graph: str, node_type: str) -> list[tuple[str, dict[str, PropertyValue]]]:
        return [(r["id"], properties_from_json(r["properties"])) for r in self.c.execute(
            "SELECT id, properties FROM rm_nodes WHERE graph = ? AND type = ? AND deleted = 0", (graph, node_type))]

    def add_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str,
                      properties: dict[str, PropertyValue], create_time: datetime) -> bool:
        cur = self.c.execute(
            "INSERT OR IGNORE INTO rm_adjacency (graph, node, direction, edge_type, neighbour, properties, create_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (graph, node, direction.value, edge_type, neighbour, "{}" if not properties else properties_json(properties),
             _us(create_time)))
        if cur.rowcount > 0:  # the row decides: a replayed add changes no chunk
            self._list_changes.setdefault((graph, node, direction.value, edge_type), []).append((1, neighbour))
            return True
        return False

    def apply_edges(self, changes: Sequence[Any]) -> set[tuple[str, str, str, str]]:
        """Set-based: which rows exist is one statement per ~1,000 rows, then one ``executemany``
        deletes and one inserts; counters and id lists move only for rows that changed."""
        if not changes:
            return set()
        rows: list[tuple[tuple[str, str, str, str, str], Any]] = []
        for ch in changes:
            rows.append(((ch.graph, ch.source, "OUT", ch.edge_type, ch.target), ch))
            rows.append(((ch.graph, ch.target, "IN", ch.edge_type, ch.source), ch))
        there = self._existing_rows([key for key, _ in rows])
        deletes = [key for key, ch in rows if key in there and (not ch.present or ch.replace)]
        inserts = [(key, ch) for key, ch in rows if ch.present and (ch.replace or key not in there)]
        list_changes, deltas = self._list_changes, self._count_deltas
        if deletes:
            self.c.executemany("DELETE FROM rm_adjacency WHERE graph = ? AND node = ? AND direction = ? "
                               "AND edge_type = ? AND neighbour = ?", deletes)
            for graph, node, direction, edge_type, neighbour in deletes:
                list_changes.setdefault((graph, node, direction, edge_type), []).append((-1, neighbour))
                count_key = (graph, node, edge_type, direction)
                deltas[count_key] = deltas.get(count_key, 0) - 1
        if inserts:
            encoded: dict[int, tuple[str, int]] = {}  # per change: its properties and time, encoded once
            params = []
            for key, ch in inserts:
                enc = encoded.get(id(ch))
                if enc is None:
                    props = ch.properties
                    enc = encoded[id(ch)] = ("{}" if not props else properties_json(props), _us(ch.create_time))
                params.append((*key, *enc))
                graph, node, direction, edge_type, neighbour = key
                list_changes.setdefault((graph, node, direction, edge_type), []).append((1, neighbour))
                count_key = (graph, node, edge_type, direction)
                deltas[count_key] = deltas.get(count_key, 0) + 1
            self.c.executemany("INSERT INTO rm_adjacency (graph, node, direction, edge_type, neighbour, properties, "
                               "create_us) VALUES (?, ?, ?, ?, ?, ?, ?)", params)
        return {(g, node, t, nb) for g, node, d, t, nb in there if d == "OUT"}

    def _existing_rows(self, keys: Sequence[tuple[str, str, str, str, str]]) -> set[tuple[str, str, str, str, str]]:
        """Which of these adjacency rows exist: primary-key seeks, ~1,000 rows per statement."""
        by_graph: dict[str, list[str]] = {}
        for graph, node, direction, edge_type, neighbour in keys:
            by_graph.setdefault(graph, []).extend((node, direction, edge_type, neighbour))
        found: set[tuple[str, str, str, str, str]] = set()
        step = 4 * _EXISTS_ROWS_PER_STATEMENT
        for graph, flat in by_graph.items():
            for i in range(0, len(flat), step):
                part = flat[i:i + step]
                values = ",".join(["(?,?,?,?)"] * (len(part) // 4))
                for row in self.c.execute(
                        "SELECT node, direction, edge_type, neighbour FROM rm_adjacency WHERE graph = ? AND "
                        "(node, direction, edge_type, neighbour) IN "
                        f"(SELECT column1, column2, column3, column4 FROM (VALUES {values}))", (graph, *part)):
                    found.add((graph, *row))
        return found

    def remove_adjacency(self, graph: str, node: str, direction: Direction, edge_type: str, neighbour: str) -> bool:
        cur = self.c.execute("DELETE FROM rm_adjacency WHERE graph = ? AND node = ? AND direction = ? "
                             "AND edge_type = ? AND neighbour = ?", (graph, node, direction.value, edge_type, neighbour))
        if cur.rowcount > 0:
            self._list_changes.setdefault((graph, node, direction.value, edge_type), []).append((-1, neighbour))
            return True
        return False

    def adjust_count(self, graph: str, node: str, edge_type: str, direction: Direction, delta: int) -> None:
        key = (graph, node, edge_type, direction.value)
        self._count_deltas[key] = self._count_deltas.get(key, 0) + delta

    def flush(self) -> None:
        """Write the summed counter changes and the changed id chunks (the store calls this
        before committing)."""
        changes, self._list_changes = self._list_changes, {}
        if changes:
            heads = _load_heads(self.c, list(changes))
            upserts: list[tuple[Any, ...]] = []
            emptied: list[tuple[str, str, str, str]] = []
            for key, ops in changes.items():
                total, text = heads.get(key, (0, ""))
                if text and all(sign > 0 for sign, _ in ops) and text.count(ID_SEPARATOR) + 1 + len(ops) <= HEAD_MAX:
                    # only appends that fit the head (most lists, every batch): prepend the new ids
                    # to the stored text (newest first) without splitting it
                    upserts.append((*key, 0, total + len(ops),
                                    ID_SEPARATOR.join([nb for _, nb in reversed(ops)] + [text])))
                    continue
                ids = text.split(ID_SEPARATOR)[::-1] if text else []
                _IdChunks(self.c, key, ids, total).apply(ops, upserts, emptied)
            self.c.executemany(_UPSERT_CHUNK, upserts)
            self.c.executemany("DELETE FROM rm_adjacency_chunks WHERE graph = ? AND node = ? AND direction = ? "
                               "AND edge_type = ?", emptied)
        per_node: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        for (graph, node, edge_type, direction), delta in self._count_deltas.items():
            if delta:
                per_node.setdefault((graph, node), {})[(edge_type, direction)] = delta
        self._count_deltas.clear()
        if not per_node:
            return
        current: dict[tuple[str, str], str] = {}
        by_graph: dict[str, list[str]] = {}
        for graph, node in per_node:
            by_graph.setdefault(graph, []).append(node)
        for graph, nodes in by_graph.items():  # the nodes' packed counts, read set-based
            for part in _chunks(nodes, MAX_NODES_PER_ID_STATEMENT):
                for node, text in self.c.execute(
                        f"SELECT id, edge_counts FROM rm_nodes WHERE graph = ? AND id IN ({','.join('?' * len(part))})",
                        (graph, *part)):
                    current[(graph, node)] = text
        updates = []
        for (graph, node), deltas in per_node.items():
            counts = {(t, d.value): c for (t, d), c in unpack_counts(current.get((graph, node), "")).items()}
            for count_key, delta in deltas.items():
                counts[count_key] = counts.get(count_key, 0) + delta
            updates.append((pack_counts(counts), graph, node))
        self.c.executemany("UPDATE rm_nodes SET edge_counts = ? WHERE graph = ? AND id = ?", updates)

    def adjacency_of(self, graph: str, node: str) -> list[tuple[Direction, str, str]]:
        return [(Direction(r["direction"]), r["edge_type"], r["neighbour"]) for r in self.c.execute(
            "SELECT direction, edge_type, neighbour FROM rm_adjacency WHERE graph = ? AND node = ?", (graph, node))]

    def drop_node_adjacency(self, graph: str, node: str) -> None:
        self.c.execute("DELETE FROM rm_adjacency WHERE graph = ? AND node = ?", (graph, node))
        self.c.execute("DELETE FROM rm_adjacency_chunks WHERE graph = ? AND node = ?", (graph, node))
        self.c.execute("UPDATE rm_nodes SET edge_counts = '' WHERE graph = ? AND id = ?", (graph, node))
        for key in [k for k in self._count_deltas if k[0] == graph and k[1] == node]:
            del self._count_deltas[key]  # the counters they would change are gone
        for key in [k for k in self._list_changes if k[0] == graph and k[1] == node]:
            del self._list_changes[key]  # and so are the lists

    def schema_dict(self, graph: str) -> dict[str, Any] | None:
        row = self.c.execute("SELECT body FROM rm_schemas WHERE graph = ?", (graph,)).fetchone()
        return json.loads(row["body"]) if row else None

    def put_schema(self, graph: str, version: int, body: dict[str, Any]) -> None:
        self.c.execute("INSERT INTO rm_schemas (graph, version, body) VALUES (?, ?, ?) ON CONFLICT (graph) DO UPDATE "
                       "SET version = excluded.version, body = excluded.body",
                       (graph, version, json.dumps(body, separators=(",", ":"), sort_keys=True)))


_UPSERT_CHUNK = ("INSERT INTO rm_adjacency_chunks (graph, node, direction, edge_type, chunk, total, ids) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (graph, node, direction, edge_type, chunk) "
                 "DO UPDATE SET total = excluded.total, ids = excluded.ids")


def _load_heads(conn: sqlite3.Connection, keys: Sequence[tuple[str, str, str, str]]
                ) -> dict[tuple[str, str, str, str], tuple[int, str]]:
    """The heads of many lists, one statement per (graph, direction, edge type): their total
    and stored ids text (newest first)."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for graph, node, direction, edge_type in keys:
        groups.setdefault((graph, direction, edge_type), []).append(node)
    out: dict[tuple[str, str, str, str], tuple[int, str]] = {}
    for (graph, direction, edge_type), nodes in groups.items():
        for part in _chunks(nodes, MAX_NODES_PER_ID_STATEMENT):
            for node, total, text in conn.execute(
                    "SELECT node, total, ids FROM rm_adjacency_chunks WHERE graph = ? AND direction = ? AND "
                    f"edge_type = ? AND chunk = 0 AND node IN ({','.join('?' * len(part))})",
                    (graph, direction, edge_type, *part)):
                out[(graph, node, direction, edge_type)] = (int(total), text)
    return out


class _IdChunks:
    """One adjacency id list during a projection flush: the head (newest ids) and, loaded only
    when needed, the sealed chunks. Ids are kept oldest first in memory (appends are O(1))
    and stored newest first (a read is one ``split``)."""

    def __init__(self, conn: sqlite3.Connection, key: tuple[str, str, str, str], head: list[str], total: int) -> None:
        self.c, self.key, self.head, self.total = conn, key, head, total
        self.sealed: dict[int, list[str]] | None = None  # chunk number -> ids oldest first
        self.changed_sealed: set[int] = set()

    def _load_sealed(self) -> dict[int, list[str]]:
        if self.sealed is None:
            self.sealed = {int(r[0]): r[1].split(ID_SEPARATOR)[::-1] for r in self.c.execute(
                "SELECT chunk, ids FROM rm_adjacency_chunks WHERE graph = ? AND node = ? AND direction = ? "
                "AND edge_type = ? AND chunk > 0", self.key)}
        return self.sealed

    def _remove(self, neighbour: str) -> None:
        try:
            self.head.remove(neighbour)
            return
        except ValueError:
            pass
        for number, ids in sorted(self._load_sealed().items(), reverse=True):
            if neighbour in ids:
                ids.remove(neighbour)
                self.changed_sealed.add(number)
                return
        raise AssertionError(f"adjacency chunks lost {neighbour!r} of {self.key}")

    def apply(self, ops: Sequence[tuple[int, str]], upserts: list[tuple[Any, ...]],
              emptied: list[tuple[str, str, str, str]]) -> None:
        """Apply the changes; the head's new row goes to ``upserts`` (or the key to ``emptied``)
        for the caller's multi-row statements; sealed chunks (long lists only) are written here."""
        for sign, neighbour in ops:
            if sign > 0:
                self.head.append(neighbour)
            else:
                self._remove(neighbour)
            self.total += sign
        if len(self.head) < HEAD_MIN and self.total > len(self.head):
            sealed = self._load_sealed()  # refill the head from the newest sealed chunks
            while len(self.head) < HEAD_MIN and any(sealed.values()):
                number = max(n for n, ids in sealed.items() if ids)
                self.head = sealed[number] + self.head
                sealed[number] = []
                self.changed_sealed.add(number)
        if len(self.head) > HEAD_MAX:  # seal the oldest part; the head keeps the newest HEAD_MIN
            sealed = self._load_sealed()
            number = max(sealed, default=0) + 1
            sealed[number], self.head = self.head[:-HEAD_MIN], self.head[-HEAD_MIN:]
            self.changed_sealed.add(number)
        key = self.key
        if not self.head:  # the list is empty (a non-empty list always has a non-empty head)
            emptied.append(key)
            return
        upserts.append((*key, 0, self.total, ID_SEPARATOR.join(reversed(self.head))))
        for number in sorted(self.changed_sealed):
            ids = (self.sealed or {}).get(number) or []
            if ids:
                self.c.execute(_UPSERT_CHUNK, (*key, number, len(ids), ID_SEPARATOR.join(reversed(ids))))
            else:
                self.c.execute("DELETE FROM rm_adjacency_chunks WHERE graph = ? AND node = ? AND direction = ? "
                               "AND edge_type = ? AND chunk = ?", (*key, number))


class _NodeMeta:
    __slots__ = ("type", "version", "deleted", "_create_time")

    def __init__(self, type_: str, version: int, deleted: bool, create_time: datetime | str) -> None:
        self.type, self.version, self.deleted, self._create_time = type_, version, deleted, create_time

    @property
    def create_time(self) -> datetime:  # parsed only when a node event needs it
        value = self._create_time
        if isinstance(value, str):
            value = self._create_time = _ts(value)
        return value


def relax_projection_durability(conn: sqlite3.Connection) -> None:
    """For the projector's own writer connection: ``synchronous = NORMAL`` (WAL), no fsync per
    commit. The read model is derived data and its checkpoint commits in the same transaction,
    so a power loss can only roll back the last batches together with their checkpoint; the
    projector applies them again from the event log, which the command side commits with FULL."""
    conn.execute("PRAGMA synchronous = NORMAL")


def _statements(script: str) -> list[str]:
    """A DDL script as single statements (``executescript`` would commit the transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return [s for s in statements if s.rstrip(";").strip()]


_READ_MODEL_STATEMENTS = _statements(READ_MODEL_DDL)


def prepare_read_model(conn: sqlite3.Connection) -> bool:
    """Create the read model's tables. A file whose read model has another layout (or none
    recorded: before ``rm_layout`` existed) loses its ``rm_*`` tables, checkpoints included,
    so the projector rebuilds them from the event log. True when it dropped something.

    One ``BEGIN IMMEDIATE`` transaction: query workers starting together on an old file
    prepare it one after the other, so exactly one drops and the others find the new layout."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        present = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                              "AND name LIKE 'rm\\_%' ESCAPE '\\'")]
        dropped = False
        current = False
        if "rm_layout" in present:
            row = conn.execute("SELECT version FROM rm_layout").fetchone()
            current = row is not None and int(row[0]) == READ_MODEL_LAYOUT
        if not current:
            for table in present:
                conn.execute(f"DROP TABLE {table}")
            dropped = bool(present)
        for statement in _READ_MODEL_STATEMENTS:
            conn.execute(statement)
        conn.execute("COMMIT")
        return dropped
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SqliteProjectionStore:
    """The projector's writer: applies a batch and moves the checkpoint in ONE transaction."""

    def __init__(self, db: SqliteRunner) -> None:
        self._db = db

    async def ensure_schema(self) -> None:
        await self._db.run(prepare_read_model)

    async def positions(self, projector: str) -> dict[str, int]:
        """SQLite has one log shard: the checkpoint row is the projector's position in it."""
        def q(c: sqlite3.Connection) -> dict[str, int]:
            row = c.execute("SELECT position FROM rm_checkpoints WHERE projector = ?", (projector,)).fetchone()
            return {SHARD: int(row["position"])} if row else {}
        return await self._db.run(q)

    async def apply(self, projector: str, shard: str, events: Sequence[LoggedEvent],
                    change: Callable[[Any, Sequence[LoggedEvent]], Any]) -> int:
        if shard != SHARD:
            raise Internal(f"SQLite has one log shard, {SHARD!r}; asked to apply {shard!r}")
        if not events:
            return (await self.positions(projector)).get(SHARD, 0)
        last = events[-1].position

        def txn(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT position FROM rm_checkpoints WHERE projector = ?", (projector,)).fetchone()
                current = int(row["position"]) if row else 0
                fresh = [e for e in events if e.position > current]
                if fresh:
                    tx = SqliteProjectionTransaction(c)
                    change(tx, fresh)
                    tx.flush()
                    c.execute("INSERT INTO rm_checkpoints (projector, position) VALUES (?, ?) ON CONFLICT (projector) "
                              "DO UPDATE SET position = excluded.position", (projector, last))
                c.execute("COMMIT")
                return max(current, last)
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return await self._db.run(txn)

    async def reset(self, projector: str, positions: Mapping[str, int] | None = None) -> None:
        position = (positions or {}).get(SHARD, 0)
        await self._db.run(lambda c: c.execute(
            "INSERT INTO rm_checkpoints (projector, position) VALUES (?, ?) ON CONFLICT (projector) "
            "DO UPDATE SET position = excluded.position", (projector, position)))