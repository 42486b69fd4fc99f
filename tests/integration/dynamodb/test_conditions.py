"""Every condition the DynamoDB unit of work puts in its TransactWriteItems, one by one.

moto does not isolate concurrent requests, so the races the contract suites run on SQLite
prove nothing here (tests/contract/test_dynamodb_adapters.py skips those two). Instead,
each test lets a unit of work read what its decision rests on, changes that behind its
back (with the client directly, or with another unit of work that commits first), and
shows that (1) the condition is in the transaction the commit sends, (2) it refuses the
commit with the domain error it stands for, and (3) nothing of the transaction landed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from domain.edge import Direction, Edge
from domain.errors import AlreadyExists, DomainError, NotFound, Reason, RuleViolated, Unavailable, VersionConflict
from domain.node import Node
from domain.ports import CascadeJob, CommitResult
from domain.values import EdgeKey
from infrastructure.persistence.dynamodb import keys as k
from infrastructure.persistence.dynamodb.attributes import get_int, key_tuple, num, string
from infrastructure.persistence.dynamodb.capacity import capacity_scope
from infrastructure.persistence.dynamodb.client import DynamoClient, RetryPolicy
from infrastructure.persistence.dynamodb.write_store import DynamoWriteStore
from tests.command_samples import GRAPH
from tests.contract.suites.idempotency_store import pending
from tests.contract.suites.write_fixtures import T0, causation, schema

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

G = GRAPH


class Clock:
    def now(self):
        return T0 + timedelta(minutes=1)


@pytest.fixture
def sent(dynamo: DynamoClient, monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """The TransactItems of every TransactWriteItems the client sends, in order."""
    real = dynamo._client.transact_write_items
    calls: list[list[dict[str, Any]]] = []

    async def spy(**params: Any) -> Any:
        calls.append(params["TransactItems"])
        return await real(**params)

    monkeypatch.setattr(dynamo._client, "transact_write_items", spy)
    return calls


@pytest.fixture
async def store(dynamo: DynamoClient) -> DynamoWriteStore:
    store = DynamoWriteStore(dynamo, clock=Clock())
    async with store.unit_of_work() as uow:
        await uow.schemas.save(schema())
        await uow.commit()
    return store


async def create(store: DynamoWriteStore, *node_ids: str, node_type: str = "User", **props: Any) -> None:
    async with store.unit_of_work() as uow:
        s = await uow.schemas.get(G)
        for node_id in node_ids:
            name = {"name": node_id} if node_type == "User" else {"title": node_id}
            await uow.nodes.add(Node.create(graph=G, node_id=node_id, type_name=node_type,
                                            properties={**name, **props}, schema=s, causation=causation()))
        await uow.commit()


async def link(store: DynamoWriteStore, source: str, edge_type: str, target: str) -> None:
    async with store.unit_of_work() as uow:
        await uow.edges.add(Edge.create(graph=G, source=source, type_name=edge_type, target=target, properties={},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await uow.commit()


def find(items: list[dict[str, Any]], key: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The operation and body of the transaction item on ``key``."""
    for item in items:
        ((operation, body),) = item.items()
        item_key = body.get("Key") or {"pk": body["Item"]["pk"], "sk": body["Item"]["sk"]}
        if key_tuple(item_key) == key_tuple(key):
            return operation, body
    raise AssertionError(f"no item on {key_tuple(key)} in the transaction")


async def everything(dynamo: DynamoClient) -> dict[str, list[Any]]:
    """Every item of the write and log tables, in a comparable form."""
    out: dict[str, list[Any]] = {}
    for table in (dynamo.tables.write, dynamo.tables.log):
        items: list[Any] = []
        start = None
        while True:
            page = await dynamo.scan(table, start_key=start, consistent=True)
            items += page.items
            start = page.last_key
            if start is None:
                break
        out[table] = sorted(items, key=lambda item: key_tuple(item))
    return out


def no_aws_detail(error: BaseException) -> None:
    assert isinstance(error, DomainError) and error.__cause__ is None
    assert "Conditional" not in str(error) and "Transaction" not in str(error)


# --- one condition each ------------------------------------------------------------------------

async def test_a_stale_node_version_is_refused_by_the_version_condition(store, dynamo, sent):
    await create(store, "a")
    async with store.unit_of_work() as uow:
        a = await uow.nodes.get(G, "a")
        a.update(properties={"age": 1}, update_mask=None, expected_version=None, schema=await uow.schemas.get(G),
                 causation=causation())
        await uow.nodes.save(a)
        async with store.unit_of_work() as other:  # another writer updates it first
            b = await other.nodes.get(G, "a")
            b.update(properties={"age": 2}, update_mask=None, expected_version=None,
                     schema=await other.schemas.get(G), causation=causation())
            await other.nodes.save(b)
            await other.commit()
        before = await everything(dynamo)
        with pytest.raises(VersionConflict) as err:
            await uow.commit()
    assert err.value.reason == Reason.VERSION_CONFLICT
    assert err.value.metadata == {"resource": f"graphs/{G}/nodes/a", "current_etag": '"2"', "request_etag": '"1"'}
    no_aws_detail(err.value)
    operation, body = find(sent[-1], k.node_key(G, "a"))
    assert (operation, body["ConditionExpression"], body["ExpressionAttributeValues"][":expected"]) == \
        ("Put", "#v = :expected", num(1))
    assert await everything(dynamo) == before


async def test_a_second_many_to_one_edge_is_refused_by_the_counter_condition(store, dynamo, sent):
    await create(store, "u")
    await create(store, "team", "club", node_type="Group")
    async with store.unit_of_work() as uow:
        assert await uow.edges.count(G, "u", "member_of", Direction.OUT) == 0  # the rule's read
        await uow.edges.add(Edge.create(graph=G, source="u", type_name="member_of", target="team", properties={},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await link(store, "u", "member_of", "club")  # another writer's edge moves the counter to 1
        before = await everything(dynamo)
        with pytest.raises(RuleViolated) as err:
            await uow.commit()
    assert err.value.reason == Reason.CARDINALITY_VIOLATED
    assert "already has 1" in err.value.message and err.value.metadata["subject"] == f"graphs/{G}/nodes/u"
    operation, body = find(sent[-1], k.edge_counter_key(G, "u", "member_of", Direction.OUT))
    assert (operation, body["UpdateExpression"], body["ConditionExpression"]) == \
        ("Update", "ADD #c :d", "attribute_not_exists(#c) OR #c <= :max")
    assert body["ExpressionAttributeValues"] == {":d": num(1), ":max": num(0)}
    # the target's IN counter is not capped (MANY_TO_ONE): no condition
    assert "ConditionExpression" not in find(sent[-1], k.edge_counter_key(G, "team", "member_of", Direction.IN))[1]
    assert await everything(dynamo) == before


async def test_a_one_to_many_edge_is_capped_on_the_target(store, dynamo, sent):
    await create(store, "u", "v")
    await create(store, "team", node_type="Group")
    async with store.unit_of_work() as uow:
        await uow.edges.add(Edge.create(graph=G, source="u", type_name="owns", target="team", properties={},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await link(store, "v", "owns", "team")
        with pytest.raises(RuleViolated) as err:
            await uow.commit()
    assert err.value.reason == Reason.CARDINALITY_VIOLATED
    assert find(sent[-1], k.edge_counter_key(G, "team", "owns", Direction.IN))[1]["ConditionExpression"] == \
        "attribute_not_exists(#c) OR #c <= :max"
    assert "ConditionExpression" not in find(sent[-1], k.edge_counter_key(G, "u", "owns", Direction.OUT))[1]


async def test_a_unique_value_claimed_behind_its_back_is_refused(store, dynamo, sent):
    async with store.unit_of_work() as uow:
        assert await uow.nodes.unique_holder(G, "User", "email", "z@example.com") is None
        await uow.nodes.add(Node.create(graph=G, node_id="a", type_name="User",
                                        properties={"name": "a", "email": "z@example.com"},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await uow.nodes.claim_unique(G, "User", "email", "z@example.com", "a")
        claim = k.unique_claim_key(G, "User", "email", "z@example.com")
        await dynamo.put_item(dynamo.tables.write, {**claim, "holder": string("b")})  # another writer's claim
        before = await everything(dynamo)
        with pytest.raises(RuleViolated) as err:
            await uow.commit()
    assert err.value.reason == Reason.UNIQUE_VIOLATED and "'b'" in err.value.message
    operation, body = find(sent[-1], claim)
    assert (operation, body["ConditionExpression"], body["Item"]["holder"]) == \
        ("Put", "attribute_not_exists(#pk) OR #h = :me", string("a"))
    assert await everything(dynamo) == before


async def test_a_released_claim_is_deleted_only_while_it_is_still_held(store, dynamo, sent):
    async with store.unit_of_work() as uow:
        await uow.nodes.claim_unique(G, "User", "email", "z@example.com", "a")
        await uow.commit()
    async with store.unit_of_work() as uow:
        await uow.nodes.release_unique(G, "User", "email", "z@example.com", "a")
        claim = k.unique_claim_key(G, "User", "email", "z@example.com")
        await dynamo.put_item(dynamo.tables.write, {**claim, "holder": string("b")})
        with pytest.raises(VersionConflict):
            await uow.commit()
    operation, body = find(sent[-1], claim)
    assert (operation, body["ConditionExpression"], body["ExpressionAttributeValues"]) == \
        ("Delete", "#h = :stored", {":stored": string("a")})
    assert (await dynamo.get_item(dynamo.tables.write, claim, consistent=True))["holder"] == string("b")


async def test_a_topology_version_moved_by_another_writer_is_refused(store, dynamo, sent):
    await create(store, "a", "b")
    async with store.unit_of_work() as uow:
        version = await uow.edges.topology_version(G, "manages")
        uow.edges.bump_topology(G, "manages", version)
        await uow.edges.add(Edge.create(graph=G, source="a", type_name="manages", target="b", properties={},
                                        schema=await uow.schemas.get(G), causation=causation()))
        async with store.unit_of_work() as other:  # another acyclic write of the type commits first
            other.edges.bump_topology(G, "manages", await other.edges.topology_version(G, "manages"))
            await other.commit()
        before = await everything(dynamo)
        with pytest.raises(VersionConflict) as err:
            await uow.commit()
    assert err.value.reason == Reason.TOPOLOGY_VERSION_CONFLICT
    assert (err.value.metadata["current_version"], err.value.metadata["expected_version"]) == ("1", "0")
    operation, body = find(sent[-1], k.topology_key(G, "manages"))
    assert (operation, body["UpdateExpression"], body["ConditionExpression"]) == \
        ("Update", "SET #v = :next", "attribute_not_exists(#pk)")
    assert await everything(dynamo) == before
    async with store.unit_of_work() as uow:  # from 1 on, the condition is on the stored version
        uow.edges.bump_topology(G, "manages", await uow.edges.topology_version(G, "manages"))
        await uow.commit()
    _, body = find(sent[-1], k.topology_key(G, "manages"))
    assert body["ConditionExpression"] == "#v = :expected"
    assert body["ExpressionAttributeValues"] == {":expected": num(1), ":next": num(2)}


async def test_an_endpoint_tombstoned_after_it_was_read_is_refused(store, dynamo, sent):
    await create(store, "a", "b")
    async with store.unit_of_work() as uow:
        found = await uow.nodes.get_many(G, ["a", "b"])
        assert not found["b"].deleted  # the rule's read
        await uow.edges.add(Edge.create(graph=G, source="a", type_name="follows", target="b", properties={},
                                        schema=await uow.schemas.get(G), causation=causation()))
        async with store.unit_of_work() as other:  # another writer deletes b
            b = await other.nodes.get(G, "b")
            b.delete(expected_version=None, causation=causation())
            await other.nodes.save(b)
            await other.commit()
        before = await everything(dynamo)
        with pytest.raises(RuleViolated) as err:
            await uow.commit()
    assert err.value.reason == Reason.ENDPOINT_MISSING
    assert err.value.message == f"edge target graphs/{G}/nodes/b does not exist"
    for node in ("a", "b"):
        operation, body = find(sent[-1], k.node_key(G, node))
        assert (operation, body["ConditionExpression"]) == ("ConditionCheck", "attribute_exists(#pk) AND #d = :false")
    assert await everything(dynamo) == before


async def test_an_endpoint_written_in_the_same_transaction_is_not_checked_twice(store, sent):
    async with store.unit_of_work() as uow:
        s = await uow.schemas.get(G)
        for node_id in ("a", "b"):
            await uow.nodes.add(Node.create(graph=G, node_id=node_id, type_name="User", properties={"name": node_id},
                                            schema=s, causation=causation()))
        await uow.edges.add(Edge.create(graph=G, source="a", type_name="follows", target="b", properties={},
                                        schema=s, causation=causation()))
        await uow.commit()
    for node in ("a", "b"):
        operation, body = find(sent[-1], k.node_key(G, node))
        assert (operation, body["ConditionExpression"]) == ("Put", "attribute_not_exists(#pk)")


async def test_a_node_created_concurrently_already_exists(store, dynamo, sent):
    async with store.unit_of_work() as uow:
        await uow.nodes.add(Node.create(graph=G, node_id="a", type_name="User", properties={"name": "a"},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await create(store, "a")
        before = await everything(dynamo)
        with pytest.raises(AlreadyExists) as err:
            await uow.commit()
    assert err.value.reason == Reason.NODE_ALREADY_EXISTS and err.value.resource_name == f"graphs/{G}/nodes/a"
    assert find(sent[-1], k.node_key(G, "a"))[1]["ConditionExpression"] == "attribute_not_exists(#pk)"
    assert await everything(dynamo) == before


async def test_an_edge_added_concurrently_already_exists(store, dynamo, sent):
    await create(store, "a", "b")
    async with store.unit_of_work() as uow:
        await uow.edges.add(Edge.create(graph=G, source="a", type_name="follows", target="b", properties={},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await link(store, "a", "follows", "b")
        before = await everything(dynamo)
        with pytest.raises(AlreadyExists) as err:
            await uow.commit()
    assert err.value.reason == Reason.EDGE_ALREADY_EXISTS
    out_key, in_key = k.edge_item_keys(EdgeKey(G, "a", "follows", "b"))
    for key in (out_key, in_key):
        assert find(sent[-1], key)[1]["ConditionExpression"] == "attribute_not_exists(#pk)"
    assert await everything(dynamo) == before


async def test_an_edge_removed_concurrently_is_not_found_and_counters_stay_true(store, dynamo, sent):
    await create(store, "a", "b")
    await link(store, "a", "follows", "b")

    async def remove(uow) -> None:
        edge = await uow.edges.get(EdgeKey(G, "a", "follows", "b"))
        edge.remove(causation())
        await uow.edges.remove_many([edge])

    async with store.unit_of_work() as uow:
        await remove(uow)
        async with store.unit_of_work() as other:
            await remove(other)
            await other.commit()
        before = await everything(dynamo)
        with pytest.raises(NotFound) as err:
            await uow.commit()
    assert err.value.reason == Reason.EDGE_NOT_FOUND
    for key in k.edge_item_keys(EdgeKey(G, "a", "follows", "b")):
        operation, body = find(sent[-1], key)
        assert (operation, body["ConditionExpression"]) == ("Delete", "attribute_exists(#pk)")
    assert await everything(dynamo) == before
    async with store.unit_of_work() as uow:
        assert await uow.edges.count(G, "a", "follows", Direction.OUT) == 0
        assert await uow.edges.count_of_type(G, "follows") == 0


async def test_a_schema_applied_concurrently_is_a_version_conflict(store, dynamo, sent):
    async def reapply(uow) -> None:
        current = await uow.schemas.get(G)
        current.apply(current.node_types.values(), current.edge_types.values(), expected_version=1,
                      type_in_use=lambda kind, name: False, causation=causation())
        await uow.schemas.save(current)

    async with store.unit_of_work() as uow:
        await reapply(uow)
        async with store.unit_of_work() as other:
            await reapply(other)
            await other.commit()
        before = await everything(dynamo)
        with pytest.raises(VersionConflict) as err:
            await uow.commit()
    assert err.value.reason == Reason.SCHEMA_VERSION_CONFLICT
    assert find(sent[-1], k.schema_key(G, 2))[1]["ConditionExpression"] == "attribute_not_exists(#pk)"
    assert await everything(dynamo) == before


async def test_a_request_id_committed_concurrently_is_aborted(store, dynamo, sent):
    async with store.unit_of_work() as uow:
        assert await uow.idempotency.get(G, "r1") is None
        await uow.nodes.add(Node.create(graph=G, node_id="a", type_name="User", properties={"name": "a"},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await uow.idempotency.put(pending("r1"))
        async with store.unit_of_work() as other:  # a retry of the same request, committed first
            await other.idempotency.put(pending("r1", response=b"first"))
            await other.commit()
        before = await everything(dynamo)
        with pytest.raises(VersionConflict) as err:  # ABORTED: the caller's retry gets the stored response
            await uow.commit()
    assert err.value.metadata == {"request_id": "r1"}
    operation, body = find(sent[-1], k.idempotency_key(G, "r1"))
    assert (operation, body["ConditionExpression"]) == ("Put", "attribute_not_exists(#pk) OR #e <= :now")
    assert await everything(dynamo) == before


# --- the log head: retried, bounded ------------------------------------------------------------

async def test_a_log_head_moved_by_another_writer_is_retried_with_the_next_positions(store, dynamo, monkeypatch):
    real = dynamo._client.transact_write_items
    calls: list[list[dict[str, Any]]] = []

    async def another_writer_first(**params: Any) -> Any:
        calls.append(params["TransactItems"])
        if len(calls) == 1:  # between our head read and our transaction, another writer commits
            await create(store, "theirs")
        return await real(**params)

    shard = store.event_log().shard_of(G)
    head = await store.head(G)
    rendered: list[CommitResult] = []
    monkeypatch.setattr(dynamo._client, "transact_write_items", another_writer_first)
    async with store.unit_of_work() as uow:
        await uow.nodes.add(Node.create(graph=G, node_id="ours", type_name="User", properties={"name": "ours"},
                                        schema=await uow.schemas.get(G), causation=causation()))
        await uow.idempotency.put(pending("r1", rendered=rendered))
        committed = await uow.commit()
    assert len(calls) == 3  # ours (head moved), theirs, ours again
    _, body = find(calls[0], k.log_head_key(G, 0))
    assert (body["ConditionExpression"], body["ExpressionAttributeValues"]) == \
        ("#s = :n", {":n": num(head), ":next": num(head + 1)})
    _, body = find(calls[2], k.log_head_key(G, 0))
    assert body["ExpressionAttributeValues"] == {":n": num(head + 1), ":next": num(head + 2)}
    assert committed.positions == {shard: head + 2}
    assert [r.positions for r in rendered] == [{shard: head + 1}, {shard: head + 2}]  # rendered again
    async with store.unit_of_work() as uow:
        assert (await uow.idempotency.get(G, "r1")).response == f'{{"{shard}": {head + 2}}}'.encode()
    logged = await store.event_log().read_after(shard, head, 10)
    assert [(le.position, le.event.aggregate_id) for le in logged] == [(head + 1, "theirs"), (head + 2, "ours")]


async def test_a_log_head_that_keeps_moving_gives_up_unavailable_and_writes_nothing(dynamo, monkeypatch):
    store = DynamoWriteStore(dynamo, clock=Clock(), commit_retry=RetryPolicy(max_attempts=3, base_delay=0.001,
                                                                               max_delay=0.002))
    async with store.unit_of_work() as uow:
        await uow.schemas.save(schema())
        await uow.commit()
    real = dynamo._client.transact_write_items
    mine: list[int] = []

    async def always_first(**params: Any) -> Any:
        if any("ours" in str(item) for item in params["TransactItems"]):
            mine.append(1)
            await create(store, f"theirs{len(mine)}")
        return await real(**params)

    monkeypatch.setattr(dynamo._client, "transact_write_items", always_first)
    with pytest.raises(Unavailable) as err:
        async with store.unit_of_work() as uow:
            await uow.nodes.add(Node.create(graph=G, node_id="ours", type_name="User", properties={"name": "ours"},
                                            schema=await uow.schemas.get(G), causation=causation()))
            await uow.commit()
    assert err.value.reason == Reason.STORAGE_UNAVAILABLE and len(mine) == 3
    monkeypatch.setattr(dynamo._client, "transact_write_items", real)
    async with store.unit_of_work() as uow:
        assert await uow.nodes.get(G, "ours") is None
    assert await store.head(G) == 4  # the schema and the three others, gap-free


async def test_a_transaction_conflict_is_retried(store, dynamo, monkeypatch):
    real = dynamo._client.transact_write_items
    calls: list[int] = []

    async def conflict_once(**params: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            reasons = [{"Code": "TransactionConflict", "Message": "secret"}] + \
                [{"Code": "None"}] * (len(params["TransactItems"]) - 1)
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "secret"},
                               "CancellationReasons": reasons}, "TransactWriteItems")
        return await real(**params)

    monkeypatch.setattr(dynamo._client, "transact_write_items", conflict_once)
    await create(store, "a")
    assert len(calls) == 2 and await store.head(G) == 2


# --- atomicity ---------------------------------------------------------------------------------

async def test_a_failed_condition_writes_no_item_of_the_transaction(dynamo, sent):
    """A unit of work that touches every kind of item, in a graph with no log yet (so the
    shard registry is in it too), fails on its last condition: none of its items land."""
    store = DynamoWriteStore(dynamo, clock=Clock())
    fresh = "fresh"
    async with store.unit_of_work() as uow:
        s = schema(fresh)
        await uow.schemas.save(s)
        for node_id in ("a", "b"):
            node = Node.create(graph=fresh, node_id=node_id, type_name="User",
                               properties={"name": node_id, "email": f"{node_id}@example.com"}, schema=s,
                               causation=causation())
            await uow.nodes.add(node)
            await uow.nodes.claim_unique(fresh, "User", "email", f"{node_id}@example.com", node_id)
        uow.edges.bump_topology(fresh, "manages", await uow.edges.topology_version(fresh, "manages"))
        manages = Edge.create(graph=fresh, source="a", type_name="manages", target="b", properties={}, schema=s,
                              causation=causation())
        await uow.edges.add(manages)
        friend = Edge.create(graph=fresh, source="a", type_name="friend", target="b", properties={}, schema=s,
                             causation=causation())
        await uow.edges.add(friend)
        await uow.edges.add(friend.mirror(causation()))
        await uow.cascades.enqueue(CascadeJob(fresh, "zombie", "req", "tp", T0))
        await uow.idempotency.put(pending("r1", graph=fresh))
        # another writer bumps the topology version in between
        await dynamo.put_item(dynamo.tables.write, {**k.topology_key(fresh, "manages"), "v": num(1)})
        before = await everything(dynamo)
        with pytest.raises(VersionConflict) as err:
            await uow.commit()
    assert err.value.reason == Reason.TOPOLOGY_VERSION_CONFLICT
    items = sent[-1]
    kinds = {(op, body["Key" if "Key" in body else "Item"]["sk"]["S"].split("#")[0]) for item in items
             for op, body in item.items()}
    assert kinds >= {("Put", "N"), ("Put", "O"), ("Put", "I"), ("Update", "C"), ("Put", "U"), ("Update", "K"),
                     ("Update", "V"), ("Put", "00000000000000000001"), ("Update", "J"), ("Put", "R"),
                     ("Update", "head"), ("Put", "fresh")}, kinds  # schema v1 and the commit record share an sk form
    # 2 nodes, 2 claims, 6 edge items (manages, friend both ways), 6 counters, 3 type counters, topology,
    # schema, cascade job, idempotency record, log head, shard registry, commit record
    assert len(items) == 26
    assert await everything(dynamo) == before  # not one of the 26 landed
    assert await store.event_log().shards() == [] and await store.head(fresh) == 0


# --- the transaction's size --------------------------------------------------------------------

async def test_more_than_100_items_are_refused_before_anything_is_sent(store, dynamo, sent):
    """Distinct endpoints: an edge costs 6 items (2 mirrors, 2 counters, 2 endpoint checks),
    plus 4 for the commit (type counter, log head, commit record, idempotency record)."""
    users = [f"u{i}" for i in range(34)]
    for start in range(0, 34, 17):
        await create(store, *users[start:start + 17])

    async def batch(edges: int, request_id: str) -> CommitResult:
        async with store.unit_of_work() as uow:
            s = await uow.schemas.get(G)
            for i in range(edges):
                await uow.edges.add(Edge.create(graph=G, source=users[2 * i], type_name="follows",
                                                target=users[2 * i + 1], properties={}, schema=s, causation=causation()))
            await uow.idempotency.put(pending(request_id))
            return await uow.commit()

    calls = len(sent)
    head = await store.head(G)
    with pytest.raises(DomainError) as err:
        await batch(17, "r17")
    assert err.value.reason == Reason.BATCH_TOO_LARGE and type(err.value).__name__ == "ValidationFailed"
    assert err.value.metadata == {"limit": "100", "needed": "106"}
    assert err.value.message == ("this command needs 106 items in one DynamoDB transaction; at most 100 — "
                                 "split the batch")
    assert len(sent) == calls and await store.head(G) == head  # nothing sent
    await batch(16, "r16")
    assert len(sent[-1]) == 100


async def test_create_node_commits_in_one_transaction(store, dynamo):
    with capacity_scope() as usage:
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(G, "r1") is None
            await uow.nodes.add(Node.create(graph=G, node_id="a", type_name="User", properties={"name": "a"},
                                            schema=await uow.schemas.get(G), causation=causation()))
            await uow.idempotency.put(pending("r1"))
            await uow.commit()
    # schema (Query), id taken? + request id + log head (GetItem), then ONE transaction
    assert usage.calls_of("TransactWriteItems") == 1
    assert {name: op.calls for name, op in usage.operations.items()} == {"Query": 1, "GetItem": 3,
                                                                         "TransactWriteItems": 1}
    stored = await dynamo.get_item(dynamo.tables.log, k.log_head_key(G, 0), consistent=True)
    assert get_int(stored, "seq") == 2
