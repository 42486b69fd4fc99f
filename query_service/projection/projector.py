"""The projector: event log -> read model, exactly once per event.

Each batch is applied and the checkpoint advanced in ONE store transaction, so a
crash between the two cannot happen; a replayed batch is skipped by the store
(positions at or below the checkpoint) and by the version rules in ``apply``.

Batches hold up to ``batch_size`` events (2,000): a batch costs roughly its rows'
b-tree pages plus one commit, so larger batches apply faster while the projector is
behind (4,000 -> ~7,000 events/s on a power-law edge log going from 500 to 2,000),
and the write lock is held ~0.2-0.3 s per full batch. A projector that keeps up
applies what is there, in small batches.

Several processes may run a projector on one store (query workers): a ``lease`` lets
exactly one of them project each shard (a file lock on SQLite, a lease item per shard on
DynamoDB); the others only follow the stored checkpoints. With a read cache, a ``follower``
(``cache_sync.CacheTailer``) drops the entries of every event another process projected
before this process's progress moves past it, and before this process takes a shard over.
"""

from __future__ import annotations

import asyncio
import logging

from typing import Callable, Protocol, Sequence

from domain.errors import DomainError
from domain.ports import EventLog, LoggedEvent
from query_service.app.ports import ProjectionLease, ProjectionStore
from query_service.projection.apply import apply_events
from query_service.projection.progress import ProjectionProgress

_log = logging.getLogger("edgewise.query.projector")

PROJECTOR_NAME = "read_model"


class Follower(Protocol):
    """What the projector needs of a ``CacheTailer``."""

    async def start_position(self) -> dict[str, int]: ...

    async def sync(self) -> dict[str, int]: ...

    def mark(self, shard: str, position: int) -> None: ...


class _Checkpoints:
    """No follower: the stored checkpoints as they are."""

    def __init__(self, store: ProjectionStore, name: str) -> None:
        self._store = store
        self._name = name

    async def start_position(self) -> dict[str, int]:
        return await self._store.positions(self._name)

    async def sync(self) -> dict[str, int]:
        return await self._store.positions(self._name)

    def mark(self, shard: str, position: int) -> None:
        pass


class Projector:
    """Projects every shard of the log whose lease this process holds (all of them when
    there is no lease: one process, or SQLite's single shard)."""

    def __init__(self, *, log: EventLog, store: ProjectionStore, progress: ProjectionProgress,
                 name: str = PROJECTOR_NAME, batch_size: int = 2000, poll_interval: float = 0.05,
                 on_applied: Callable[[Sequence[LoggedEvent]], None] | None = None,
                 lease: ProjectionLease | None = None, follower: Follower | None = None) -> None:
        self._log = log
        self._store = store
        self.progress = progress
        self.name = name
        self._batch_size = batch_size
        self._poll = poll_interval
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()  # set by stop() and wake(): ends the poll pause early
        self._on_applied = on_applied  # e.g. cache invalidation: called with the batch
        self._lease = lease
        self._follower: Follower = follower or _Checkpoints(store, name)
        self.batches_applied = 0
        self.owned: set[str] = set()  # the shards this process projected in its last round
        # the log heads of those shards as last read (replaced whole each round, never changed:
        # the metrics read it from another thread); lag = head - progress position
        self.heads: dict[str, int] = {}
        self._reported = False

    async def start_position(self) -> dict[str, int]:
        positions = await self._follower.start_position()
        self.progress.advance_all(positions)
        return positions

    async def _owned_shards(self) -> list[str]:
        shards = await self._log.shards()
        if self._lease is None:
            owned = shards
        else:
            owned = [s for s in shards if await self._lease.acquire(s)]
        self._report_owned(set(owned))
        return owned

    def _report_owned(self, owned: set[str]) -> None:
        """Log the role: INFO when it starts or stops projecting altogether, DEBUG per shard."""
        if self._reported and owned == self.owned:
            return
        gained, lost = sorted(owned - self.owned), sorted(self.owned - owned)
        became = not self._reported or (not self.owned) != (not owned)
        self._reported = True
        self.owned = owned
        fields = {"gained": gained[:20], "lost": lost[:20], "gained_count": len(gained), "lost_count": len(lost)}
        level = logging.INFO if became else logging.DEBUG
        if owned:
            _log.log(level, "projecting %d shard(s)", len(owned), extra={"fields": fields})
        else:
            _log.log(level, "not projecting: following another process's projection", extra={"fields": fields})

    async def run_once(self) -> int:
        """Apply one batch of each shard this process projects; follow the others. Returns
        how many events were applied.

        The lease comes first, the checkpoints second: once this process holds a shard nobody
        else moves its checkpoint, so the checkpoint read (and the cache entries the follower
        drops up to it) is exactly where this process continues from."""
        owned = await self._owned_shards()
        positions = await self._follower.sync()
        self.progress.advance_all(positions)
        if not owned:
            self.heads = {}
            return 0
        # one batched read of the heads (DynamoDB: one BatchGetItem per 100 shards), then a
        # log read only for the shards that have something new: an idle poll over many
        # graphs costs a couple of calls, not one Query per graph
        heads = await self._log.heads(owned)
        self.heads = {shard: heads.get(shard, 0) for shard in owned}
        total = 0
        for shard in owned:
            if heads.get(shard, 0) > positions.get(shard, 0):
                total += await self._apply_shard(shard, positions.get(shard, 0))
        return total

    async def _apply_shard(self, shard: str, position: int) -> int:
        batch = await self._log.read_after(shard, position, self._batch_size)
        if not batch:
            return 0
        new_position = await self._store.apply(self.name, shard, batch, apply_events)
        self.batches_applied += 1
        if self._on_applied is not None:  # before the progress moves: a waiting reader must see its effect
            self._on_applied(batch)
        self._follower.mark(shard, new_position)  # its cache entries are dropped already
        self.progress.advance(shard, new_position)
        return len(batch)

    async def catch_up(self) -> int:
        """Apply batches until the log is drained; returns how many events were read."""
        total = 0
        while True:
            n = await self.run_once()
            total += n
            if n == 0:
                return total

    async def run(self) -> None:
        """Follow the log until ``stop()``; a stop lets the current batch commit first. However
        the loop ends (a stop, or an unexpected error), the shards it held are released at once
        so another process projects them without waiting for an expiry."""
        try:
            await self.start_position()
            while not self._stopping.is_set():
                try:
                    n = await self.run_once()
                except DomainError as exc:  # storage busy/unavailable: retry after a pause, never drop
                    _log.warning("projection batch failed, retrying: %r", exc)
                    n = 0
                if (n == 0 or n < self._batch_size) and not self._stopping.is_set():
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), self._poll)
                    except asyncio.TimeoutError:
                        pass
                    self._wakeup.clear()
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._lease is None:
            return
        for shard in sorted(self.owned):
            try:
                await self._lease.release(shard)
            except DomainError:
                pass  # it expires on its own
        self.owned = set()
        self.heads = {}

    def wake(self) -> None:
        """Poll now: a reader waits for a position the projection has not reached."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
