"""How far the projection got, and a way to wait for a position (consistency tokens)."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable


class ProjectionProgress:
    """Tracks the projected log position.

    In-process, the projector calls ``advance`` after each committed batch and
    waiters wake at once. A replica that does not project (another process holds
    the projection) passes ``refresh`` (reads the stored checkpoint); waiters then
    poll it every ``poll_interval`` seconds.
    """

    def __init__(self, *, refresh: Callable[[], Awaitable[int]] | None = None, poll_interval: float = 0.05) -> None:
        self._position = 0
        self._changed = asyncio.Event()
        self._refresh = refresh
        self._poll = poll_interval
        # Called when a reader starts waiting for a position not yet applied: an
        # in-process projector polls at once instead of at its next interval.
        self.on_behind: Callable[[], None] | None = None

    def position(self) -> int:
        return self._position

    def advance(self, position: int) -> None:
        if position > self._position:
            self._position = position
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_for(self, position: int, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        if self._position < position and self.on_behind is not None:
            self.on_behind()
        while True:
            if self._position >= position:
                return True
            if self._refresh is not None:
                self.advance(await self._refresh())
                if self._position >= position:
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step = remaining if self._refresh is None else min(remaining, self._poll)
            try:
                await asyncio.wait_for(self._changed.wait(), step)
            except asyncio.TimeoutError:
                pass
