"""The read cache (query_service.cache): what each event drops, graphs kept apart, the
stale-insert race, consistency tokens, the size bound, and the non-projecting tailer.

Behaviour only: every test reads through the query application (or the decorator) and
checks what comes back, and how many reads reached the store."""

from __future__ import annotations

import asyncio

import pytest

from domain.edge import Direction
from domain.errors import NotFound
from domain.views import AdjacencyKey
from infrastructure.persistence.memory.read_model import InMemoryReadModel
from infrastructure.tokens import TokenSigner
from query_service.app.consistency import Consistency
from query_service.app.queries.count_edges import CountEdges
from query_service.app.queries.get_node import GetNode
from query_service.app.queries.get_schema import GetSchema
from query_service.app.queries.list_edges import ListEdges
from query_service.app.queries.traverse import Traverse, TraversalStep
from query_service.bootstrap import build_application
from query_service.cache import CachingReadModel, ReadCache
from query_service.projection.apply import apply_events
from query_service.projection.cache_sync import InvalidatingProjectionStore
from query_service.projection.progress import ProjectionProgress
from tests.query_support import SECRET, Events, logged
from tests.unit.query_service.conftest import ListEventLog, World

OUT, IN = Direction.OUT, Direction.IN


@pytest.fixture
async def world():
    w = World(cache=ReadCache(8 << 20))
    await w.write(w.ev.schema(), *[w.ev.create(n, age=i) for i, n in enumerate("abcd")])
    return w


async def node(w, node_id, graph="g"):
    return await w.q.get_node(GetNode(graph, node_id))


async def out_ids(w, node_id, limit=10):
    got = await w.app.queries.traverse._rm.neighbour_ids("g", [AdjacencyKey(node_id, OUT, "follows")], limit)
    return got.get(AdjacencyKey(node_id, OUT, "follows"))


async def page(w, node_id, direction=OUT, edge_type="follows"):
    return [(e.source, e.target) for e in
            (await w.q.list_edges(ListEdges("g", node_id, direction, edge_type=edge_type, page_size=10))).edges]


async def counts(w, node_id, direction=OUT):
    return await w.q.count_edges(CountEdges("g", node_id, "follows", direction))


async def test_a_second_read_is_a_hit(world):
    await node(world, "a")
    trips = world.rm.round_trips
    assert (await node(world, "a")).properties == {"age": 0}
    assert world.rm.round_trips == trips
    assert world.cache.hits["node"] == 1


async def test_node_created_updated_and_deleted_drop_the_view(world):
    w = world
    with pytest.raises(NotFound):
        await node(w, "e")  # an absent node is cached too ...
    await w.write(w.ev.create("e", age=7))
    assert (await node(w, "e")).properties == {"age": 7}  # ... and NodeCreated drops it
    await w.write(w.ev.update("e", age=8))
    assert (await node(w, "e")).properties == {"age": 8}
    await w.write(w.ev.delete("e"))
    with pytest.raises(NotFound):
        await node(w, "e")


async def test_edge_added_and_removed_drop_views_counts_lists_and_pages_of_both_ends(world):
    w = world
    await w.write(w.ev.link("a", "b"))

    async def everything():
        return ((await node(w, "a")).edge_counts, (await node(w, "b")).edge_counts, await counts(w, "a"),
                await counts(w, "b", IN), await out_ids(w, "a"), await page(w, "a"), await page(w, "b", IN),
                await page(w, "a", edge_type=None))

    before = await everything()
    assert before == await everything()  # all cached now
    await w.write(w.ev.link("a", "c"))
    after = await everything()
    assert after[0] == {("follows", OUT): 2} and after[2] == 2
    assert after[4] == (["c", "b"], 2)
    assert after[5] == [("a", "c"), ("a", "b")] == after[7]
    assert (await node(w, "c")).edge_counts == {("follows", IN): 1}
    await w.write(w.ev.unlink("a", "b"))
    after = await everything()
    assert after[1] == {} and after[3] == 0 and after[4] == (["c"], 1) and after[6] == []


async def test_node_deleted_drops_the_neighbours_lists_and_counts(world):
    w = world
    await w.write(w.ev.link("a", "b"), w.ev.link("c", "b"), w.ev.link("b", "d"))
    assert await out_ids(w, "a") == (["b"], 1) and await counts(w, "c") == 1
    assert (await node(w, "d")).edge_counts == {("follows", IN): 1}
    assert await page(w, "d", IN) == [("b", "d")]
    await w.write(w.ev.delete("b"))  # the event names no neighbour
    assert await out_ids(w, "a") is None and await counts(w, "c") == 0
    assert (await node(w, "d")).edge_counts == {} and await page(w, "d", IN) == []
    with pytest.raises(NotFound):
        await node(w, "b")


async def test_node_deleted_in_the_batch_that_linked_it(world):
    w = world
    assert await out_ids(w, "a") is None  # an empty list, cached
    await w.write(w.ev.create("e"), w.ev.link("a", "e"), w.ev.delete("e"))
    assert await out_ids(w, "a") is None
    await w.write(w.ev.link("a", "b"))
    assert await out_ids(w, "a") == (["b"], 1)


async def test_schema_applied_drops_the_schema(world):
    w = world
    assert (await w.q.get_schema(GetSchema("g"))).version == 1
    await w.write(w.ev.schema())
    assert (await w.q.get_schema(GetSchema("g"))).version == 2


async def test_graphs_never_share_an_entry():
    w = World(cache=ReadCache(8 << 20))
    other = Events("h")
    await w.write(w.ev.schema(), w.ev.create("a", age=1), other.schema(), other.create("a", age=2))
    assert (await node(w, "a")).properties == {"age": 1}
    assert (await node(w, "a", "h")).properties == {"age": 2}
    assert (await node(w, "a")).properties == {"age": 1}
    await w.write(other.update("a", age=3))
    assert (await node(w, "a", "h")).properties == {"age": 3}
    assert w.cache.hits["node"] == 1  # g's entry survived h's update
    assert {key[0] for key in w.cache._entries} == {"g", "h"}  # every key starts with the graph


async def test_smaller_limits_are_served_from_the_cached_head(world):
    w = world
    await w.write(*[w.ev.create(f"f{i}") for i in range(5)], *[w.ev.link("a", f"f{i}") for i in range(5)])
    assert await out_ids(w, "a", 5) == (["f4", "f3", "f2", "f1", "f0"], 5)
    trips = w.rm.round_trips
    assert await out_ids(w, "a", 2) == (["f4", "f3"], 5)
    assert w.rm.round_trips == trips


async def test_a_traversal_level_reads_only_the_missing_lists_in_one_call():
    class Recording(InMemoryReadModel):
        calls: list = []

        async def neighbour_ids(self, graph, keys, limit):
            self.calls.append(list(keys))
            return await super().neighbour_ids(graph, keys, limit)

    rm, cache = Recording(), ReadCache(8 << 20)
    caching = CachingReadModel(rm, cache, head_size=1001)
    ev = Events()
    await rm.apply("p", "g", logged([ev.schema(), *[ev.create(n) for n in "abc"], ev.link("a", "b"),
                                     ev.link("c", "b")], shard="g"), apply_events)
    keys = [AdjacencyKey(n, OUT, "follows") for n in "abc"]
    await caching.neighbour_ids("g", keys[:1], 10)
    got = await caching.neighbour_ids("g", keys, 10)
    assert rm.calls == [keys[:1], keys[1:]]  # the cached one is not read again; the rest in ONE call
    assert got == {keys[0]: (["b"], 1), keys[2]: (["b"], 1)}


async def test_a_reader_that_read_before_an_invalidation_does_not_insert_after_it():
    """Deterministic interleaving: the reader reads state P, the projector commits P+1 and
    invalidates, then the reader's result comes back: it is returned, never cached."""

    class Gated(InMemoryReadModel):
        gate: asyncio.Event | None = None
        read_done = asyncio.Event()

        async def get_nodes(self, graph, ids, *, properties=True):
            found = await super().get_nodes(graph, ids, properties=properties)  # the state as of now
            if self.gate is not None:
                self.read_done.set()
                await self.gate.wait()
            return found

    rm, cache = Gated(), ReadCache(8 << 20)
    caching = CachingReadModel(rm, cache, head_size=1001)
    store = InvalidatingProjectionStore(rm, cache)
    ev = Events()
    await store.apply("p", "g", logged([ev.schema(), ev.create("a", age=1)], shard="g"), apply_events)
    rm.gate = asyncio.Event()
    reader = asyncio.create_task(caching.get_nodes("g", ["a"]))
    await rm.read_done.wait()  # the reader holds the old state
    await store.apply("p", "g", logged([ev.update("a", age=2)], start=3, shard="g"), apply_events)
    rm.gate.set()
    assert (await reader)["a"].properties == {"age": 1}  # what it read, but ...
    rm.gate = None
    assert (await caching.get_nodes("g", ["a"]))["a"].properties == {"age": 2}  # ... not what it left behind


async def test_the_projector_invalidates_before_the_progress_moves():
    """A reader let through by a consistency token must never meet an entry the events up to
    that token have changed: at the moment the progress advances, the entry is gone."""
    seen = []

    class Watching(ProjectionProgress):
        def advance(self, shard, position):
            if position > self.position(shard):
                seen.append((position, ("g", "n", "a") in cache._entries))
            super().advance(shard, position)

    cache = ReadCache(8 << 20)
    w = World(cache=cache)
    w.app.projector.progress = Watching()
    await w.write(w.ev.schema(), w.ev.create("a", age=1))
    await node(w, "a")
    seen.clear()
    await w.write(w.ev.update("a", age=2))
    assert seen and not any(cached for _, cached in seen)


async def test_a_consistency_token_read_is_never_stale():
    w = World(cache=ReadCache(8 << 20))
    await w.write(w.ev.schema(), w.ev.create("a", age=1))
    task = asyncio.create_task(w.app.projector.run())
    try:
        assert (await node(w, "a")).properties == {"age": 1}  # cached
        for age in range(2, 12):
            position = w.log.append(w.ev.update("a", age=age))  # not projected yet
            view = await w.q.get_node(GetNode("g", "a", Consistency(at_least_token=w.token(position))))
            assert view.properties == {"age": age}
    finally:
        w.app.projector.stop()
        await task


async def test_the_size_is_bounded_and_the_least_recently_used_go_first():
    cache = ReadCache(10_000)
    gen = cache.generation("g")
    for i in range(100):
        cache.put(("g", "n", f"k{i}"), i, 1000, gen)
        cache.get(("g", "n", "k0"))  # k0 is always the most recently used
    stats = cache.stats()
    assert stats.bytes <= 10_000 and stats.entries == 10 and stats.evictions == 90
    assert cache.get(("g", "n", "k0")) == 0 and cache.get(("g", "n", "k99")) == 99
    assert cache.put(("g", "n", "huge"), 0, 20_000, gen) is False  # larger than the cache: never stored


async def test_a_tiny_cache_still_answers_correctly():
    w = World(cache=ReadCache(2000))
    await w.write(w.ev.schema(), *[w.ev.create(f"n{i}", age=i) for i in range(50)],
                  *[w.ev.link("n0", f"n{i}") for i in range(1, 50)])
    r = await w.q.traverse(Traverse("g", "n0", (TraversalStep("follows", OUT),)))
    assert len(r.node_ids) == 50
    assert [(await node(w, f"n{i}")).properties for i in range(50)] == [{"age": i} for i in range(50)]
    assert w.cache.stats().bytes <= 2000


class TwoProcesses:
    """One store and log; a projecting app, and a replica with a cache that does not project."""

    def __init__(self) -> None:
        self.rm = InMemoryReadModel()
        self.log = ListEventLog()
        self.ev = Events()
        self.signer = TokenSigner(SECRET)
        self.projecting = build_application(read_model=self.rm, store=self.rm, event_log=self.log,
                                            signer=self.signer, projector_enabled=True, poll_interval=0.01)
        self.cache = ReadCache(8 << 20)
        self.replica = build_application(read_model=self.rm, store=self.rm, event_log=self.log, signer=self.signer,
                                         projector_enabled=False, poll_interval=0.01, cache=self.cache,
                                         max_consistency_wait=1.0)

    async def write(self, *events) -> int:
        position = self.log.append(*events)
        await self.projecting.projector.catch_up()
        return position

    async def get(self, node_id, position=None):
        token = self.signer.sign({"p": {self.log.shard_of("g"): position}}) if position else None
        consistency = Consistency(at_least_token=token) if token else None
        return await self.replica.queries.get_node(GetNode("g", node_id, consistency))


async def test_a_replica_that_does_not_project_tails_the_log_to_invalidate():
    p = TwoProcesses()
    await p.replica.tailer.start_position()
    await p.write(p.ev.schema(), p.ev.create("a", age=1), p.ev.create("b"))
    assert (await p.get("a", 3)).properties == {"age": 1}
    position = await p.write(p.ev.update("a", age=2))
    assert (await p.get("a", position)).properties == {"age": 2}  # the token waits for the tailer
    await p.write(p.ev.update("a", age=3))
    task = asyncio.create_task(p.replica.tailer.run(p.replica.progress.advance_all))
    try:
        for _ in range(100):  # the background tailer catches up without any token
            if (await p.get("a")).properties == {"age": 3}:
                break
            await asyncio.sleep(0.01)
        assert (await p.get("a")).properties == {"age": 3}
    finally:
        p.replica.tailer.stop()
        await task


async def test_the_tailer_never_drops_ahead_of_the_checkpoint():
    """Events past the stored checkpoint are not dropped yet: a reader could still read the
    old state and cache it after the drop."""
    p = TwoProcesses()
    await p.replica.tailer.start_position()
    await p.write(p.ev.schema(), p.ev.create("a", age=1))
    p.log.append(p.ev.update("a", age=2))  # in the log, not projected
    assert await p.replica.tailer.sync() == {"g": 2}
    assert (await p.get("a")).properties == {"age": 1}
    await p.projecting.projector.catch_up()
    assert await p.replica.tailer.sync() == {"g": 3}
    assert (await p.get("a")).properties == {"age": 2}


async def test_a_deleted_node_on_a_replica_drops_its_neighbours_too():
    p = TwoProcesses()
    await p.replica.tailer.start_position()
    await p.write(p.ev.schema(), p.ev.create("a"), p.ev.create("b"), p.ev.link("a", "b"))
    assert (await p.get("b", 4)).edge_counts == {("follows", IN): 1}
    position = await p.write(p.ev.delete("a"))
    assert (await p.get("b", position)).edge_counts == {}


async def test_whole_list_reads_are_served_by_heads_that_hold_the_whole_list(world):
    """FindPath reads whole lists: a cached head that is the whole list answers it, and a
    list read whole that fits a head is cached; an edge added afterwards is seen."""
    await world.write(world.ev.link("a", "b"), world.ev.link("a", "c"))
    rm = world.app.queries.traverse._rm
    key = AdjacencyKey("a", OUT, "follows")
    before = world.rm.round_trips
    first = await rm.neighbour_ids("g", [key], None)
    assert first[key].ids == ["c", "b"] and world.rm.round_trips == before + 1
    assert (await rm.neighbour_ids("g", [key], None))[key] == first[key]
    assert (await rm.neighbour_ids("g", [key], 5))[key] == first[key]
    assert world.rm.round_trips == before + 1  # both served from the cached whole list
    await world.write(world.ev.link("a", "d"))
    assert (await rm.neighbour_ids("g", [key], None))[key].ids == ["d", "c", "b"]
