"""DynamoProjectionStore and DynamoProjectionLease on moto: batches split into transactions
at event boundaries with the checkpoint moving per transaction, failures part-way that a
re-apply repairs, an oversize event (a supernode's delete) split replay-safely, the lease
refusing a writer that lost it, and the item cache never serving what another writer changed.
The port contracts themselves run in tests/contract/test_dynamodb_read_model.py."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
from botocore.exceptions import ClientError

from deploy.dynamodb.tables import READ
from domain.edge import Direction
from domain.errors import Unavailable
from domain.views import AdjacencyKey
from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.capacity import capacity_scope
from infrastructure.persistence.dynamodb.admin import create_tables, delete_tables
from infrastructure.persistence.dynamodb.client import DynamoClient
from infrastructure.persistence.dynamodb.lease import DynamoProjectionLease, LeaseLost
from infrastructure.persistence.dynamodb.projection import CheckpointMoved, DynamoProjectionStore
from infrastructure.persistence.dynamodb.read_model import DynamoReadModel
from query_service.projection.apply import apply_events
from tests.dynamodb_support import open_test_client
from tests.query_support import Events, logged

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]


@pytest.fixture
async def dynamo(dynamo_settings: Any) -> AsyncIterator[DynamoClient]:
    """A client on a fresh read table (all the read side uses), overriding the suite's
    three-table ``dynamo``."""
    client = await open_test_client(dynamo_settings)
    try:
        await create_tables(client, tables=(READ,))
        yield client
        await delete_tables(client, tables=(READ,))
    finally:
        await client.close()


class Transactions:
    """Records every TransactWriteItems; ``fail_on`` = the call numbers (1-based) that fail
    with a 500 before reaching moto (nothing of them is written)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: DynamoClient, fail_on: tuple[int, ...] = ()) -> None:
        self.sent: list[list[dict[str, Any]]] = []
        self.fail_on = set(fail_on)
        real = client._client.transact_write_items

        async def recording(**params: Any) -> Any:
            self.sent.append(params["TransactItems"])
            if len(self.sent) in self.fail_on:
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"},
                                   "ResponseMetadata": {"HTTPStatusCode": 500}}, "TransactWriteItems")
            return await real(**params)

        monkeypatch.setattr(client._client, "transact_write_items", recording)

    def checkpoints(self, graph: str, projector: str = "p") -> list[int | None]:
        """The checkpoint each transaction put (None: a part without one)."""
        key = keys.checkpoint_key(graph, 0, projector)
        out: list[int | None] = []
        for items in self.sent:
            puts = [i["Put"]["Item"] for i in items if "Put" in i and i["Put"]["Item"]["pk"] == key["pk"]
                    and i["Put"]["Item"]["sk"] == key["sk"]]
            out.append(int(puts[0]["pos"]["N"]) if puts else None)
        return out

    def written(self, number: int) -> set[tuple[str, str]]:
        """(pk, sk) of the data items transaction ``number`` (1-based) put or deleted."""
        out = set()
        for item in self.sent[number - 1]:
            if "Put" in item:
                out.add((item["Put"]["Item"]["pk"]["S"], item["Put"]["Item"]["sk"]["S"]))
            elif "Delete" in item:
                out.add((item["Delete"]["Key"]["pk"]["S"], item["Delete"]["Key"]["sk"]["S"]))
        return {(pk, sk) for pk, sk in out if "#P#" not in pk}  # not the checkpoint


def edge_items(graph: str, source: str, target: str) -> set[tuple[str, str]]:
    """The items one EdgeAdded between two fresh nodes writes."""
    found = [keys.edge_view_key(graph, source, "follows", target), keys.node_view_key(graph, source),
             keys.node_view_key(graph, target), keys.adjacency_head_key(graph, source, Direction.OUT, "follows"),
             keys.adjacency_head_key(graph, target, Direction.IN, "follows")]
    return {(k["pk"]["S"], k["sk"]["S"]) for k in found}


async def snapshot(rm: DynamoReadModel, graph: str, nodes: list[str]) -> tuple[Any, ...]:
    keys_ = [AdjacencyKey(n, d, "follows") for n in nodes for d in (Direction.OUT, Direction.IN)]
    lists = {(k.node, k.direction): (v.ids, v.total) for k, v in (await rm.neighbour_ids(graph, keys_, None)).items()}
    views = {n: (v.version, v.edge_counts) for n, v in (await rm.get_nodes(graph, nodes)).items()}
    return lists, views


async def seed_pairs(store: DynamoProjectionStore, graph: str, pairs: int) -> tuple[Events, int]:
    ev = Events(graph)
    shard = keys.shard_id(graph, 0)
    events = [ev.schema(), *[ev.create(f"a{i}") for i in range(pairs)], *[ev.create(f"b{i}") for i in range(pairs)]]
    return ev, await store.apply("p", shard, logged(events, 1, shard), apply_events)


async def test_a_batch_past_100_items_is_split_at_event_boundaries_with_the_checkpoint_per_transaction(
        dynamo: DynamoClient, monkeypatch: pytest.MonkeyPatch) -> None:
    store, rm = DynamoProjectionStore(dynamo), DynamoReadModel(dynamo)
    ev, position = await seed_pairs(store, "s", 40)
    shard = keys.shard_id("s", 0)
    links = [ev.link(f"a{i}", f"b{i}") for i in range(40)]  # 5 items each: 19 events a transaction
    sent = Transactions(monkeypatch, dynamo)
    assert await store.apply("p", shard, logged(links, position + 1, shard), apply_events) == position + 40
    checkpoints = sent.checkpoints("s")
    assert checkpoints == [position + 19, position + 38, position + 40]
    previous = position
    for number, checkpoint in enumerate(checkpoints, start=1):
        assert checkpoint is not None
        assert len(sent.sent[number - 1]) <= 100
        expected: set[tuple[str, str]] = set()
        for i in range(previous - position, checkpoint - position):  # whole events, in log order
            expected |= edge_items("s", f"a{i}", f"b{i}")
        assert sent.written(number) == expected
        previous = checkpoint
    assert await store.positions("p") == {shard: position + 40}
    out = AdjacencyKey("a39", Direction.OUT, "follows")
    assert (await rm.neighbour_ids("s", [out], None))[out] == (["b39"], 1)


async def test_a_failure_in_the_second_transaction_keeps_the_first_and_a_reapply_converges(
        dynamo: DynamoClient, monkeypatch: pytest.MonkeyPatch) -> None:
    store, rm = DynamoProjectionStore(dynamo), DynamoReadModel(dynamo)
    nodes = [f"a{i}" for i in range(40)] + [f"b{i}" for i in range(40)]
    shard = keys.shard_id("f", 0)
    ev, position = await seed_pairs(store, "f", 40)
    links = [ev.link(f"a{i}", f"b{i % 7}") for i in range(40)]  # b0..b6 collect many in-edges
    batch = logged(links, position + 1, shard)
    sent = Transactions(monkeypatch, dynamo, fail_on=(2,))
    with pytest.raises(Unavailable):
        await store.apply("p", shard, batch, apply_events)
    first = sent.checkpoints("f")[0]
    assert first is not None and position < first < position + 40
    assert await store.positions("p") == {shard: first}  # the first transaction's last event
    views = await rm.get_nodes("f", [f"a{i}" for i in range(40)])
    linked = {n for n, v in views.items() if v.edge_counts}
    assert linked == {f"a{i}" for i in range(first - position)}  # exactly the events it held

    sent.fail_on.clear()
    assert await store.apply("p", shard, batch, apply_events) == position + 40  # the projector retries
    # the same batch applied in one go elsewhere: the same read model
    other = DynamoProjectionStore(dynamo)
    ev2, _ = await seed_pairs(other, "g2", 40)
    shard2 = keys.shard_id("g2", 0)
    await other.apply("p", shard2, logged([ev2.link(f"a{i}", f"b{i % 7}") for i in range(40)], position + 1, shard2),
                      apply_events)
    assert await snapshot(rm, "f", nodes) == await snapshot(rm, "g2", nodes)
    b0 = AdjacencyKey("b0", Direction.IN, "follows")
    assert (await rm.neighbour_ids("f", [b0], None))[b0] == (["a35", "a28", "a21", "a14", "a7", "a0"], 6)


async def test_a_supernode_delete_is_split_neighbours_first_tombstone_last_and_a_crash_is_repaired(
        dynamo: DynamoClient, monkeypatch: pytest.MonkeyPatch) -> None:
    store, rm = DynamoProjectionStore(dynamo), DynamoReadModel(dynamo)
    ev = Events("d")
    shard = keys.shard_id("d", 0)
    spokes = [f"n{i:03}" for i in range(120)]
    position = await store.apply("p", shard, logged([ev.schema(), ev.create("hub"),
                                                     *[ev.create(s) for s in spokes]], 1, shard), apply_events)
    position = await store.apply("p", shard, logged([ev.link("hub", s) for s in spokes], position + 1, shard),
                                 apply_events)
    delete = logged([ev.delete("hub")], position + 1, shard)
    sent = Transactions(monkeypatch, dynamo, fail_on=(3,))
    with pytest.raises(Unavailable):
        await store.apply("p", shard, delete, apply_events)
    # 120 edge views, 120 emptied neighbour lists, 120 neighbour views, the hub's head and view
    assert sent.checkpoints("d") == [None, None, None]  # nothing committed a checkpoint yet
    hub_view = (keys.node_view_key("d", "hub")["pk"]["S"], "V")
    assert hub_view not in sent.written(1) | sent.written(2)
    assert await store.positions("p") == {shard: position}
    assert "hub" in await rm.get_nodes("d", ["hub"])  # not tombstoned: a replay will redo the delete
    half = await rm.neighbour_ids("d", [AdjacencyKey(s, Direction.IN, "follows") for s in spokes], None)
    assert 0 < len(half) < len(spokes)  # some neighbours were already cleaned

    sent.fail_on.clear()
    sent.sent.clear()
    assert await store.apply("p", shard, delete, apply_events) == position + 1  # the replay finishes it
    checkpoints = sent.checkpoints("d")
    assert checkpoints[-1] == position + 1 and set(checkpoints[:-1]) == {None} and len(checkpoints) >= 2
    assert hub_view in sent.written(len(checkpoints))
    assert await rm.get_nodes("d", ["hub"]) == {}
    assert await rm.neighbour_ids("d", [AdjacencyKey(s, Direction.IN, "follows") for s in spokes] +
                                  [AdjacencyKey("hub", Direction.OUT, "follows")], None) == {}
    assert all(not v.edge_counts for v in (await rm.get_nodes("d", spokes)).values())
    assert await rm.get_edge("d", "hub", "follows", "n007") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_only_one_lease_holder_and_an_expired_lease_is_taken_over(dynamo: DynamoClient) -> None:
    clock = Clock()
    a = DynamoProjectionLease(dynamo, projector="p", owner="A", ttl=10, clock=clock)
    b = DynamoProjectionLease(dynamo, projector="p", owner="B", ttl=10, clock=clock)
    shard = keys.shard_id("l", 0)
    assert await a.acquire(shard)
    assert not await b.acquire(shard)
    clock.now += 8
    assert await a.acquire(shard)  # renewed: 10 s from now
    clock.now += 8
    assert not await b.acquire(shard)
    clock.now += 3  # A stopped renewing: expired
    assert await b.acquire(shard)
    assert not await a.acquire(shard)
    await a.release(shard)  # not A's: nothing happens
    assert not await a.acquire(shard)
    await b.release(shard)
    clock.now += 4  # A tries a taken lease again a third of a ttl after it found it taken (or at its expiry)
    assert await a.acquire(shard)  # released: free
    assert not await b.acquire(shard)
    other = keys.shard_id("l2", 0)
    assert await b.acquire(other)  # leases are per shard


async def test_a_process_that_lost_its_lease_cannot_write(dynamo: DynamoClient) -> None:
    clock = Clock()
    lease_a = DynamoProjectionLease(dynamo, projector="p", owner="A", ttl=10, clock=clock)
    lease_b = DynamoProjectionLease(dynamo, projector="p", owner="B", ttl=10, clock=clock)
    store_a, store_b = DynamoProjectionStore(dynamo, lease=lease_a), DynamoProjectionStore(dynamo, lease=lease_b)
    rm = DynamoReadModel(dynamo, consistent=True)
    ev = Events("l")
    shard = keys.shard_id("l", 0)
    assert await lease_a.acquire(shard)
    assert await store_a.apply("p", shard, logged([ev.schema(), ev.create("a"), ev.create("b"), ev.create("c")],
                                                  1, shard), apply_events) == 4
    with pytest.raises(LeaseLost):  # B holds no lease: refused
        await store_b.apply("p", shard, logged([ev.link("a", "b")], 5, shard), apply_events)

    clock.now += 11  # A paused past its lease; B takes over and projects
    assert await lease_b.acquire(shard)
    assert await store_b.apply("p", shard, logged([ev.link("a", "b")], 5, shard), apply_events) == 5
    with pytest.raises(LeaseLost):  # A wakes up and tries to write what it decided
        await store_a.apply("p", shard, logged([ev.link("a", "b"), ev.link("a", "c")], 5, shard), apply_events)
    assert await store_a.positions("p") == {shard: 5}
    out = AdjacencyKey("a", Direction.OUT, "follows")
    assert (await rm.neighbour_ids("l", [out], None))[out] == (["b"], 1)

    # an expired lease nobody took over is no lease either
    clock.now += 11
    with pytest.raises(LeaseLost):
        await store_b.apply("p", shard, logged([ev.link("a", "c")], 6, shard), apply_events)

    # A gets the lease back: what B wrote meanwhile is read afresh, not from A's item cache
    await lease_b.release(shard)
    assert await lease_a.acquire(shard)
    assert await store_a.apply("p", shard, logged([ev.link("a", "c")], 6, shard), apply_events) == 6
    assert (await rm.neighbour_ids("l", [out], None))[out] == (["c", "b"], 2)
    assert (await rm.get_nodes("l", ["a"]))["a"].edge_counts == {("follows", Direction.OUT): 2}


async def test_two_writers_without_a_lease_cannot_both_move_the_checkpoint(
        dynamo: DynamoClient, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = DynamoProjectionStore(dynamo), DynamoProjectionStore(dynamo)
    rm = DynamoReadModel(dynamo, consistent=True)
    ev = Events("w")
    shard = keys.shard_id("w", 0)
    await first.apply("p", shard, logged([ev.schema(), ev.create("a"), ev.create("b")], 1, shard), apply_events)
    batch = logged([ev.link("a", "b")], 4, shard)
    decide = first._decide

    async def racing(*args: Any) -> Any:
        planned = await decide(*args)
        assert await second.apply("p", shard, batch, apply_events) == 4  # the other writer gets there first
        return planned

    monkeypatch.setattr(first, "_decide", racing)
    with pytest.raises(CheckpointMoved):
        await first.apply("p", shard, batch, apply_events)
    assert (await rm.get_nodes("w", ["a"]))["a"].edge_counts == {("follows", Direction.OUT): 1}  # not twice
    assert await first.positions("p") == {shard: 4}


async def test_the_item_cache_spares_rereading_what_the_projector_wrote(dynamo: DynamoClient) -> None:
    from infrastructure.persistence.dynamodb.capacity import capacity_scope

    store = DynamoProjectionStore(dynamo)
    ev = Events("c")
    shard = keys.shard_id("c", 0)
    position = await store.apply("p", shard, logged([ev.schema(), *[ev.create(f"n{i}") for i in range(50)]], 1,
                                                    shard), apply_events)
    with capacity_scope() as usage:
        await store.apply("p", shard, logged([ev.link("n0", f"n{i}") for i in range(1, 50)], position + 1, shard),
                          apply_events)
    # the checkpoint; then the 49 edge views and 50 heads never written (absent), in one call: the
    # 50 node views the first batch wrote come from the cache
    assert usage.calls_of("GetItem") == 1 and usage.calls_of("BatchGetItem") == 1
    cold = DynamoProjectionStore(dynamo, cache_bytes=0)
    with capacity_scope() as usage:
        await cold.apply("p", shard, logged([ev.link(f"n{i}", "n0") for i in range(1, 50)], position + 50, shard),
                         apply_events)
    assert usage.calls_of("BatchGetItem") == 2  # 49 edge views, 50 node views, 50 heads: 149 keys


async def test_a_held_lease_is_renewed_only_when_a_third_of_its_life_is_gone(dynamo: DynamoClient) -> None:
    """The projector asks every poll for every shard; storage sees a renewal every ttl/3."""
    clock = Clock()
    a = DynamoProjectionLease(dynamo, projector="p", owner="A", ttl=9, clock=clock)
    shard = keys.shard_id("r", 0)
    with capacity_scope() as usage:
        assert await a.acquire(shard)
        for _ in range(10):
            clock.now += 0.25
            assert await a.acquire(shard)  # 2.5 s in: still two thirds left
        assert usage.calls_of("PutItem") == 1
        clock.now += 1  # 3.5 s in: renew
        assert await a.acquire(shard)
        assert usage.calls_of("PutItem") == 2
