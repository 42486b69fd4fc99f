"""Several query processes on one store, each with its own read cache, each running the
projector loop: a lease lets one of them project each shard (SQLite: a file lock; DynamoDB:
a lease item per shard) and the others follow. A consistency token is honoured by every
process, and stays honoured when the projection moves from one process to another (the
follower drops what the other process projected before the progress moves)."""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.persistence.memory.read_model import InMemoryReadModel
from infrastructure.tokens import TokenSigner
from query_service.app.consistency import Consistency
from query_service.app.queries.get_node import GetNode
from query_service.bootstrap import build_application
from query_service.cache import ReadCache
from tests.query_support import SECRET, Events
from tests.unit.query_service.conftest import ListEventLog


class SharedLeases:
    """One holder per shard, moved by hand (an expiry, a dead process)."""

    def __init__(self) -> None:
        self.holders: dict[str, str] = {}

    def of(self, owner: str) -> "Lease":
        return Lease(self, owner)


class Lease:
    def __init__(self, shared: SharedLeases, owner: str) -> None:
        self.shared, self.owner = shared, owner

    async def acquire(self, shard: str) -> bool:
        holder = self.shared.holders.setdefault(shard, self.owner)
        return holder == self.owner

    async def release(self, shard: str) -> None:
        if self.shared.holders.get(shard) == self.owner:
            del self.shared.holders[shard]


class Workers:
    def __init__(self, names=("a", "b", "c"), single_shard: bool = True) -> None:
        self.rm = InMemoryReadModel()
        self.log = ListEventLog((lambda g: "0") if single_shard else (lambda g: g))
        self.ev = Events()
        self.signer = TokenSigner(SECRET)
        self.leases = SharedLeases()
        self.apps = {name: build_application(read_model=self.rm, store=self.rm, event_log=self.log,
                                             signer=self.signer, projector_enabled=True, poll_interval=0.01,
                                             cache=ReadCache(8 << 20), lease=self.leases.of(name),
                                             max_consistency_wait=2.0)
                     for name in names}
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> "Workers":
        for app in self.apps.values():
            await app.projector.start_position()
            self.tasks.append(asyncio.create_task(app.projector.run()))
        return self

    async def stop(self) -> None:
        for app in self.apps.values():
            app.projector.stop()
        await asyncio.gather(*self.tasks)

    def shard(self, graph: str = "g") -> str:
        return self.log.shard_of(graph)

    async def get(self, worker: str, node_id: str, position: int | None = None):
        consistency = None
        if position is not None:
            consistency = Consistency(at_least_token=self.signer.sign({"p": {self.shard(): position}}))
        return await self.apps[worker].queries.get_node(GetNode("g", node_id, consistency))


@pytest.fixture
async def workers():
    w = await Workers().start()
    yield w
    await w.stop()


async def test_one_worker_projects_and_every_worker_reads_its_writes(workers):
    w = workers
    position = w.log.append(w.ev.schema(), w.ev.create("n", age=1))
    for name in w.apps:
        assert (await w.get(name, "n", position)).properties == {"age": 1}
    projecting = [name for name, app in w.apps.items() if app.projector.owned]
    assert projecting == [w.leases.holders[w.shard()]]
    for age in range(2, 6):  # every worker has "n" cached; each write drops it everywhere
        position = w.log.append(w.ev.update("n", age=age))
        for name in w.apps:
            assert (await w.get(name, "n", position)).properties == {"age": age}


async def test_a_handover_keeps_every_cache_in_step(workers):
    w = workers
    position = w.log.append(w.ev.schema(), w.ev.create("n", age=1))
    await w.get("a", "n", position)
    first = w.leases.holders[w.shard()]
    for age, holder in ((2, "b"), (3, "c"), (4, "a"), (5, first)):
        w.leases.holders[w.shard()] = holder  # the lease moves (expired, or its holder died)
        for name in w.apps:  # everyone caches the current state
            assert (await w.get(name, "n", position)).properties == {"age": age - 1}
        position = w.log.append(w.ev.update("n", age=age))
        for name in w.apps:
            assert (await w.get(name, "n", position)).properties == {"age": age}, (name, holder)
        for _ in range(100):  # the projector notices it holds the shard at its next round
            if w.apps[holder].projector.owned:
                break
            await asyncio.sleep(0.01)
        assert [n for n, app in w.apps.items() if app.projector.owned] == [holder]


async def test_a_stopped_holder_releases_and_another_takes_over():
    w = await Workers(names=("a", "b")).start()
    try:
        position = w.log.append(w.ev.schema(), w.ev.create("n", age=1))
        assert (await w.get("b", "n", position)).properties == {"age": 1}
        holder = w.leases.holders[w.shard()]
        other = "b" if holder == "a" else "a"
        w.apps[holder].projector.stop()
        await w.tasks[list(w.apps).index(holder)]
        assert w.shard() not in w.leases.holders  # released on the way out
        position = w.log.append(w.ev.update("n", age=2))
        assert (await w.get(other, "n", position)).properties == {"age": 2}
        assert w.leases.holders[w.shard()] == other
    finally:
        await w.stop()


async def test_shards_are_spread_and_followed_per_shard():
    """DynamoDB's shape: one shard per graph, each projected by whichever worker got its lease."""
    w = Workers(names=("a", "b"), single_shard=False)
    w.leases.holders = {"g": "a", "h": "b"}
    await w.start()
    try:
        ev_h = Events("h")
        pg = w.log.append(w.ev.schema(), w.ev.create("n", age=1))
        ph = w.log.append(ev_h.schema(), ev_h.create("m", age=1))
        for name in w.apps:
            assert (await w.apps[name].queries.get_node(GetNode("g", "n", Consistency(
                at_least_token=w.signer.sign({"p": {"g": pg, "h": ph}}))))).properties == {"age": 1}
        ph = w.log.append(ev_h.update("m", age=2))
        pg = w.log.append(w.ev.update("n", age=2))
        token = Consistency(at_least_token=w.signer.sign({"p": {"g": pg, "h": ph}}))
        for name in w.apps:
            assert (await w.apps[name].queries.get_node(GetNode("g", "n", token))).properties == {"age": 2}
            assert (await w.apps[name].queries.get_node(GetNode("h", "m", token))).properties == {"age": 2}
        assert w.apps["a"].projector.owned == {"g"} and w.apps["b"].projector.owned == {"h"}
    finally:
        await w.stop()


async def test_a_projector_that_fails_unexpectedly_releases_its_shards_at_once():
    w = Workers(names=("a",))
    app = w.apps["a"]
    await app.projector.start_position()

    async def broken(*args, **kwargs):
        raise RuntimeError("a projection bug")

    w.rm.apply = broken  # the store under the cache decorator
    w.log.append(w.ev.schema())
    with pytest.raises(RuntimeError, match="a projection bug"):
        await asyncio.wait_for(app.projector.run(), 5)
    assert w.leases.holders == {} and app.projector.owned == set()  # another process may take it now
