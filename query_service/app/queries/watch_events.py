"""WatchEvents: the graph's event log from a position, then followed live.

An async generator; it ends only when the caller stops iterating (the client
cancels the stream).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncGenerator

from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.ports import EventLog, LoggedEvent
from query_service.app.paging import page_size


@dataclass(frozen=True)
class WatchEvents:
    graph: str
    after_position: int = 0
    page_size: int = 0


class WatchEventsHandler:
    def __init__(self, event_log: EventLog, *, poll_interval: float = 0.1) -> None:
        self._log = event_log
        self._poll = poll_interval

    async def __call__(self, query: WatchEvents) -> AsyncGenerator[LoggedEvent, None]:
        """The stream (a generator: the caller ``aclose()``s it when the client goes away)."""
        if query.after_position < 0:
            raise ValidationFailed("after_position must not be negative", reason=Reason.INVALID_ARGUMENT,
                                   violations=[FieldViolation("after_position", "must be >= 0")])
        size = page_size(query.page_size)
        return self._stream(query.graph, query.after_position, size)

    async def _stream(self, graph: str, position: int, size: int) -> AsyncGenerator[LoggedEvent, None]:
        # A graph's events all live in one log shard, so one position is the whole cursor.
        shard = self._log.shard_of(graph)
        while True:
            batch = await self._log.read_after(shard, position, size, graph=graph)
            for logged in batch:
                position = logged.position
                yield logged
            if len(batch) < size:
                await asyncio.sleep(self._poll)
