"""The aggregates a unit of work has seen, and the events they recorded.

Aggregates record events (``aggregate.events``) and never publish them. Every write
unit of work (SQLite, and the in-memory fake the unit tests use) tracks each
aggregate its repositories load or save, and takes the recorded events in order
when it flushes them into the outbox, so no event is lost or written twice.
"""

from __future__ import annotations

from typing import Any, Protocol

from domain.events import DomainEvent
from domain.node import Node


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


class Tracker(Protocol):
    def track(self, aggregate: Any) -> None: ...


class NodeIdentityMap:
    """One object per node within a unit of work, and the version each node is
    stored at: the condition a repository's next ``save`` of that node checks."""

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker  # the unit of work
        self._nodes: dict[tuple[str, str], Node] = {}
        self._stored_version: dict[tuple[str, str], int] = {}

    def get(self, graph: str, node_id: str) -> Node | None:
        return self._nodes.get((graph, node_id))

    def remember(self, node: Node) -> Node:
        """``node`` is now stored at its current version."""
        key = (node.graph, node.id)
        self._nodes[key] = node
        self._stored_version[key] = node.version
        self._tracker.track(node)
        return node

    def stored_version(self, node: Node) -> int:
        """The version the store holds for ``node`` (one below, if never loaded here)."""
        version: int = self._stored_version.get((node.graph, node.id), node.version - 1)
        return version
