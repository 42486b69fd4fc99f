"""Keeping the read cache (query_service.cache) in step with the projection.

Two rules make a cached entry never older than what the consistency gate promises:

1. Invalidate AFTER the store holds the change: a reader that starts after the
   invalidation then reads the new state; one that read the old state before it either
   inserted before it (and is dropped by it) or inserts after it (and is refused by the
   generation check in ``ReadCache.put``).
2. Invalidate BEFORE the projection progress moves: a reader let through by a consistency
   token for position P never meets an entry that P's events should have dropped.

In a process that projects, ``InvalidatingProjectionStore`` wraps the projection store:
its ``apply`` returns only once the batch committed AND its entries are dropped, and the
projector advances the progress after ``apply`` returns (rules 1 and 2). The deleted
node's neighbours, which a NodeDeleted does not name, are taken from the adjacency the
projection itself reads inside the transaction before deleting (``adjacency_of``), so a
delete drops exactly the lists and counts it changes.

In a process that does not project (another process holds the projection), or for the
shards another process projects (query workers: a lease per shard, ``Projector(follower=)``),
``CacheTailer`` follows the stored checkpoint: it reads the log up to the checkpoint (never past it: rule
1), drops what those events change, and only then reports the checkpoint as the position
reached; the process's ``ProjectionProgress`` refreshes through it (rule 2). Without the
projection's adjacency, a NodeDeleted there drops the whole graph. Reads without a token
(the latest projected state) may meet entries up to one poll interval older than the
stored checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Mapping, Sequence

from domain.edge import Direction
from domain.errors import DomainError
from domain.events import NodeDeleted
from domain.ports import EventLog, LoggedEvent
from query_service.app.ports import Applier, Checkpoints, ProjectionStore
from query_service.cache import Key, ReadCache, keys_for

_log = logging.getLogger("edgewise.query.cache")

AdjacencyRows = list[tuple[Direction, str, str]]
"""(direction, edge type, neighbour) rows of one node (``ProjectionTransaction.adjacency_of``)."""


def invalidate(cache: ReadCache, events: Sequence[LoggedEvent],
               adjacency: dict[tuple[str, str], AdjacencyRows] | None = None) -> None:
    """Drop what ``events`` change, one generation bump per graph."""
    by_graph: dict[str, list[Key] | None] = {}
    for logged in events:
        event = logged.event
        graph = event.graph
        rows = None
        if isinstance(event, NodeDeleted) and adjacency is not None:
            rows = adjacency.get((graph, event.aggregate_id))
        keys = keys_for(event, rows)
        if keys is None:
            by_graph[graph] = None
        elif graph not in by_graph:
            by_graph[graph] = keys
        elif (pending := by_graph[graph]) is not None:
            pending += keys
    for graph, keys in by_graph.items():
        if keys is None:
            cache.invalidate_graph(graph)
        else:
            cache.invalidate(graph, keys)


class _RecordingTransaction:
    """A ProjectionTransaction that remembers the adjacency the projection read."""

    def __init__(self, tx: Any, adjacency: dict[tuple[str, str], AdjacencyRows]) -> None:
        self._tx = tx
        self._adjacency = adjacency

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def adjacency_of(self, graph: str, node: str) -> AdjacencyRows:
        rows: AdjacencyRows = self._tx.adjacency_of(graph, node)
        self._adjacency.setdefault((graph, node), []).extend(rows)
        return rows


class InvalidatingProjectionStore:
    """``ProjectionStore`` decorator: a batch's cache entries are dropped once it committed,
    before ``apply`` returns (so before the projector moves the progress)."""

    def __init__(self, inner: ProjectionStore, cache: ReadCache) -> None:
        self._inner = inner
        self._cache = cache

    def __getattr__(self, name: str) -> Any:  # ensure_schema and any adapter extras
        return getattr(self._inner, name)

    async def positions(self, projector: str) -> dict[str, int]:
        return await self._inner.positions(projector)

    async def apply(self, projector: str, shard: str, events: Sequence[LoggedEvent], change: Applier) -> int:
        applied: list[LoggedEvent] = []
        adjacency: dict[tuple[str, str], AdjacencyRows] = {}

        def recording(tx: Any, fresh: Sequence[LoggedEvent]) -> Any:
            applied.extend(fresh)
            return change(_RecordingTransaction(tx, adjacency), fresh)

        try:
            return await self._inner.apply(projector, shard, events, recording)
        except asyncio.CancelledError:
            # the store's thread may still commit after this: nothing cached can be trusted
            self._cache.clear()
            raise
        finally:
            # on a failure too (a rolled-back batch changed nothing; dropping more is harmless)
            invalidate(self._cache, applied, adjacency)

    async def reset(self, projector: str, positions: Mapping[str, int] | None = None) -> None:
        await self._inner.reset(projector, positions)
        self._cache.clear()


class CacheTailer:
    """Drops cache entries for the events another process projects (see the module doc)."""

    def __init__(self, *, log: EventLog, checkpoints: Checkpoints, cache: ReadCache, projector_name: str,
                 batch_size: int = 1000, poll_interval: float = 0.05) -> None:
        self._log = log
        self._checkpoints = checkpoints
        self._cache = cache
        self._name = projector_name
        self._batch = batch_size
        self._poll = poll_interval
        self._positions: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    @property
    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    async def start_position(self) -> dict[str, int]:
        """Start from the stored checkpoints: the cache is empty, nothing older to drop."""
        async with self._lock:
            self._cache.clear()
            self._positions = await self._checkpoints.positions(self._name)
            return dict(self._positions)

    async def sync(self) -> dict[str, int]:
        """Drop the entries of every event up to the stored checkpoints; those checkpoints."""
        async with self._lock:
            targets = await self._checkpoints.positions(self._name)
            if any(targets.get(s, 0) < p for s, p in self._positions.items()):  # the read model was reset
                self._cache.clear()
                self._positions = dict(targets)
                return dict(targets)
            for shard, target in targets.items():
                position = self._positions.get(shard, 0)
                while position < target:
                    batch = await self._log.read_after(shard, position, self._batch)
                    batch = [e for e in batch if e.position <= target]
                    if not batch:  # the log has no events up to the checkpoint: nothing to drop
                        break
                    invalidate(self._cache, batch)
                    position = batch[-1].position
                self._positions[shard] = target
            return dict(self._positions)

    def mark(self, shard: str, position: int) -> None:
        """This process projected ``shard`` up to ``position`` and dropped those entries itself
        (``InvalidatingProjectionStore``): nothing before it is left to drop."""
        if position > self._positions.get(shard, 0):
            self._positions[shard] = position

    async def run(self, advance: Callable[[Mapping[str, int]], None]) -> None:
        """Follow the checkpoint until ``stop()``, reporting each position reached."""
        while not self._stopping.is_set():
            try:
                advance(await self.sync())
            except DomainError as exc:  # storage busy or down: try again after a pause
                _log.warning("cache invalidation from the event log failed, retrying: %r", exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self._poll)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
