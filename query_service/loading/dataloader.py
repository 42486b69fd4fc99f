"""A generic asyncio DataLoader: loads issued in the same tick become one batch call.

One instance per request (its memo must never outlive the request's consistency
point). ``load(key)`` queues the key and schedules a dispatch with
``loop.call_soon``; every task that runs before the dispatch adds to the same
batch. ``max_batch_size`` splits very large batches into several calls.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Hashable, Iterable, Mapping, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchFn = Callable[[list[K]], Awaitable[Mapping[K, V]]]


class DataLoader(Generic[K, V]):
    def __init__(self, batch_fn: BatchFn, *, max_batch_size: int = 500) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._batch_fn = batch_fn
        self._max = max_batch_size
        self._memo: dict[K, asyncio.Future[V | None]] = {}
        self._queue: dict[K, asyncio.Future[V | None]] = {}
        self._scheduled = False

    def load(self, key: K) -> "asyncio.Future[V | None]":
        """A future resolving to the value for ``key`` (None when the batch had none)."""
        if key in self._memo:  # every queued key is memoised too
            return self._memo[key]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[V | None] = loop.create_future()
        self._queue[key] = fut
        self._memo[key] = fut
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return fut

    async def load_many(self, keys: Iterable[K]) -> list[V | None]:
        return list(await asyncio.gather(*(self.load(k) for k in keys)))

    def _dispatch(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, {}
        keys = list(queue)
        for i in range(0, len(keys), self._max):
            chunk = keys[i:i + self._max]
            asyncio.ensure_future(self._run_batch(chunk, queue))

    async def _run_batch(self, keys: list[K], futures: dict[K, "asyncio.Future[V | None]"]) -> None:
        try:
            result = await self._batch_fn(keys)
        except BaseException as exc:  # every waiter sees the failure; nothing is swallowed
            for k in keys:
                self._memo.pop(k, None)
                if not futures[k].done():
                    futures[k].set_exception(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return
        for k in keys:
            if not futures[k].done():
                futures[k].set_result(result.get(k))
