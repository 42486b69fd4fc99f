"""The aggregates a unit of work has seen, and the events they recorded.

Aggregates record events (``aggregate.events``) and never publish them. Every write
unit of work (SQLite, and the in-memory fake the unit tests use) tracks each
aggregate its repositories load or save, and takes the recorded events in order
when it flushes them into the outbox, so no event is lost or written twice.
"""

from __future__ import annotations

from typing import Any

from domain.events import DomainEvent


class AggregateTracker:
    def __init__(self) -> None:
        self._seen: dict[int, Any] = {}  # id -> aggregate, in the order first seen
        self._pending: list[DomainEvent] = []

    def track(self, aggregate: Any) -> None:
        """Remember an aggregate and take the events it recorded so far, in order."""
        self._seen.setdefault(id(aggregate), aggregate)
        self._take(aggregate)

    def take_events(self) -> list[DomainEvent]:
        """Every event recorded since the last call, by any tracked aggregate."""
        for aggregate in self._seen.values():
            self._take(aggregate)
        events, self._pending = self._pending, []
        return events

    def discard(self) -> None:
        """Forget the events taken but not yet handed out (a rollback)."""
        self._pending.clear()

    def _take(self, aggregate: Any) -> None:
        events = getattr(aggregate, "events", None)
        if events:
            self._pending.extend(events)
            events.clear()
