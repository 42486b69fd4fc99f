"""``SqliteProjectorLock``: one projecting process per SQLite file, by ``flock``.

Several query processes (``make run``'s workers) serve one data file; exactly one of them
may run the projector (two would apply the same events twice and fight over the write
lock). The ProjectionLease port (query_service.app.ports) is implemented here by an
exclusive ``flock`` on ``<db>.projector.lock``:

- ``acquire`` tries the lock without blocking; the projector calls it every poll round, so
  when the holder dies (the kernel drops a dead process's locks at once, whatever killed
  it) another process takes over within one poll interval;
- the holder writes its pid into the file (for operators: ``cat var/edgewise.db.projector.lock``;
  ``holder_pid`` checks that the lock is really held);
- ``release`` (a clean stop) unlocks at once.

The lock is per open file description, held by this process only (the descriptor is not
inherited by children). flock is local to one host: it is no lock on a network file
system, and neither is SQLite's own locking there, so the data file must be local anyway.
There is one log shard on SQLite; the lock covers whichever shard is asked for.
"""

from __future__ import annotations

import fcntl
import logging
import os

_log = logging.getLogger("edgewise.query.projector")

LOCK_SUFFIX = ".projector.lock"


def lock_path_for(db_path: str) -> str:
    return f"{db_path}{LOCK_SUFFIX}"


class SqliteProjectorLock:
    """ProjectionLease port over ``flock`` (see the module doc)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self.held = False

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    async def acquire(self, shard: str) -> bool:
        if self.held:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _log.info("took the projector lock: this process projects", extra={"fields": {"lock": self.path}})
        return True

    async def release(self, shard: str) -> None:
        self.unlock()

    def unlock(self) -> None:
        if self.held and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.held = False
            _log.info("released the projector lock", extra={"fields": {"lock": self.path}})

    async def close(self) -> None:
        self.unlock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def holder_pid(path: str) -> int | None:
    """The pid of the process holding the lock at ``path``; None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: the pid in it is the holder's
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)  # nobody held it (we briefly did)
        return None
    finally:
        os.close(fd)
