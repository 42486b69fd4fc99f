"""The command side's SQLite store: one writer connection, one unit of work at a time.

``SqliteUnitOfWork`` takes the store's asyncio lock on entry and runs
``BEGIN IMMEDIATE`` with its first statement; every repository call runs inside that
transaction, so the invariants handlers check there (counters, claims, reachability,
endpoints) are race free. Repositories buffer their changes (write-behind, ADR 0006);
``commit`` writes them, appends the events every aggregate recorded (the outbox) and
COMMITs state, events and the idempotency record together, in one thread hop.

Group commit (ADR 0006): when other units of work are already waiting for the lock,
a committing one does not COMMIT. It releases the lock with its transaction still
open and waits; the next one runs inside the same transaction as a SAVEPOINT (a
failure rolls back to it, and only its own changes go), and the last of the group
COMMITs for all of them: one fsync. Nobody's commit returns before that COMMIT has
succeeded; if it fails, every member of the group fails and nothing is written.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import datetime
from types import TracebackType
from typing import Any, Callable, Iterable, TypeVar

from domain.errors import DomainError, Internal, Reason, Unavailable
from domain.node import Node
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
    insert_idempotency,
)
from infrastructure.persistence.sqlite.write_schema import DDL
from infrastructure.persistence.tracking import AggregateTracker

T = TypeVar("T")


class NodeCache:
    """The committed nodes of the write model by (graph, id), process-wide (ADR 0006).

    Only this process writes the write model (ADR 0003), so a node row changes only
    through a unit of work of this store: each one offers what it read and wrote when
    its changes are part of the transaction (``stage``), and they become visible to
    every later transaction once it has committed (``commit_staged``); a rolled-back
    group teaches it nothing (``drop_staged``). Units of work of an open group see
    what the earlier members staged. Bounded: past ``capacity`` the oldest entries are
    dropped (a miss reads the row)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._nodes: dict[tuple[str, str], Node] = {}  # never changed in place: replaced
        self._staged: dict[tuple[str, str], Node] = {}

    def get(self, key: tuple[str, str]) -> Node | None:
        if self._staged:
            snap = self._staged.get(key)
            if snap is not None:
                return snap
        return self._nodes.get(key)

    def __len__(self) -> int:
        return len(self._nodes)

    def stage(self, snapshots: dict[tuple[str, str], Node]) -> None:
        self._staged.update(snapshots)

    def commit_staged(self) -> None:
        nodes = self._nodes
        nodes.update(self._staged)
        self._staged = {}
        excess = len(nodes) - self.capacity
        if excess > 0:
            for key in list(itertools.islice(nodes, excess)):
                del nodes[key]

    def drop_staged(self) -> None:
        """The group's transaction did not commit, or may not have: forget what it
        staged, from the committed entries too (a COMMIT that failed mid-way)."""
        self.forget(self._staged)
        self._staged = {}

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        for key in list(keys):
            self._nodes.pop(key, None)

    def clear(self) -> None:
        self._nodes.clear()
        self._staged = {}


_SAVEPOINT = "uow"


class _Group:
    """The open write transaction and the units of work whose changes it holds,
    waiting for its COMMIT."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[None]] = []
        self.closer: asyncio.Task[None] | None = None
        self.size = 0  # units of work that wrote into it and released their savepoint

    def settle(self, error: BaseException | None) -> None:
        for future in self.waiting:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        self.waiting = []


class SqliteWriteStore:
    """Owns the writer connection, the lock that serialises units of work and the open
    group transaction (see the module docstring)."""

    max_edges_per_transaction = 100  # the domain's own bound (MAX_EDGES_PER_TRANSACTION)

    def __init__(self, connection: SqliteConnection, node_cache_capacity: int = 200_000) -> None:
        self._db = connection
        self._lock = asyncio.Lock()
        self.node_cache = NodeCache(node_cache_capacity)
        self._group: _Group | None = None
        self._waiting = 0  # units of work waiting for the lock
        self.groups_committed = 0  # COMMITs that acknowledged more than one unit of work (diagnostics, tests)

    @classmethod
    async def open(cls, path: str) -> "SqliteWriteStore":
        connection = await SqliteConnection(path, name="sqlite-writer").open()
        try:
            await connection.run(_tune_writer)
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

    # --- the lock and the group transaction ---------------------------------------------
    async def _acquire_for_unit_of_work(self) -> None:
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1

    def _others_waiting(self) -> bool:
        return self._waiting > 0

    async def _exclusive(self) -> None:
        """Take the lock for something that is not a unit of work: COMMIT an open group first."""
        await self._lock.acquire()
        try:
            await self._commit_group()
        except BaseException:
            self._lock.release()
            raise

    async def _commit_group(self) -> None:
        """COMMIT the open group, if any (the lock is held): one hop, then acknowledge all."""
        group = self._group
        if group is None:
            return
        try:
            await asyncio.shield(self._db.run(_commit))
        except BaseException as exc:
            await self._fail_group(exc)
            raise
        self._group_committed(group)

    def _group_committed(self, group: _Group) -> None:
        self._group = None
        self.node_cache.commit_staged()
        if group.size > 1:
            self.groups_committed += 1
        group.settle(None)

    async def _fail_group(self, exc: BaseException) -> None:
        """The open transaction cannot commit: roll it back; its waiting members fail."""
        group, self._group = self._group, None
        self.node_cache.drop_staged()
        try:
            await asyncio.shield(self._db.run(_rollback))
        except BaseException:  # the members fail anyway; the next BEGIN rolls back leftovers
            pass
        if group is not None:
            error = exc if isinstance(exc, DomainError) else Unavailable(
                "the write transaction was rolled back; nothing was written, retry",
                reason=Reason.STORAGE_UNAVAILABLE)
            group.settle(error)

    def _defer(self, group: _Group) -> asyncio.Future[None]:
        """Leave ``group`` open for the units of work waiting now; one closer queued
        behind them COMMITs it if none of them does."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.waiting.append(future)
        if group.closer is None:
            group.closer = asyncio.get_running_loop().create_task(self._close_group(group))
        return future

    async def _close_group(self, group: _Group) -> None:
        await self._lock.acquire()
        try:
            if self._group is group:
                await self._commit_group()
        except BaseException:
            pass  # the members got the failure
        finally:
            self._lock.release()

    # --- outside units of work -----------------------------------------------------------
    async def head(self) -> int:
        await self._exclusive()
        try:
            return await self._db.run(head_sync)
        finally:
            self._lock.release()

    async def purge_idempotency(self, older_than: datetime) -> int:
        """Delete idempotency records created before ``older_than``; returns how many."""
        cutoff = epoch_micros(older_than)

        def _purge(c: sqlite3.Connection) -> int:
            return c.execute("DELETE FROM idempotency WHERE created_at < ?", (cutoff,)).rowcount

        await self._exclusive()
        try:
            return await self._db.run(_purge)
        finally:
            self._lock.release()

    async def close(self) -> None:
        await self._exclusive()
        try:
            await self._db.close()
        finally:
            self._lock.release()


def _tune_writer(c: sqlite3.Connection) -> None:
    # A page cache that holds the write model's hot B-tree pages (the default is 2 MiB):
    # random edge and counter keys otherwise re-read pages on every batch. No effect on
    # durability.
    c.execute("PRAGMA cache_size = -65536")


def _begin(c: sqlite3.Connection) -> None:
    if c.in_transaction:  # a rollback lost to cancellation: never build on it
        c.execute("ROLLBACK")
    c.execute("BEGIN IMMEDIATE")


def _commit(c: sqlite3.Connection) -> None:
    c.execute("COMMIT")


def _rollback(c: sqlite3.Connection) -> None:
    if c.in_transaction:
        c.execute("ROLLBACK")


class SqliteUnitOfWork:
    """One unit of work: a transaction of its own, or a SAVEPOINT inside the open
    group transaction (see the module docstring). ``BEGIN IMMEDIATE`` (or the
    SAVEPOINT) rides on the first statement's thread hop (the store's asyncio lock is
    taken on entry); buffered changes, the events and ``COMMIT`` share the last hop. A
    BatchWrite of 100 edges costs a handful of hops and statements whatever its size
    (ADR 0006)."""

    def __init__(self, store: SqliteWriteStore) -> None:
        self._store = store
        self._active = False
        self._used = False
        self._begun = False
        self._joined = False  # runs as a SAVEPOINT of the open group transaction
        self._savepoint = False  # the SAVEPOINT has run (set on the writer thread)
        self._committed = False
        self._committing = False
        self._commit_sent = False  # the COMMIT statement was started (set on the writer thread)
        self._settled = False  # its changes belong to the group now: nothing to roll back
        self._locked = False
        self._aggregates = AggregateTracker()
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
        store = self._store
        if store._group is not None:
            self._joined = True

            def _first(c: sqlite3.Connection) -> T:
                if not c.in_transaction:
                    raise Internal("the group transaction was lost")
                c.execute(f"SAVEPOINT {_SAVEPOINT}")
                self._savepoint = True
                return fn(c)
        else:
            store._group = _Group()

            def _first(c: sqlite3.Connection) -> T:
                _begin(c)
                return fn(c)

        return await store._db.run(_first)

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
        drained = (self.nodes.drain(), self.edges.drain())
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
        await self._store._acquire_for_unit_of_work()
        self._locked = True
        self._active = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if not self._committed and not self._settled:
                await asyncio.shield(self.rollback())
        finally:
            self._active = False
            self._unlock()

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            self._store._lock.release()

    async def _commit(self) -> CommitResult:
        writes = self._drain()
        events = self._aggregates.take_events()
        pending = self.idempotency.take_pending()
        # COMMIT now, unless others wait for the lock (they join this transaction and the
        # last of them COMMITs); a SAVEPOINT is released either way
        end = "DEFER" if self._store._others_waiting() else "COMMIT"

        def _apply(c: sqlite3.Connection) -> int:
            for write in writes:
                write(c)
            position = (append_events(c, events) if events else 0) or head_sync(c)
            if pending:  # their responses carry this commit's token: render them now
                committed = CommitResult(positions={SHARD: position})
                insert_idempotency(c, [p.complete(committed) for p in pending])
            if self._joined:  # set by run() before this runs
                c.execute(f"RELEASE {_SAVEPOINT}")
            if end == "COMMIT":
                self._commit_sent = True
                c.execute("COMMIT")
            return position

        if end == "COMMIT":
            self._committing = True
        position = await self.run(_apply)
        result = CommitResult(positions={SHARD: position})
        store = self._store
        group = store._group
        assert group is not None
        group.size += 1
        self.node_cache.stage(self.nodes.learned())
        self._settled = True
        if end == "COMMIT":
            store._group_committed(group)
            return result
        # Deferred: the next units of work run in this transaction; wait for its COMMIT.
        waiter = store._defer(group)
        self._unlock()
        await waiter
        return result

    async def commit(self) -> CommitResult:
        try:
            result = await self._commit()
        except BaseException as exc:
            uncertain = self._commit_sent or isinstance(exc, asyncio.CancelledError)
            if self._committing and not self._settled and uncertain:
                # a COMMIT failed or was cut short: it may or may not have happened. The
                # group fails as a whole (nobody was acknowledged) and the cache forgets it.
                # (A write that failed before the COMMIT rolls back this unit of work only.)
                self.node_cache.forget(self.nodes.learned())
                self._settled = True
                await self._store._fail_group(exc)
            raise
        self._committed = True
        return result

    async def rollback(self) -> None:
        """Undo this unit of work only: its SAVEPOINT inside a group, else the transaction."""
        if not self._active or self._committed or self._settled:
            return
        self._settled = True
        self._aggregates.discard()
        self._drain()
        self.idempotency.take_pending()
        if not self._begun:
            return
        store = self._store
        if not self._joined:
            store._group = None  # it began the transaction and nobody joined it yet
            await store._db.run(_rollback)
            return

        def _undo(c: sqlite3.Connection) -> None:
            if self._savepoint:
                c.execute(f"ROLLBACK TO {_SAVEPOINT}")
                c.execute(f"RELEASE {_SAVEPOINT}")

        try:
            await store._db.run(_undo)
        except BaseException as exc:  # the transaction is gone with the group's changes
            await store._fail_group(exc)
            raise
