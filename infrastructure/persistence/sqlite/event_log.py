"""The event log (transactional outbox) in SQLite: one log ordered by an integer position.

The command side appends inside its write transaction (``append_events``); the query
side's projector and WatchEvents read it (``SqliteEventLog``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Iterable, Protocol

from domain.events import DomainEvent, event_from_dict, event_to_dict
from domain.ports import LoggedEvent

SHARD = "0"  # SQLite has a single, totally ordered log

EVENT_LOG_DDL = """
CREATE TABLE IF NOT EXISTS event_log (
    position          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          TEXT NOT NULL UNIQUE,
    graph             TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    aggregate_id      TEXT NOT NULL,
    aggregate_version INTEGER NOT NULL,
    occurred_at       TEXT NOT NULL,
    payload           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_log_graph ON event_log (graph, position);
"""


def append_events(conn: sqlite3.Connection, events: Iterable[DomainEvent]) -> int:
    """Append inside the caller's open transaction; return the last position written (0 if none)."""
    last = 0
    for event in events:
        cur = conn.execute(
            "INSERT INTO event_log (event_id, graph, event_type, aggregate_id, aggregate_version, occurred_at, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.event_id, event.graph, event.type, event.aggregate_id, event.aggregate_version,
             event.occurred_at.isoformat(), json.dumps(event_to_dict(event), separators=(",", ":"))),
        )
        last = int(cur.lastrowid or 0)
    return last


def _row_to_logged(row: sqlite3.Row) -> LoggedEvent:
    return LoggedEvent(position=int(row["position"]), event=event_from_dict(json.loads(row["payload"])), shard=SHARD)


def read_after_sync(conn: sqlite3.Connection, position: int, limit: int, graph: str | None = None) -> list[LoggedEvent]:
    if graph is None:
        rows = conn.execute("SELECT position, payload FROM event_log WHERE position > ? ORDER BY position LIMIT ?",
                            (position, limit)).fetchall()
    else:
        rows = conn.execute("SELECT position, payload FROM event_log WHERE graph = ? AND position > ? "
                            "ORDER BY position LIMIT ?", (graph, position, limit)).fetchall()
    return [_row_to_logged(r) for r in rows]


def head_sync(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(position) FROM event_log").fetchone()
    return int(row[0] or 0)


class _Runner(Protocol):
    async def run(self, fn): ...  # SqliteConnection or SqliteReaderPool


class SqliteEventLog:
    """EventLog port over any SQLite connection or reader pool."""

    def __init__(self, db: _Runner) -> None:
        self._db = db

    async def read_after(self, position: int, limit: int, *, graph: str | None = None) -> list[LoggedEvent]:
        return await self._db.run(lambda c: read_after_sync(c, position, limit, graph))

    async def head(self) -> int:
        return await self._db.run(head_sync)
