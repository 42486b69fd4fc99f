"""The "make a read model" fixture the read-side port suites share.

An adapter supplies a mixin overriding ``adapters`` (a fixture giving the pair
``(read_model, projection_store)`` over the same storage); an adapter test module then
says e.g. ``class TestSqliteReadModel(SqliteReadModelFixture, ReadModelContract): pass``.
"""

from __future__ import annotations

import pytest

from query_service.projection.apply import apply_events
from tests.query_support import logged


class ReadModelFixture:
    @pytest.fixture
    async def adapters(self):  # -> (read_model, store); pragma: no cover - abstract
        raise NotImplementedError

    async def seed(self, store, events, start=1, projector="p"):
        return await store.apply(projector, logged(events, start), apply_events)
