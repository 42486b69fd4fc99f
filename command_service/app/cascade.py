"""The background half of invariant 6: edges of tombstoned nodes removed in
bounded batches, each batch its own transaction with its EdgeRemoved events."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from domain.events import Causation
from domain.ports import Clock, IdGenerator

from command_service.app.commands.delete_node import remove_edges_of
from command_service.app.common import MAX_EDGES_PER_TRANSACTION
from command_service.app.ports import UnitOfWorkFactory

_log = logging.getLogger("edgewise.cascade")


class CascadeWorker:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdGenerator, *,
                 batch_size: int = MAX_EDGES_PER_TRANSACTION, poll_interval: float = 0.5,
                 housekeeping: Callable[[], Awaitable[object]] | None = None,
                 housekeeping_interval: float = 3600.0) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._housekeeping = housekeeping
        self._housekeeping_interval = housekeeping_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def run_once(self) -> int:
        """Remove one batch of the oldest job's edges; returns how many (0: no work)."""
        async with self._uow_factory() as uow:
            job = await uow.cascades.next()
            if job is None:
                return 0
            causation = Causation(occurred_at=self._clock.now(), new_event_id=self._ids.new_id,
                                  request_id=job.request_id, trace_context=job.trace_context)
            removed = await remove_edges_of(uow, job.graph, job.node_id, causation, limit=self._batch_size)
            if removed < self._batch_size:
                # Nothing can attach to a tombstone, so a short batch means none are left.
                remaining = await uow.edges.counts_for_node(job.graph, job.node_id)
                if not remaining:
                    await uow.cascades.complete(job.graph, job.node_id)
            await uow.commit()
            return max(removed, 1)  # a job was worked on, even if it had nothing left to remove

    async def drain(self) -> None:
        """Run until no job is left (tests and shutdown)."""
        while await self.run_once():
            pass

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="cascade-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        next_housekeeping = self._clock.now()
        while not self._stopping:
            try:
                if self._housekeeping is not None and self._clock.now() >= next_housekeeping:
                    await self._housekeeping()
                    next_housekeeping = self._clock.now() + timedelta(seconds=self._housekeeping_interval)
                if await self.run_once():
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged, retried after the poll interval
                _log.exception("cascade batch failed; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
            except asyncio.TimeoutError:
                pass


def idempotency_purger(purge: Callable[[datetime], Awaitable[int]], clock: Clock,
                       retention: timedelta) -> Callable[[], Awaitable[int]]:
    """Housekeeping step: drop idempotency records older than ``retention`` (≥ 24 h)."""
    if retention < timedelta(hours=24):
        raise ValueError("idempotency records must be kept at least 24 hours")

    async def _purge() -> int:
        return await purge(clock.now() - retention)

    return _purge
