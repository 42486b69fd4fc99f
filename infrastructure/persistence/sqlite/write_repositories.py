"""Repositories of the write model over the unit of work's open SQLite transaction.

Each public method hops to the connection's thread with one small synchronous
function. sqlite3 integrity errors are translated into domain errors right there,
at the adapter boundary; nothing from sqlite3 escapes.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

from domain.edge import Direction, Edge, edge_already_exists, edge_not_found
from domain.errors import FieldViolation, Internal, Reason, ValidationFailed, VersionConflict
from domain.node import Node, node_already_exists, node_not_found
from domain.ports import CascadeJob, IdempotencyRecord
from domain.rules import UniqueValueFree, check_rule
from domain.schema import Schema, schema_from_dict, schema_to_dict
from domain.values import (
    EdgeKey,
    PropertyValue,
    encode_value,
    epoch_micros,
    from_epoch_micros,
    properties_from_json,
    properties_json,
)

from infrastructure.persistence.tracking import NodeIdentityMap

if TYPE_CHECKING:
    from infrastructure.persistence.sqlite.write_store import SqliteUnitOfWork

def unique_value_key(value: PropertyValue) -> str:
    """The stored form of a unique value: JSON keeps kinds apart (1, "1", true, 1.0)."""
    return json.dumps(encode_value(value), separators=(",", ":"), sort_keys=True)


# --- schemas ------------------------------------------------------------------------

class SqliteSchemaRepository:
    def __init__(self, uow: "SqliteUnitOfWork") -> None:
        self._uow = uow
        self._seen: dict[str, Schema] = {}

    async def get(self, graph: str) -> Schema:
        if graph in self._seen:
            return self._seen[graph]

        def _get(c: sqlite3.Connection) -> Schema:
            row = c.execute("SELECT body FROM schemas WHERE graph = ? ORDER BY version DESC LIMIT 1",
                            (graph,)).fetchone()
            return schema_from_dict(json.loads(row["body"])) if row else Schema(graph)

        schema = await self._uow.run(_get)
        self._seen[graph] = schema
        self._uow.track(schema)
        return schema

    async def save(self, schema: Schema) -> None:
        body = json.dumps(schema_to_dict(schema), separators=(",", ":"))
        applied = epoch_micros(schema.update_time) if schema.update_time else 0

        def _save(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT MAX(version) FROM schemas WHERE graph = ?", (schema.graph,)).fetchone()
            current = int(row[0] or 0)
            if current != schema.version - 1:
                raise _schema_conflict(schema, current)
            try:
                c.execute("INSERT INTO schemas (graph, version, body, applied_at) VALUES (?, ?, ?, ?)",
                          (schema.graph, schema.version, body, applied))
            except sqlite3.IntegrityError:
                raise _schema_conflict(schema, current) from None

        await self._uow.run(_save)
        self._seen[schema.graph] = schema
        self._uow.track(schema)


def _schema_conflict(schema: Schema, current: int) -> VersionConflict:
    return VersionConflict(
        f"schema of graph {schema.graph!r} is at version {current}; cannot store version {schema.version}",
        reason=Reason.SCHEMA_VERSION_CONFLICT,
        metadata={"current_version": str(current), "expected_version": str(schema.version - 1)},
    )


# --- nodes --------------------------------------------------------------------------

_NODE_COLUMNS = "graph, id, type, properties, version, create_time, update_time, deleted"


def _row_to_node(row: sqlite3.Row) -> Node:
    return Node(graph=row["graph"], id=row["id"], type=row["type"],
                properties=properties_from_json(row["properties"]), version=int(row["version"]),
                create_time=from_epoch_micros(row["create_time"]), update_time=from_epoch_micros(row["update_time"]),
                deleted=bool(row["deleted"]))


class SqliteNodeRepository:
    """Keeps an identity map, so a unit of work sees one object per node and knows
    the version each node was loaded at (the condition of ``save``)."""

    def __init__(self, uow: "SqliteUnitOfWork") -> None:
        self._uow = uow
        self._identity = NodeIdentityMap(uow)

    async def get(self, graph: str, node_id: str) -> Node | None:
        known = self._identity.get(graph, node_id)
        if known is not None:
            return known
        row = await self._uow.run(lambda c: c.execute(
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE graph = ? AND id = ?", (graph, node_id)).fetchone())
        return self._identity.remember(_row_to_node(row)) if row else None

    async def get_many(self, graph: str, node_ids: Sequence[str]) -> dict[str, Node]:
        out: dict[str, Node] = {}
        missing = []
        for node_id in dict.fromkeys(node_ids):
            known = self._identity.get(graph, node_id)
            if known is not None:
                out[node_id] = known
            else:
                missing.append(node_id)
        if missing:
            marks = ",".join("?" * len(missing))
            rows = await self._uow.run(lambda c: c.execute(
                f"SELECT {_NODE_COLUMNS} FROM nodes WHERE graph = ? AND id IN ({marks})",
                (graph, *missing)).fetchall())
            for row in rows:
                node = self._identity.remember(_row_to_node(row))
                out[node.id] = node
        return out

    async def add(self, node: Node) -> None:
        params = (node.graph, node.id, node.type, properties_json(node.properties), node.version,
                  epoch_micros(node.create_time), epoch_micros(node.update_time), int(node.deleted))

        def _add(c: sqlite3.Connection) -> None:
            try:
                c.execute(f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", params)
            except sqlite3.IntegrityError:
                raise node_already_exists(node.ref) from None

        await self._uow.run(_add)
        self._identity.remember(node)

    async def save(self, node: Node) -> None:
        expected = self._identity.stored_version(node)
        params = (properties_json(node.properties), node.version, epoch_micros(node.update_time), int(node.deleted),
                  node.graph, node.id, expected)

        def _save(c: sqlite3.Connection) -> None:
            cur = c.execute("UPDATE nodes SET properties = ?, version = ?, update_time = ?, deleted = ? "
                            "WHERE graph = ? AND id = ? AND version = ?", params)
            if cur.rowcount != 1:
                row = c.execute("SELECT version FROM nodes WHERE graph = ? AND id = ?", (node.graph, node.id)).fetchone()
                if row is None:
                    raise node_not_found(node.ref)
                raise VersionConflict(
                    f"{node.name} changed concurrently (stored version {row[0]}, loaded {expected})",
                    reason=Reason.VERSION_CONFLICT,
                    metadata={"resource": node.name, "current_etag": f'"{row[0]}"', "request_etag": f'"{expected}"'})

        await self._uow.run(_save)
        self._identity.remember(node)

    async def count_of_type(self, graph: str, node_type: str) -> int:
        row = await self._uow.run(lambda c: c.execute(
            "SELECT COUNT(*) FROM nodes WHERE graph = ? AND type = ? AND deleted = 0", (graph, node_type)).fetchone())
        return int(row[0])

    async def unique_holder(self, graph: str, node_type: str, property_name: str,
                            value: PropertyValue) -> str | None:
        key = unique_value_key(value)
        row = await self._uow.run(lambda c: c.execute(
            "SELECT node_id FROM unique_claims WHERE graph = ? AND node_type = ? AND property = ? AND value = ?",
            (graph, node_type, property_name, key)).fetchone())
        return row[0] if row else None

    async def claim_unique(self, graph: str, node_type: str, property_name: str,
                           value: PropertyValue, node_id: str) -> None:
        key = unique_value_key(value)

        def _claim(c: sqlite3.Connection) -> None:
            cur = c.execute("INSERT INTO unique_claims (graph, node_type, property, value, node_id) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (graph, node_type, property, value) DO NOTHING",
                            (graph, node_type, property_name, key, node_id))
            if cur.rowcount == 0:  # already claimed: fine only by this very node
                holder = c.execute("SELECT node_id FROM unique_claims WHERE graph = ? AND node_type = ? "
                                   "AND property = ? AND value = ?",
                                   (graph, node_type, property_name, key)).fetchone()[0]
                check_rule(UniqueValueFree(node_type, property_name, value, holder, node_id))

        await self._uow.run(_claim)

    async def release_unique(self, graph: str, node_type: str, property_name: str,
                             value: PropertyValue, node_id: str) -> None:
        key = unique_value_key(value)
        await self._uow.run(lambda c: c.execute(
            "DELETE FROM unique_claims WHERE graph = ? AND node_type = ? AND property = ? AND value = ? AND node_id = ?",
            (graph, node_type, property_name, key, node_id)))


# --- edges --------------------------------------------------------------------------

_EDGE_COLUMNS = "graph, source, type, target, properties, create_time"


def _row_to_edge(row: sqlite3.Row) -> Edge:
    return Edge(graph=row["graph"], source=row["source"], type=row["type"], target=row["target"],
                properties=properties_from_json(row["properties"]), create_time=from_epoch_micros(row["create_time"]))


def _bump(c: sqlite3.Connection, key: tuple[str, str, str, str], delta: int) -> None:
    """Move the (graph, node, type, direction) counter by ``delta``; a counter at zero is deleted."""
    if delta > 0:
        c.execute("INSERT INTO edge_counters (graph, node, type, direction, count) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT (graph, node, type, direction) DO UPDATE SET count = count + excluded.count",
                  (*key, delta))
        return
    # the CHECK (count >= 0) constraint refuses a counter that would go negative
    cur = c.execute("UPDATE edge_counters SET count = count + ? WHERE graph = ? AND node = ? AND type = ? "
                    "AND direction = ?", (delta, *key))
    if cur.rowcount != 1:
        raise Internal(f"edge counter {key} is missing")
    c.execute("DELETE FROM edge_counters WHERE graph = ? AND node = ? AND type = ? AND direction = ? AND count = 0",
              key)


def _counters_of(edge: Edge) -> tuple[tuple[str, str, str, str], ...]:
    """The two counters an edge counts in: its source's OUT and its target's IN."""
    return ((edge.graph, edge.source, edge.type, "OUT"), (edge.graph, edge.target, edge.type, "IN"))


class SqliteEdgeRepository:
    def __init__(self, uow: "SqliteUnitOfWork") -> None:
        self._uow = uow

    async def get(self, key: EdgeKey) -> Edge | None:
        row = await self._uow.run(lambda c: c.execute(
            f"SELECT {_EDGE_COLUMNS} FROM edges WHERE graph = ? AND source = ? AND type = ? AND target = ?",
            (key.graph, key.source, key.type, key.target)).fetchone())
        if row is None:
            return None
        edge = _row_to_edge(row)
        self._uow.track(edge)
        return edge

    async def add(self, edge: Edge) -> None:
        params = (edge.graph, edge.source, edge.type, edge.target, properties_json(edge.properties),
                  epoch_micros(edge.create_time))

        def _add(c: sqlite3.Connection) -> None:
            try:
                c.execute(f"INSERT INTO edges ({_EDGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", params)
            except sqlite3.IntegrityError:
                raise edge_already_exists(edge.key) from None
            for counter in _counters_of(edge):
                _bump(c, counter, 1)

        await self._uow.run(_add)
        self._uow.track(edge)

    async def remove_many(self, edges: Sequence[Edge]) -> None:
        def _remove(c: sqlite3.Connection) -> None:
            deltas: Counter[tuple[str, str, str, str]] = Counter()
            try:
                for edge in edges:
                    cur = c.execute("DELETE FROM edges WHERE graph = ? AND source = ? AND type = ? AND target = ?",
                                    (edge.graph, edge.source, edge.type, edge.target))
                    if cur.rowcount != 1:
                        raise edge_not_found(edge.key)
                    deltas.update(_counters_of(edge))
            finally:
                # One update per counter however many edges share it (a deleted node's
                # own counters above all); on NotFound, still for the edges already gone.
                for counter, removed in deltas.items():
                    _bump(c, counter, -removed)

        if not edges:
            return
        await self._uow.run(_remove)
        for edge in edges:
            self._uow.track(edge)

    async def count(self, graph: str, node_id: str, edge_type: str, direction: Direction) -> int:
        directions = ("OUT", "IN") if direction is Direction.BOTH else (direction.value,)
        row = await self._uow.run(lambda c: c.execute(
            "SELECT COALESCE(SUM(count), 0) FROM edge_counters WHERE graph = ? AND node = ? AND type = ? "
            f"AND direction IN ({','.join('?' * len(directions))})",
            (graph, node_id, edge_type, *directions)).fetchone())
        return int(row[0])

    async def counts_for_node(self, graph: str, node_id: str) -> dict[tuple[str, Direction], int]:
        rows = await self._uow.run(lambda c: c.execute(
            "SELECT type, direction, count FROM edge_counters WHERE graph = ? AND node = ? AND count > 0",
            (graph, node_id)).fetchall())
        return {(r["type"], Direction(r["direction"])): int(r["count"]) for r in rows}

    async def list_for_node(self, graph: str, node_id: str, direction: Direction,
                            edge_type: str | None = None, limit: int = 1000) -> list[Edge]:
        def _list(c: sqlite3.Connection) -> list[Edge]:
            out: list[Edge] = []
            sides = [("source", Direction.OUT), ("target", Direction.IN)]
            for column, side in sides:
                if direction not in (side, Direction.BOTH) or len(out) >= limit:
                    continue
                sql = f"SELECT {_EDGE_COLUMNS} FROM edges WHERE graph = ? AND {column} = ?"
                args: list[Any] = [graph, node_id]
                if edge_type is not None:
                    sql += " AND type = ?"
                    args.append(edge_type)
                sql += " ORDER BY create_time DESC, source, type, target LIMIT ?"
                args.append(limit - len(out))
                out.extend(_row_to_edge(r) for r in c.execute(sql, args).fetchall())
            return out

        edges = await self._uow.run(_list)
        for edge in edges:
            self._uow.track(edge)
        return edges

    async def reaches(self, graph: str, edge_type: str, from_id: str, to_id: str) -> bool:
        # UNION (not UNION ALL) de-duplicates, so the walk terminates on any graph.
        sql = ("WITH RECURSIVE walk(node) AS (SELECT ? UNION "
               "SELECT e.target FROM edges e JOIN walk w ON e.graph = ? AND e.type = ? AND e.source = w.node) "
               "SELECT 1 FROM walk WHERE node = ? LIMIT 1")
        row = await self._uow.run(lambda c: c.execute(sql, (from_id, graph, edge_type, to_id)).fetchone())
        return row is not None

    async def count_of_type(self, graph: str, edge_type: str) -> int:
        row = await self._uow.run(lambda c: c.execute(
            "SELECT COALESCE(SUM(count), 0) FROM edge_counters WHERE graph = ? AND type = ? AND direction = 'OUT'",
            (graph, edge_type)).fetchone())
        return int(row[0])


# --- idempotency & cascade jobs -------------------------------------------------------

class SqliteIdempotencyStore:
    def __init__(self, uow: "SqliteUnitOfWork") -> None:
        self._uow = uow

    async def get(self, graph: str, request_id: str) -> IdempotencyRecord | None:
        row = await self._uow.run(lambda c: c.execute(
            "SELECT graph, request_id, operation, fingerprint, response, created_at FROM idempotency "
            "WHERE graph = ? AND request_id = ?", (graph, request_id)).fetchone())
        if row is None:
            return None
        return IdempotencyRecord(graph=row["graph"], request_id=row["request_id"], operation=row["operation"],
                                 fingerprint=row["fingerprint"], response=bytes(row["response"]),
                                 created_at=from_epoch_micros(row["created_at"]))

    async def put(self, record: IdempotencyRecord) -> None:
        def _put(c: sqlite3.Connection) -> None:
            try:
                c.execute("INSERT INTO idempotency (graph, request_id, operation, fingerprint, response, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?)",
                          (record.graph, record.request_id, record.operation, record.fingerprint,
                           sqlite3.Binary(record.response), epoch_micros(record.created_at)))
            except sqlite3.IntegrityError:
                raise ValidationFailed(
                    f"request id {record.request_id!r} was already used", reason=Reason.REQUEST_ID_REUSED,
                    violations=[FieldViolation("request_id", "already used for another request")]) from None

        await self._uow.run(_put)


class SqliteCascadeJobQueue:
    def __init__(self, uow: "SqliteUnitOfWork") -> None:
        self._uow = uow

    async def enqueue(self, job: CascadeJob) -> None:
        await self._uow.run(lambda c: c.execute(
            "INSERT OR IGNORE INTO cascade_jobs (graph, node_id, request_id, trace_context, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (job.graph, job.node_id, job.request_id, job.trace_context, epoch_micros(job.created_at))))

    async def next(self) -> CascadeJob | None:
        row = await self._uow.run(lambda c: c.execute(
            "SELECT graph, node_id, request_id, trace_context, created_at FROM cascade_jobs "
            "ORDER BY created_at, rowid LIMIT 1").fetchone())
        if row is None:
            return None
        return CascadeJob(graph=row["graph"], node_id=row["node_id"], request_id=row["request_id"],
                          trace_context=row["trace_context"], created_at=from_epoch_micros(row["created_at"]))

    async def complete(self, graph: str, node_id: str) -> None:
        await self._uow.run(lambda c: c.execute(
            "DELETE FROM cascade_jobs WHERE graph = ? AND node_id = ?", (graph, node_id)))


__all__ = [
    "SqliteSchemaRepository", "SqliteNodeRepository", "SqliteEdgeRepository", "SqliteIdempotencyStore",
    "SqliteCascadeJobQueue", "unique_value_key",
]
