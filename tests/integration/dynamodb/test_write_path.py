"""The command application on the DynamoDB write store (moto): what each command sends
in its one TransactWriteItems, the largest batches that fit, the log's commit records,
idempotent retries, idempotency expiry and purge, background cascades, acyclicity."""

from __future__ import annotations

import random
import string as strings
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from command_service.app.commands.add_edge import AddEdge
from command_service.app.commands.batch_write import BatchWrite
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.commands.remove_edge import RemoveEdge
from command_service.app.common import TransactionLimits
from command_service.bootstrap import build_for_tests
from deploy.dynamodb.tables import PK
from domain.edge import Direction
from domain.errors import Reason, RuleViolated, ValidationFailed
from domain.node import Node
from infrastructure.persistence.dynamodb import keys as k
from infrastructure.persistence.dynamodb.attributes import num, string
from infrastructure.persistence.dynamodb.capacity import capacity_scope
from infrastructure.persistence.dynamodb.client import DynamoClient
from infrastructure.persistence.dynamodb.event_log import MAX_RECORD_BYTES
from infrastructure.persistence.dynamodb.write_store import DynamoWriteStore
from tests.command_samples import GRAPH, apply_sample_schema, edge, user
from tests.contract.suites.idempotency_store import pending
from tests.contract.suites.write_fixtures import causation, schema

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

G = GRAPH


class MovableClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def sent(dynamo: DynamoClient, monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    real = dynamo._client.transact_write_items
    calls: list[list[dict[str, Any]]] = []

    async def spy(**params: Any) -> Any:
        calls.append(params["TransactItems"])
        return await real(**params)

    monkeypatch.setattr(dynamo._client, "transact_write_items", spy)
    return calls


async def make_app(dynamo: DynamoClient, **limits: int) -> Any:
    store = DynamoWriteStore(dynamo)
    app = build_for_tests(store, limits=TransactionLimits(**limits))
    await app.dispatch(apply_sample_schema())
    return app


@pytest.fixture
async def app(dynamo: DynamoClient) -> Any:
    app = await make_app(dynamo)
    yield app
    await app.close()


def rid() -> str:
    return str(uuid.uuid4())


def with_id(command: Any) -> Any:
    return replace(command, request_id=rid())


def layout(items: list[dict[str, Any]]) -> list[str]:
    """Each item as "Operation sk-family", sorted: what a command's transaction holds."""
    out = []
    for item in items:
        ((operation, body),) = item.items()
        sk = (body.get("Key") or body["Item"])["sk"]["S"]
        out.append(f"{operation} {'record' if sk.isdigit() and 'log' in body['TableName'] else sk.split('#')[0]}")
    return sorted(out)


async def test_the_items_each_command_commits(app, sent):
    await app.dispatch(with_id(user("a")))
    assert layout(sent[-1]) == ["Put N", "Put R", "Put record", "Update K", "Update head"]  # 5
    await app.dispatch(with_id(user("b", email="b@example.com")))
    assert layout(sent[-1]) == ["Put N", "Put R", "Put U", "Put record", "Update K", "Update head"]  # + the claim
    await app.dispatch(user("c"))
    await app.dispatch(AddEdge(G, "a", "follows", "b", request_id=rid()))
    assert layout(sent[-1]) == ["ConditionCheck N", "ConditionCheck N", "Put I", "Put O", "Put R", "Put record",
                                "Update C", "Update C", "Update K", "Update head"]  # 10
    await app.dispatch(AddEdge(G, "a", "friend", "b", request_id=rid()))  # symmetric: the mirror edge too
    assert len(sent[-1]) == 14
    await app.dispatch(AddEdge(G, "a", "manages", "c", request_id=rid()))  # acyclic: + the topology version
    assert len(sent[-1]) == 11 and "Update V" in layout(sent[-1])
    await app.dispatch(RemoveEdge(G, "a", "follows", "b", request_id=rid()))
    assert layout(sent[-1]) == ["Delete I", "Delete O", "Put R", "Put record", "Update C", "Update C", "Update K",
                                "Update head"]  # 8
    calls = len(sent)
    with capacity_scope() as usage:
        await app.dispatch(with_id(user("d")))
    assert len(sent) == calls + 1 and usage.calls_of("TransactWriteItems") == 1


async def test_the_largest_batches_of_many_to_many_edges_that_fit(app, sent):
    """6 items per edge between distinct endpoints (+4 per commit): 16 edges; a star (one
    source, distinct targets) 4 per edge (+6): 23 edges. One more is refused, unsplit."""
    await app.dispatch(BatchWrite(G, tuple(user(f"u{i}") for i in range(48))))

    def pairs(n: int) -> BatchWrite:
        return BatchWrite(G, tuple(edge(f"u{2 * i}", "follows", f"u{2 * i + 1}") for i in range(n)), request_id=rid())

    def star(hub: str, n: int) -> BatchWrite:
        return BatchWrite(G, tuple(edge(hub, "follows", f"u{i + 24}") for i in range(n)), request_id=rid())

    calls = len(sent)
    with pytest.raises(ValidationFailed) as err:
        await app.dispatch(pairs(17))
    assert err.value.reason == Reason.BATCH_TOO_LARGE and err.value.metadata == {"limit": "100", "needed": "106"}
    assert len(sent) == calls  # refused before anything was sent
    await app.dispatch(pairs(16))
    assert len(sent[-1]) == 100
    with pytest.raises(ValidationFailed) as err:
        await app.dispatch(star("u0", 24))
    assert err.value.metadata["needed"] == "102"
    await app.dispatch(star("u1", 23))
    assert len(sent[-1]) == 98


async def test_a_batch_s_events_are_one_commit_record(app, dynamo, sent):
    store = app.store
    head = await store.head(G)
    await app.dispatch(BatchWrite(G, tuple(user(f"n{i}") for i in range(40)), request_id=rid()))
    records = [item for item in sent[-1] if "Put" in item and item["Put"]["TableName"] == dynamo.tables.log]
    assert len(records) == 1 and records[0]["Put"]["Item"]["sk"] == string(k.log_record_sk(head + 40))
    log = store.event_log()
    shard = log.shard_of(G)
    assert [le.position for le in await log.read_after(shard, head + 17, 5)] == list(range(head + 18, head + 23))
    assert [le.event.aggregate_id for le in await log.read_after(shard, head, 100)] == [f"n{i}" for i in range(40)]


async def test_events_past_350_kb_are_split_into_several_records(dynamo):
    store = DynamoWriteStore(dynamo)
    async with store.unit_of_work() as uow:
        await uow.schemas.save(schema())
        await uow.commit()
    rng = random.Random(7)
    names = {f"big{i}": "".join(rng.choices(strings.ascii_letters + strings.digits, k=60_000)) for i in range(12)}
    async with store.unit_of_work() as uow:
        s = await uow.schemas.get(G)
        for node_id, name in names.items():
            await uow.nodes.add(Node.create(graph=G, node_id=node_id, type_name="User", properties={"name": name},
                                            schema=s, causation=causation()))
        committed = await uow.commit()
    shard = store.event_log().shard_of(G)
    assert committed.positions == {shard: 13}
    page = await dynamo.query(dynamo.tables.log, key_condition="#pk = :pk", names={"#pk": PK},
                              values={":pk": string(k.log_partition(G, 0))}, consistent=True)
    records = [item for item in page.items if item["sk"]["S"] != k.LOG_HEAD_SK]
    assert 3 <= len(records) <= 4 and all(len(r["events"]["B"]) <= MAX_RECORD_BYTES for r in records)
    logged = await store.event_log().read_after(shard, 1, 100)
    assert [le.position for le in logged] == list(range(2, 14))
    assert [(le.event.aggregate_id, le.event.properties["name"]) for le in logged] == list(names.items())
    for after in range(1, 13):  # from the middle of any record
        assert [le.position for le in await store.event_log().read_after(shard, after, 2)] == \
            list(range(after + 1, min(after + 3, 14)))


async def test_a_retried_request_gets_the_stored_response_and_writes_nothing(app, sent):
    command = with_id(user("a"))
    first = await app.dispatch(command)
    head, calls = await app.store.head(G), len(sent)
    again = await app.dispatch(command)
    assert again == first and again.consistency_token == first.consistency_token
    assert len(sent) == calls and await app.store.head(G) == head


async def test_an_expired_idempotency_record_is_gone_and_its_id_reusable(dynamo):
    clock = MovableClock()
    store = DynamoWriteStore(dynamo, clock=clock)
    created = clock.current
    async with store.unit_of_work() as uow:
        await uow.idempotency.put(pending("r1", created_at=created, response=b"old"))
        await uow.commit()
    stored = await dynamo.get_item(dynamo.tables.write, k.idempotency_key(G, "r1"), consistent=True)
    assert int(stored["expires_at"]["N"]) >= (created + timedelta(hours=24)).timestamp()
    clock.current = created + timedelta(hours=23, minutes=59)
    async with store.unit_of_work() as uow:
        assert (await uow.idempotency.get(G, "r1")).response == b"old"  # kept >= 24 h
    clock.current = created + timedelta(hours=24, seconds=1)  # TTL has not deleted it yet
    async with store.unit_of_work() as uow:
        assert await uow.idempotency.get(G, "r1") is None
        await uow.idempotency.put(pending("r1", created_at=clock.current, response=b"new"))
        await uow.commit()
    async with store.unit_of_work() as uow:
        assert (await uow.idempotency.get(G, "r1")).response == b"new"


async def test_purge_deletes_the_records_this_process_committed_and_no_newer_one(dynamo):
    clock = MovableClock()
    t0 = clock.current
    store = DynamoWriteStore(dynamo, clock=clock)
    async with store.unit_of_work() as uow:
        for i, age in enumerate((0, 1, 3)):
            await uow.idempotency.put(pending(f"r{i}", created_at=t0 + timedelta(hours=age)))
        await uow.commit()
    # r1's id was used again since (a record written by another process, long after)
    await dynamo.put_item(dynamo.tables.write, {**k.idempotency_key(G, "r1"), "created": num(10**17),
                                                "operation": string("X"), "fingerprint": string("f"),
                                                "response": {"B": b""}})
    assert await store.purge_idempotency(t0) == 0
    assert await store.purge_idempotency(t0 + timedelta(hours=2)) == 1  # r0; r1 is not the one remembered
    assert await store.purge_idempotency(t0 + timedelta(hours=2)) == 0
    for request_id, present in (("r0", False), ("r1", True), ("r2", True)):
        item = await dynamo.get_item(dynamo.tables.write, k.idempotency_key(G, request_id), consistent=True)
        assert (item is not None) is present


async def test_a_node_with_more_edges_than_one_transaction_holds_is_cascaded_in_the_background(dynamo):
    app = await make_app(dynamo, max_edges_per_transaction=10)
    try:
        await app.dispatch(BatchWrite(G, (user("hub"), *(user(f"n{i}") for i in range(13)))))
        for start in range(0, 13, 5):  # symmetric and CASCADE: 26 stored edges touch the hub
            await app.dispatch(BatchWrite(G, tuple(edge(f"n{i}", "friend", "hub") for i in range(start,
                                                                                                  min(13, start + 5)))))
        await app.dispatch(AddEdge(G, "hub", "manages", "n0"))
        result = await app.dispatch(DeleteNode(G, "hub"))
        assert result.cascade_pending and result.removed_edges == 0
        await app.cascade_worker.drain()
        async with app.store.unit_of_work() as uow:
            assert await uow.edges.counts_for_node(G, "hub") == {}
            assert await uow.edges.list_for_node(G, "hub", Direction.BOTH) == []
            for i in range(13):
                assert await uow.edges.counts_for_node(G, f"n{i}") == {}
            assert await uow.edges.count_of_type(G, "friend") == 0
            assert await uow.edges.count_of_type(G, "manages") == 0
            assert await uow.nodes.count_of_type(G, "User") == 13
            assert await uow.cascades.next() is None
        log = app.store.event_log()
        removed = [le for le in await log.read_after(log.shard_of(G), 0, 1000) if le.event.type == "EdgeRemoved"]
        assert len(removed) == 27
    finally:
        await app.close()


async def test_acyclic_edges_are_checked_over_out_neighbours(app):
    await app.dispatch(BatchWrite(G, tuple(user(n) for n in "abcd")))
    for source, target in (("a", "b"), ("b", "c"), ("c", "d")):
        await app.dispatch(AddEdge(G, source, "manages", target))
    with pytest.raises(RuleViolated) as err:
        await app.dispatch(AddEdge(G, "d", "manages", "a"))
    assert err.value.reason == Reason.CYCLE_DETECTED
    await app.dispatch(AddEdge(G, "a", "manages", "d"))  # a shortcut closes no cycle
    async with app.store.unit_of_work() as uow:
        assert await uow.edges.topology_version(G, "manages") == 4


async def test_deleting_a_node_with_as_many_edges_as_the_store_suggests_fits_one_transaction(dynamo, sent):
    limit = DynamoWriteStore.max_edges_per_transaction
    app = await make_app(dynamo, max_edges_per_transaction=limit)
    try:
        await app.dispatch(BatchWrite(G, (user("hub", email="hub@example.com", badge=7),
                                          *(user(f"n{i}") for i in range(limit)))))
        for start in range(0, limit, 10):
            await app.dispatch(BatchWrite(G, tuple(edge("hub", "manages", f"n{i}")
                                                   for i in range(start, min(limit, start + 10)))))
        result = await app.dispatch(with_id(DeleteNode(G, "hub")))
        assert (result.removed_edges, result.cascade_pending) == (limit, False)
        assert len(sent[-1]) == 3 * limit + 9 <= 100  # + node, 2 claims, counter, 2 type counters, 3 for the log
    finally:
        await app.close()
