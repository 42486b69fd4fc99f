"""The event log (transactional outbox) in SQLite: one log ordered by an integer position.

The command side appends inside its write transaction (``append_events``, one
multi-row INSERT per batch of events); the query side's projector and WatchEvents read
it (``SqliteEventLog``).

The payload holds only what the columns do not (ADR 0006): the event id, graph,
type, aggregate id and version and the time live in their columns and are merged back
on read; fields at their default (no request id, no properties), an edge event's
source, type and target (its aggregate id spells them) and an EdgeAdded's create time
when it is the event's time are left out.
Rows written before that change carry the full event in the payload; both read back.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from functools import lru_cache
from datetime import datetime
from typing import Any, Iterable, Sequence

from domain.events import DomainEvent, EdgeAdded, EdgeRemoved, event_from_dict
from domain.ports import LoggedEvent
from domain.values import encode_properties
from infrastructure.persistence.sqlite.connection import SqliteRunner
from infrastructure.persistence.sqlite.statements import insert_rows

SHARD = "0"  # SQLite has a single, totally ordered log
EVENT_LOG_DDL = """
CREATE TABLE IF NOT EXISTS event_log (
    position          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          TEXT NOT NULL,  -- a UUID4; not indexed: nothing looks events up by id
    graph             TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    aggregate_id      TEXT NOT NULL,
    aggregate_version INTEGER NOT NULL,
    occurred_at       TEXT NOT NULL,
    payload           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_log_graph ON event_log (graph, position);
"""


# Stored in their own columns (with the type); the payload leaves them out.
_IN_COLUMNS = frozenset(("event_id", "graph", "aggregate_id", "aggregate_version", "occurred_at"))
# Left out at these values: event_from_dict restores the dataclass defaults.
_DEFAULTS: dict[str, Any] = {"request_id": "", "trace_context": "", "properties": {}, "changed": (),
                             "node_type": ""}
_NO_DEFAULT = object()
_EDGE_EVENTS = (EdgeAdded, EdgeRemoved)
_EDGE_KEY_FIELDS = ("source", "edge_type", "target")
_PAYLOAD_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}


@lru_cache(maxsize=64)
def _request_id_only(request_id: str) -> str:
    return json.dumps({"request_id": request_id}, separators=(",", ":")) if request_id else "{}"


def _payload(event: DomainEvent) -> str:
    """The JSON of ``event_to_dict(event)`` without the columns and the defaults."""
    cls = type(event)
    if (isinstance(event, EdgeAdded) and not event.properties and not event.trace_context
            and event.create_time == event.occurred_at
            and event.aggregate_id == f"{event.source}/{event.edge_type}/{event.target}"):
        # the common edge (what the loop below would produce, without walking the fields):
        # a whole batch shares one request id
        return _request_id_only(event.request_id)
    names = _PAYLOAD_FIELDS.get(cls)
    if names is None:
        names = _PAYLOAD_FIELDS[cls] = tuple((f.name, _DEFAULTS.get(f.name, _NO_DEFAULT)) for f in fields(cls)
                                             if f.name not in _IN_COLUMNS)
    body: dict[str, Any] = {}
    # an edge event's aggregate id is "source/type/target" (ids and names have no "/")
    keyed = isinstance(event, _EDGE_EVENTS) and event.aggregate_id == f"{event.source}/{event.edge_type}/{event.target}"
    for name, default in names:
        value = getattr(event, name)
        if value == default or (keyed and name in _EDGE_KEY_FIELDS):
            continue
        if name == "create_time" and value == event.occurred_at:
            continue  # an edge is created when its event occurs: read back from the column
        if name == "properties":
            value = encode_properties(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        body[name] = value
    return json.dumps(body, separators=(",", ":"))


def append_events(conn: sqlite3.Connection, events: Iterable[DomainEvent]) -> int:
    """Append inside the caller's open transaction (one multi-row INSERT); return the
    last position written (0 if none)."""
    rows = [(e.event_id, e.graph, e.type, e.aggregate_id, e.aggregate_version, e.occurred_at.isoformat(), _payload(e))
            for e in events]
    if not rows:
        return 0
    return insert_rows(conn, "INSERT INTO event_log (event_id, graph, event_type, aggregate_id, aggregate_version, "
                             "occurred_at, payload)", 7, rows)


def _row_to_logged(row: sqlite3.Row) -> LoggedEvent:
    payload = row["payload"]
    if payload == "{}" and row["event_type"] in _EDGE_EVENT_NAMES:  # most of a log: skip JSON and the generic path
        aggregate_id = row["aggregate_id"]
        key = aggregate_id.split("/")
        if len(key) == 3:
            at = datetime.fromisoformat(row["occurred_at"])
            common = dict(event_id=row["event_id"], graph=row["graph"], aggregate_id=aggregate_id,
                          aggregate_version=row["aggregate_version"], occurred_at=at, source=key[0],
                          edge_type=key[1], target=key[2])
            event: DomainEvent = (EdgeAdded(**common, create_time=at) if row["event_type"] == "EdgeAdded"
                                  else EdgeRemoved(**common))
            return LoggedEvent(position=int(row["position"]), event=event, shard=SHARD)
    data = json.loads(payload)
    if "type" not in data:  # a slim payload: the rest is in the columns
        data.update(type=row["event_type"], event_id=row["event_id"], graph=row["graph"],
                    aggregate_id=row["aggregate_id"], aggregate_version=row["aggregate_version"],
                    occurred_at=row["occurred_at"])
        if data["type"] in ("EdgeAdded", "EdgeRemoved") and "source" not in data:
            data["source"], data["edge_type"], data["target"] = data["aggregate_id"].split("/")
        if "create_time" not in data and data["type"] == "EdgeAdded":
            data["create_time"] = data["occurred_at"]
    return LoggedEvent(position=int(row["position"]), event=event_from_dict(data), shard=SHARD)


_EDGE_EVENT_NAMES = frozenset(("EdgeAdded", "EdgeRemoved"))

_READ_COLUMNS = "position, event_id, graph, event_type, aggregate_id, aggregate_version, occurred_at, payload"


def read_after_sync(conn: sqlite3.Connection, position: int, limit: int, graph: str | None = None) -> list[LoggedEvent]:
    if graph is None:
        rows = conn.execute(f"SELECT {_READ_COLUMNS} FROM event_log WHERE position > ? ORDER BY position LIMIT ?",
                            (position, limit)).fetchall()
    else:
        rows = conn.execute(f"SELECT {_READ_COLUMNS} FROM event_log WHERE graph = ? AND position > ? "
                            "ORDER BY position LIMIT ?", (graph, position, limit)).fetchall()
    return [_row_to_logged(r) for r in rows]


def head_sync(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(position) FROM event_log").fetchone()
    return int(row[0] or 0)


class SqliteEventLog:
    """EventLog port over any SQLite connection or reader pool: one shard, "0"."""

    def __init__(self, db: SqliteRunner) -> None:
        self._db = db

    def shard_of(self, graph: str) -> str:
        return SHARD

    async def shards(self) -> list[str]:
        return [SHARD]

    async def read_after(self, shard: str, position: int, limit: int, *,
                         graph: str | None = None) -> list[LoggedEvent]:
        if shard != SHARD:
            return []
        return await self._db.run(lambda c: read_after_sync(c, position, limit, graph))

    async def heads(self, shards: Sequence[str] | None = None) -> dict[str, int]:
        if shards is not None and SHARD not in shards:
            return {s: 0 for s in shards}
        head = await self._db.run(head_sync)
        return {SHARD: head} if shards is None else {s: head if s == SHARD else 0 for s in shards}
