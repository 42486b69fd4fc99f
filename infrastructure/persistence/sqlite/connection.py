"""Async access to one SQLite file.

sqlite3 is blocking, so every connection lives on its own thread and calls hop there
through ``run``. The command side uses exactly one writer connection (SQLite allows
one writer at a time anyway, and a single writer makes ``BEGIN IMMEDIATE`` the
serialisation point for every invariant). The query side uses a small pool of
read connections plus its own writer for the read model.

Driver errors never escape: ``translate`` turns them into domain errors here, at the
adapter boundary.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from domain.errors import DomainError, Internal, Reason, Unavailable

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


def translate(exc: sqlite3.Error) -> DomainError:
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return Unavailable("the SQLite store is busy; retry", reason=Reason.STORAGE_UNAVAILABLE, retry_after_seconds=0.2)
    if isinstance(exc, sqlite3.OperationalError) and ("disk" in text or "unable to open" in text or "readonly" in text):
        return Unavailable(f"the SQLite store is unavailable: {exc}", reason=Reason.STORAGE_UNAVAILABLE)
    return Internal(f"SQLite error: {exc}", reason=Reason.INTERNAL)


def _configure(conn: sqlite3.Connection, *, read_only: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not read_only:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise Internal(f"could not switch SQLite to WAL mode (got {mode})")
    # FULL: an acknowledged commit survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if read_only:
        conn.execute("PRAGMA query_only = ON")


class SqliteRunner(Protocol):
    """What the adapters need of a connection: ``SqliteConnection`` or ``SqliteReaderPool``."""

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


class SqliteConnection:
    """One sqlite3 connection pinned to one thread."""

    def __init__(self, path: str, *, read_only: bool = False, name: str = "sqlite") -> None:
        if not path:
            raise ValueError("a SQLite database path is required")
        self.path = path
        self.read_only = read_only
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.round_trips = 0  # calls of ``run``: thread hops (diagnostics and tests)

    async def open(self) -> "SqliteConnection":
        def _open() -> sqlite3.Connection:
            if not self.read_only:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            _configure(conn, read_only=self.read_only)
            return conn

        self._conn = await self._hop(_open)
        return self

    async def _hop(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the connection's thread."""
        if self._conn is None or self._closed:
            raise Unavailable("SQLite connection is closed", reason=Reason.STORAGE_UNAVAILABLE)
        conn = self._conn
        self.round_trips += 1
        return await self._hop(lambda: fn(conn))

    async def execute_script(self, sql: str) -> None:
        await self.run(lambda c: c.executescript(sql))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)


class SqliteReaderPool:
    """A few read-only connections; each call takes a free one.

    Plus one connection used on the event loop's own thread for point reads
    (``run_inline``): a hop to a reader thread and back costs ~80 us at p50, the read of
    one node ~25 us, so a GetNode that misses the cache mostly paid for the hop. It never
    waits for a lock (busy timeout 0): a busy store sends the read through a hop instead.
    """

    def __init__(self, path: str, size: int = 4) -> None:
        self.path = path
        self.size = size
        self._free: asyncio.Queue[SqliteConnection] | None = None
        self._all: list[SqliteConnection] = []
        self._inline: sqlite3.Connection | None = None
        self.inline_fallbacks = 0

    async def open(self) -> "SqliteReaderPool":
        self._free = asyncio.Queue()
        for i in range(self.size):
            conn = await SqliteConnection(self.path, read_only=True, name=f"sqlite-read-{i}").open()
            self._all.append(conn)
            self._free.put_nowait(conn)
        try:
            inline = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            inline.row_factory = sqlite3.Row
            _configure(inline, read_only=True)
            inline.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        self._inline = inline
        return self

    async def run_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a short read on the loop's thread; through a reader thread if the store is busy."""
        if self._inline is None:
            return await self.run(fn)
        try:
            return fn(self._inline)
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" not in text and "busy" not in text:
                raise translate(exc) from exc
            self.inline_fallbacks += 1
            return await self.run(fn)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._free is not None, "pool not opened"
        conn = await self._free.get()
        try:
            return await conn.run(fn)
        finally:
            self._free.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        if self._inline is not None:
            self._inline.close()
            self._inline = None


