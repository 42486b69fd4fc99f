"""How far the projection got, per log shard, and a way to wait for positions
(consistency tokens)."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Mapping


class ProjectionProgress:
    """Tracks the projected log position of every shard.

    In-process, the projector calls ``advance`` after each committed batch and
    waiters wake at once. A replica that does not project (another process holds
    the projection) passes ``refresh`` (reads the stored checkpoints); waiters then
    poll it every ``poll_interval`` seconds.
    """

    def __init__(self, *, refresh: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
                 poll_interval: float = 0.05) -> None:
        self._positions: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._refresh = refresh
        self._poll = poll_interval
        # Called when a reader starts waiting for a position not yet applied: an
        # in-process projector polls at once instead of at its next interval.
        self.on_behind: Callable[[], None] | None = None

    def position(self, shard: str) -> int:
        return self._positions.get(shard, 0)

    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    def advance(self, shard: str, position: int) -> None:
        if position > self._positions.get(shard, 0):
            self._positions[shard] = position
            self._changed.set()
            self._changed = asyncio.Event()

    def advance_all(self, positions: Mapping[str, int]) -> None:
        for shard, position in positions.items():
            self.advance(shard, position)

    def reached(self, required: Mapping[str, int]) -> bool:
        return all(self._positions.get(shard, 0) >= position for shard, position in required.items())

    def behind(self, required: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """The shards not yet at ``required``: shard -> (required, projected)."""
        return {s: (p, self._positions.get(s, 0)) for s, p in required.items() if self._positions.get(s, 0) < p}

    async def wait_for(self, required: Mapping[str, int], timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        if not self.reached(required) and self.on_behind is not None:
            self.on_behind()
        while True:
            if self.reached(required):
                return True
            if self._refresh is not None:
                self.advance_all(await self._refresh())
                if self.reached(required):
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step = remaining if self._refresh is None else min(remaining, self._poll)
            try:
                await asyncio.wait_for(self._changed.wait(), step)
            except asyncio.TimeoutError:
                pass
