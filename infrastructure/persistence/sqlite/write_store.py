"""The command side's SQLite store: one writer connection, one transaction at a time.

``SqliteUnitOfWork.__aenter__`` takes the store's asyncio lock and runs
``BEGIN IMMEDIATE``; every repository call runs inside that transaction, so the
invariants handlers check there (counters, claims, reachability, endpoints) are
race free. ``commit`` appends the events every aggregate recorded (the outbox)
and COMMITs state, events and the idempotency record together.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from types import TracebackType
from typing import Any, Callable, TypeVar

from domain.errors import Internal
from domain.ports import CommitResult
from domain.values import epoch_micros
from infrastructure.persistence.sqlite.connection import SqliteConnection
from infrastructure.persistence.sqlite.event_log import SHARD, SqliteEventLog, append_events, head_sync
from infrastructure.persistence.sqlite.write_repositories import (
    SqliteCascadeJobQueue,
    SqliteEdgeRepository,
    SqliteIdempotencyStore,
    SqliteNodeRepository,
    SqliteSchemaRepository,
)
from infrastructure.persistence.sqlite.write_schema import DDL
from infrastructure.persistence.tracking import AggregateTracker

T = TypeVar("T")


class SqliteWriteStore:
    """Owns the writer connection and the lock that serialises write transactions."""

    def __init__(self, connection: SqliteConnection) -> None:
        self._db = connection
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> "SqliteWriteStore":
        connection = await SqliteConnection(path, name="sqlite-writer").open()
        try:
            await connection.execute_script(DDL)
        except BaseException:
            await connection.close()
            raise
        return cls(connection)

    def unit_of_work(self) -> "SqliteUnitOfWork":
        return SqliteUnitOfWork(self)

    def event_log(self) -> SqliteEventLog:
        """The log read through the writer connection (tests, tools); the query side
        reads it through its own connections."""
        return SqliteEventLog(self._db)

    async def head(self) -> int:
        async with self._lock:
            return await self._db.run(head_sync)

    async def purge_idempotency(self, older_than: datetime) -> int:
        """Delete idempotency records created before ``older_than``; returns how many."""
        cutoff = epoch_micros(older_than)

        def _purge(c: sqlite3.Connection) -> int:
            return c.execute("DELETE FROM idempotency WHERE created_at < ?", (cutoff,)).rowcount

        async with self._lock:
            return await self._db.run(_purge)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()


def _begin(c: sqlite3.Connection) -> None:
    if c.in_transaction:  # a rollback lost to cancellation: never build on it
        c.execute("ROLLBACK")
    c.execute("BEGIN IMMEDIATE")


def _rollback(c: sqlite3.Connection) -> None:
    if c.in_transaction:
        c.execute("ROLLBACK")


class SqliteUnitOfWork:
    def __init__(self, store: SqliteWriteStore) -> None:
        self._store = store
        self._active = False
        self._used = False
        self._committed = False
        self._aggregates = AggregateTracker()
        self._last_position = 0
        self.schemas = SqliteSchemaRepository(self)
        self.nodes = SqliteNodeRepository(self)
        self.edges = SqliteEdgeRepository(self)
        self.idempotency = SqliteIdempotencyStore(self)
        self.cascades = SqliteCascadeJobQueue(self)

    # --- used by the repositories ----------------------------------------------------
    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._active:
            raise Internal("the unit of work is not open (use `async with uow:`)")
        return await self._store._db.run(fn)

    def track(self, aggregate: Any) -> None:
        """Remember an aggregate and take the events it recorded so far, in order."""
        self._aggregates.track(aggregate)

    # --- UnitOfWork -------------------------------------------------------------------
    async def __aenter__(self) -> "SqliteUnitOfWork":
        if self._used:  # committed or rolled back: its tracker and positions belong to that transaction
            raise Internal("a unit of work is used once")
        self._used = True
        await self._store._lock.acquire()
        try:
            await self._store._db.run(_begin)
        except BaseException:
            self._store._lock.release()
            raise
        self._active = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                await asyncio.shield(self.rollback())
        finally:
            self._active = False
            self._store._lock.release()

    async def flush(self) -> CommitResult:
        events = self._aggregates.take_events()
        if events:
            self._last_position = await self.run(lambda c: append_events(c, events))
        if not self._last_position:
            return CommitResult(positions={SHARD: await self.run(head_sync)})
        return CommitResult(positions={SHARD: self._last_position})

    async def commit(self) -> CommitResult:
        result = await self.flush()
        await self.run(lambda c: c.execute("COMMIT"))
        self._committed = True
        return result

    async def rollback(self) -> None:
        if self._active and not self._committed:
            self._aggregates.discard()
            await self._store._db.run(_rollback)
