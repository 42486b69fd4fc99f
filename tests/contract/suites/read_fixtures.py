"""The "make a read model" fixture the read-side port suites share.

An adapter supplies a mixin overriding ``adapters`` (a fixture giving the pair
``(read_model, projection_store)`` over the same storage) and ``shard_of`` (the log shard
its event log puts a graph's events in: SQLite's single "0", one per graph on DynamoDB and
in memory); an adapter test module then says e.g.
``class TestSqliteReadModel(SqliteReadModelFixture, ReadModelContract): pass``.
"""

from __future__ import annotations

import pytest

from query_service.projection.apply import apply_events
from tests.query_support import logged


class ReadModelFixture:
    @pytest.fixture
    async def adapters(self):  # -> (read_model, store); pragma: no cover - abstract
        raise NotImplementedError

    def shard_of(self, graph: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    async def seed(self, store, events, start=1, projector="p"):
        """Apply ``events`` (of one graph) at positions ``start``, ... of the graph's shard;
        returns the shard's checkpoint."""
        shards = {self.shard_of(e.graph) for e in events}
        assert len(shards) == 1, "seed one graph's events at a time"
        shard = shards.pop()
        return await store.apply(projector, shard, logged(events, start, shard), apply_events)
