"""Contract of query_service.app.ports.ProjectionStore (and the Checkpoints it extends):
``apply`` runs the change and moves the projector's checkpoint in the batch's log shard
in ONE transaction, skips events at or below that checkpoint, and leaves everything as it
was when the change fails; checkpoints are per projector and per shard (an absent shard
is at 0) and can be reset. Shards are named only through the adapter's ``shard_of``."""

from __future__ import annotations

import pytest

from query_service.projection.apply import apply_events
from tests.contract.suites.read_fixtures import ReadModelFixture
from tests.query_support import Events, logged


def moved(positions: dict[str, int]) -> dict[str, int]:
    """The checkpoints past 0 (a store may list a shard at 0 or leave it out)."""
    return {shard: position for shard, position in positions.items() if position}


class ProjectionStoreContract(ReadModelFixture):
    async def test_checkpoint_moves_with_the_batch_and_replays_are_skipped(self, adapters):
        rm, store = adapters
        shard = self.shard_of("g")
        ev = Events()
        events = [ev.schema(), ev.create("a", age=1), ev.update("a", age=2)]
        assert moved(await store.positions("p")) == {}
        assert await self.seed(store, events) == 3
        assert moved(await store.positions("p")) == {shard: 3}
        assert await self.seed(store, events) == 3  # the same batch again: nothing happens
        await store.reset("p")  # every shard back to 0
        assert moved(await store.positions("p")) == {}
        assert await self.seed(store, events) == 3  # replay from 0: versions keep it idempotent
        assert (await rm.get_nodes("g", ["a"]))["a"].properties == {"age": 2}
        assert moved(await store.positions("other")) == {}

    async def test_checkpoints_are_per_projector_and_reset_to_any_position(self, adapters):
        rm, store = adapters
        shard = self.shard_of("g")
        ev = Events()
        events = [ev.schema(), ev.create("a", age=1), ev.create("b", age=2), ev.update("a", age=3)]
        assert await self.seed(store, events[:2], projector="p1") == 2
        assert await self.seed(store, events, projector="p2") == 4
        assert (moved(await store.positions("p1")), moved(await store.positions("p2"))) == ({shard: 2}, {shard: 4})
        await store.reset("p2", {shard: 3})
        assert moved(await store.positions("p2")) == {shard: 3}
        assert await self.seed(store, events, projector="p2") == 4  # only position 4 is fresh
        assert moved(await store.positions("p1")) == {shard: 2}
        await store.reset("never-ran", {shard: 7})
        assert moved(await store.positions("never-ran")) == {shard: 7}
        await store.reset("p2", {shard: 0})
        assert moved(await store.positions("p2")) == {}

    async def test_checkpoints_are_per_shard(self, adapters):
        """A shard's checkpoint neither holds back nor skips another shard's events."""
        rm, store = adapters
        g, h = self.shard_of("g"), self.shard_of("h")
        if g == h:
            pytest.skip("the adapter's log has a single shard: nothing to keep apart")
        eg, eh = Events("g"), Events("h")
        assert await self.seed(store, [eh.schema(), eh.create("x"), eh.create("y"), eh.create("z")]) == 4
        assert await self.seed(store, [eg.schema(), eg.create("a")]) == 2  # below h's checkpoint: still fresh
        assert moved(await store.positions("p")) == {g: 2, h: 4}
        assert set(await rm.get_nodes("g", ["a", "x"])) == {"a"}
        assert set(await rm.get_nodes("h", ["a", "x", "y", "z"])) == {"x", "y", "z"}
        assert await self.seed(store, [eg.create("b")], start=3) == 3
        assert moved(await store.positions("p")) == {g: 3, h: 4}
        await store.reset("p", {g: 1, h: 4})
        assert moved(await store.positions("p")) == {g: 1, h: 4}
        await store.reset("p")
        assert moved(await store.positions("p")) == {}

    async def test_a_batch_straddling_the_checkpoint_applies_only_the_fresh_events(self, adapters):
        rm, store = adapters
        shard = self.shard_of("g")
        ev = Events()
        events = [ev.schema(), ev.create("a", age=1), ev.update("a", age=2), ev.create("b", age=5)]
        seen: list[int] = []

        def change(tx, batch):
            seen.extend(e.position for e in batch)
            apply_events(tx, batch)

        assert await store.apply("p", shard, logged(events[:2], shard=shard), change) == 2
        assert await store.apply("p", shard, logged(events, shard=shard), change) == 4
        assert seen == [1, 2, 3, 4]
        assert await store.apply("p", shard, logged(events, shard=shard), change) == 4  # nothing fresh
        assert await store.apply("p", shard, [], change) == 4
        assert seen == [1, 2, 3, 4]
        nodes = await rm.get_nodes("g", ["a", "b"])
        assert (nodes["a"].properties, nodes["b"].properties) == ({"age": 2}, {"age": 5})

    async def test_a_failing_change_leaves_state_and_checkpoint_untouched(self, adapters):
        rm, store = adapters
        shard = self.shard_of("g")
        ev = Events()
        assert await self.seed(store, [ev.schema(), ev.create("a", age=1)]) == 2
        batch = logged([ev.update("a", age=2), ev.create("b", age=3)], start=3, shard=shard)

        def half_then_fail(tx, events):
            apply_events(tx, events)
            raise RuntimeError("projection bug")

        with pytest.raises(RuntimeError):
            await store.apply("p", shard, batch, half_then_fail)
        assert moved(await store.positions("p")) == {shard: 2}
        nodes = await rm.get_nodes("g", ["a", "b"])
        assert set(nodes) == {"a"} and nodes["a"].properties == {"age": 1}
        assert await store.apply("p", shard, batch, apply_events) == 4  # the same batch, retried
        assert (await rm.get_nodes("g", ["b"]))["b"].properties == {"age": 3}
