"""The command side's SQLite store: one writer connection, one transaction at a time.

``SqliteUnitOfWork`` takes the store's asyncio lock on entry and runs
``BEGIN IMMEDIATE`` with its first statement; every repository call runs inside that
transaction, so the invariants handlers check there (counters, claims, reachability,
endpoints) are race free. Repositories buffer their changes (write-behind, ADR 0006);
``commit`` writes them, appends the events every aggregate recorded (the outbox) and
COMMITs state, events and the idempotency record together, in one thread hop.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import datetime
from types import TracebackType
from typing import Any, Callable, Iterable, TypeVar

from domain.errors import Internal
from domain.ports import CommitResult, Prefetch
from domain.values import epoch_micros
from infrastructure.persistence.sqlite.connection import SqliteConnection
from infrastructure.persistence.sqlite.event_log import SHARD, SqliteEventLog, append_events, head_sync
from infrastructure.persistence.sqlite.write_repositories import (
    Loader,
    SqliteCascadeJobQueue,
    SqliteEdgeRepository,
    SqliteIdempotencyStore,
    SqliteNodeRepository,
    SqliteSchemaRepository,
    Write,
)
from infrastructure.persistence.sqlite.write_schema import DDL
from infrastructure.persistence.tracking import AggregateTracker

T = TypeVar("T")


class NodeCache:
    """The committed nodes of the write model by (graph, id), process-wide (ADR 0006).

    Only this process writes the write model (ADR 0003), so a node row changes only
    through a unit of work of this store: each one offers what it read and wrote once
    its transaction has committed, and what it holds is never read or decoded again.
    Bounded: past ``capacity`` the oldest entries are dropped (a miss reads the row)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._nodes: dict[tuple[str, str], tuple] = {}

    def get(self, key: tuple[str, str]) -> tuple | None:
        return self._nodes.get(key)

    def __len__(self) -> int:
        return len(self._nodes)

    def committed(self, snapshots: dict[tuple[str, str], tuple]) -> None:
        nodes = self._nodes
        nodes.update(snapshots)
        excess = len(nodes) - self.capacity
        if excess > 0:
            for key in list(itertools.islice(nodes, excess)):
                del nodes[key]

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        for key in keys:
            self._nodes.pop(key, None)

    def clear(self) -> None:
        self._nodes.clear()


class SqliteWriteStore:
    """Owns the writer connection and the lock that serialises write transactions."""

    def __init__(self, connection: SqliteConnection, node_cache_capacity: int = 200_000) -> None:
        self._db = connection
        self._lock = asyncio.Lock()
        self.node_cache = NodeCache(node_cache_capacity)

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

    @property
    def round_trips(self) -> int:
        """Thread hops to the writer connection so far (diagnostics and tests)."""
        return self._db.round_trips

    async def trace_statements(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback(sql)`` for every statement the writer runs; None stops it.
        For tests and diagnostics: it costs a Python call per statement."""
        await self._db.run(lambda c: c.set_trace_callback(callback))

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
    """One write transaction. ``BEGIN IMMEDIATE`` rides on the first statement's thread
    hop (the store's asyncio lock is taken on entry); buffered changes, the events and
    ``COMMIT`` share the last hop. A BatchWrite of 100 edges costs a handful of hops and
    statements whatever its size (ADR 0006)."""

    def __init__(self, store: SqliteWriteStore) -> None:
        self._store = store
        self._active = False
        self._used = False
        self._begun = False
        self._committed = False
        self._committing = False
        self._aggregates = AggregateTracker()
        self._last_position = 0
        self.node_cache = store.node_cache
        self.schemas = SqliteSchemaRepository(self)
        self.nodes = SqliteNodeRepository(self)
        self.edges = SqliteEdgeRepository(self)
        self.idempotency = SqliteIdempotencyStore(self)
        self.cascades = SqliteCascadeJobQueue(self)

    # --- used by the repositories ----------------------------------------------------
    def ensure_open(self) -> None:
        if not self._active:
            raise Internal("the unit of work is not open (use `async with uow:`)")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread inside this transaction (one hop)."""
        self.ensure_open()
        if self._begun:
            return await self._store._db.run(fn)
        self._begun = True  # before the hop: a cancelled BEGIN must still be rolled back

        def _first(c: sqlite3.Connection) -> T:
            _begin(c)
            return fn(c)

        return await self._store._db.run(_first)

    async def run_flushed(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Write every buffered change, then run ``fn`` (a query that must see them), in one hop."""
        writes = self._drain()
        if not writes:
            return await self.run(fn)

        def _flushed(c: sqlite3.Connection) -> T:
            for write in writes:
                write(c)
            return fn(c)

        return await self.run(_flushed)

    async def load(self, *loaders: Loader) -> None:
        """Run the loaders' reads in one hop, then let each apply what it read."""
        results = await self.run(lambda c: [load(c) for load, _ in loaders])
        for (_, apply), rows in zip(loaders, results):
            apply(rows)

    def track(self, aggregate: Any) -> None:
        """Remember an aggregate and take the events it recorded so far, in order."""
        self._aggregates.track(aggregate)

    def _drain(self) -> list[Write]:
        drained = (self.nodes.drain(), self.edges.drain(), self.idempotency.drain())
        return [w for w in drained if w is not None]

    # --- WriteUnitOfWork ------------------------------------------------------------------
    async def prefetch(self, plan: Prefetch) -> None:
        """Load everything ``plan`` names that this unit of work has not seen, in one hop:
        one set-based statement per table (nodes, edges, counters, unique claims)."""
        loaders = [*self.nodes.prefetcher(plan), *self.edges.prefetcher(plan)]
        if loaders:
            await self.load(*loaders)

    async def __aenter__(self) -> "SqliteUnitOfWork":
        if self._used:  # committed or rolled back: its tracker and positions belong to that transaction
            raise Internal("a unit of work is used once")
        self._used = True
        await self._store._lock.acquire()
        self._active = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                if self._committing:
                    # a COMMIT cancelled or failed mid-hop may still have happened: what this
                    # unit of work wrote must not be served from the cache in its old form
                    self.node_cache.forget(self.nodes.learned())
                await asyncio.shield(self.rollback())
        finally:
            self._active = False
            self._store._lock.release()

    async def _write(self, *, commit: bool) -> CommitResult:
        writes = self._drain()
        events = self._aggregates.take_events()
        known = self._last_position

        def _apply(c: sqlite3.Connection) -> tuple[int, int]:
            for write in writes:
                write(c)
            last = append_events(c, events) if events else 0
            position = last or known or head_sync(c)
            if commit:
                c.execute("COMMIT")
            return position, last

        position, last = await self.run(_apply)
        if last:
            self._last_position = last
        return CommitResult(positions={SHARD: position})

    async def flush(self) -> CommitResult:
        return await self._write(commit=False)

    async def commit(self) -> CommitResult:
        self._committing = True
        result = await self._write(commit=True)
        self._committed = True
        self.node_cache.committed(self.nodes.learned())
        return result

    async def rollback(self) -> None:
        if self._active and not self._committed:
            self._aggregates.discard()
            self._drain()
            if self._begun:
                await self._store._db.run(_rollback)
