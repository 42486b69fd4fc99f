"""Contract of query_service.app.ports.ProjectionStore (and the Checkpoints it extends):
``apply`` runs the change and moves the projector's checkpoint in ONE transaction,
skips events at or below the checkpoint, and leaves everything as it was when the
change fails; checkpoints are per projector and can be reset."""

from __future__ import annotations

import pytest

from query_service.projection.apply import apply_events
from tests.contract.suites.read_fixtures import ReadModelFixture
from tests.query_support import Events, logged


class ProjectionStoreContract(ReadModelFixture):
    async def test_checkpoint_moves_with_the_batch_and_replays_are_skipped(self, adapters):
        rm, store = adapters
        ev = Events()
        events = [ev.schema(), ev.create("a", age=1), ev.update("a", age=2)]
        assert await store.position("p") == 0
        assert await self.seed(store, events) == 3
        assert await store.position("p") == 3
        assert await self.seed(store, events) == 3  # the same batch again: nothing happens
        await store.reset("p", 0)
        assert await self.seed(store, events) == 3  # replay from 0: versions keep it idempotent
        assert (await rm.get_nodes("g", ["a"]))["a"].properties == {"age": 2}
        assert await store.position("other") == 0


    async def test_checkpoints_are_per_projector_and_reset_to_any_position(self, adapters):
        rm, store = adapters
        ev = Events()
        events = [ev.schema(), ev.create("a", age=1), ev.create("b", age=2), ev.update("a", age=3)]
        assert await self.seed(store, events[:2], projector="p1") == 2
        assert await self.seed(store, events, projector="p2") == 4
        assert (await store.position("p1"), await store.position("p2")) == (2, 4)
        await store.reset("p2", 3)
        assert await store.position("p2") == 3
        assert await self.seed(store, events, projector="p2") == 4  # only position 4 is fresh
        assert await store.position("p1") == 2
        await store.reset("never-ran", 7)
        assert await store.position("never-ran") == 7

    async def test_a_batch_straddling_the_checkpoint_applies_only_the_fresh_events(self, adapters):
        rm, store = adapters
        ev = Events()
        events = [ev.schema(), ev.create("a", age=1), ev.update("a", age=2), ev.create("b", age=5)]
        seen: list[int] = []

        def change(tx, batch):
            seen.extend(e.position for e in batch)
            apply_events(tx, batch)

        assert await store.apply("p", logged(events[:2]), change) == 2
        assert await store.apply("p", logged(events), change) == 4
        assert seen == [1, 2, 3, 4]
        assert await store.apply("p", logged(events), change) == 4  # nothing fresh: change not called
        assert await store.apply("p", [], change) == 4
        assert seen == [1, 2, 3, 4]
        nodes = await rm.get_nodes("g", ["a", "b"])
        assert (nodes["a"].properties, nodes["b"].properties) == ({"age": 2}, {"age": 5})

    async def test_a_failing_change_leaves_state_and_checkpoint_untouched(self, adapters):
        rm, store = adapters
        ev = Events()
        assert await self.seed(store, [ev.schema(), ev.create("a", age=1)]) == 2
        batch = logged([ev.update("a", age=2), ev.create("b", age=3)], start=3)

        def half_then_fail(tx, events):
            apply_events(tx, events)
            raise RuntimeError("projection bug")

        with pytest.raises(RuntimeError):
            await store.apply("p", batch, half_then_fail)
        assert await store.position("p") == 2
        nodes = await rm.get_nodes("g", ["a", "b"])
        assert set(nodes) == {"a"} and nodes["a"].properties == {"age": 1}
        assert await store.apply("p", batch, apply_events) == 4  # the same batch, retried
        assert (await rm.get_nodes("g", ["b"]))["b"].properties == {"age": 3}
