"""DynamoClient against moto's server mode: batching, retries, transactions, error
mapping and capacity metering. Faults are injected by wrapping the raw aiobotocore
client's methods (``client._client``), the one place requests leave the process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from deploy.dynamodb.tables import BY_TYPE_INDEX, BY_TYPE_PK, BY_TYPE_SK, BY_VALUE_INDEX, BY_VALUE_PK, BY_VALUE_SK
from domain.edge import Direction
from domain.errors import Internal, Reason, Unavailable, ValidationFailed
from domain.values import PropertyKind
from infrastructure.persistence.dynamodb import keys as k
from infrastructure.persistence.dynamodb.attributes import get_int, get_str, key_of, key_tuple, num, string
from infrastructure.persistence.dynamodb.capacity import capacity_scope, current_scope
from infrastructure.persistence.dynamodb.client import DynamoClient, RetryPolicy
from infrastructure.persistence.dynamodb.errors import ConditionFailed, TransactionCancelled
from tests.dynamodb_support import client_options_for_tests, open_test_client

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

G = "g1"


def node_item(i: int, **extra: Any) -> dict:
    return {**k.node_key(G, f"n{i}"), "type": string("User"), "version": num(1), **extra}


async def put_nodes(client: DynamoClient, count: int) -> list[dict]:
    items = [node_item(i) for i in range(count)]
    await client.batch_write(client.tables.write, puts=items)
    return items


def client_error(code: str, operation: str, *, status: int = 400, message: str = "secret AWS detail",
                 **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}, **extra}, operation)


def wrap(monkeypatch, client: DynamoClient, method: str, replacement) -> list[dict]:
    """Replace one raw client method; ``replacement(real, params, call_number)``. Returns
    the list of params of every call."""
    real = getattr(client._client, method)
    calls: list[dict] = []

    async def wrapper(**params: Any) -> Any:
        calls.append(params)
        return await replacement(real, params, len(calls))

    monkeypatch.setattr(client._client, method, wrapper)
    return calls


# --- batch_get -------------------------------------------------------------------------------

async def test_batch_get_250_keys_is_3_calls_and_duplicates_collapse(dynamo):
    await put_nodes(dynamo, 250)
    keys = [k.node_key(G, f"n{i}") for i in range(250)]
    keys += keys[:120]  # duplicates
    keys += [k.node_key(G, "absent-1"), k.node_key(G, "absent-2")]
    with capacity_scope() as usage:
        items = await dynamo.batch_get(dynamo.tables.write, keys)
    assert sorted(get_str(i, "pk") for i in items) == sorted(k.node_partition(G, f"n{i}") for i in range(250))
    assert usage.calls_of("BatchGetItem") == 3
    assert usage.calls == 3


async def test_batch_get_projection_and_consistent_read(dynamo, monkeypatch):
    await put_nodes(dynamo, 3)
    calls = wrap(monkeypatch, dynamo, "batch_get_item", lambda real, params, n: real(**params))
    items = await dynamo.batch_get(dynamo.tables.write, [k.node_key(G, "n1")], projection=["version"],
                                   consistent=True)
    assert items == [{**k.node_key(G, "n1"), "version": num(1)}]  # pk and sk always come back
    request = calls[0]["RequestItems"][dynamo.tables.write]
    assert request["ConsistentRead"] is True
    assert await dynamo.batch_get(dynamo.tables.write, []) == []


async def test_batch_get_chunks_run_with_bounded_concurrency(dynamo_settings, dynamo, monkeypatch):
    await put_nodes(dynamo, 1000)
    async with await open_test_client(dynamo_settings, client_options_for_tests(batch_concurrency=3)) as client:
        in_flight = peak = 0

        async def slow(real, params, n):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.02)
                return await real(**params)
            finally:
                in_flight -= 1

        calls = wrap(monkeypatch, client, "batch_get_item", slow)
        items = await client.batch_get(client.tables.write, [k.node_key(G, f"n{i}") for i in range(1000)])
    assert len(items) == 1000 and len(calls) == 10
    assert peak == 3


async def test_unprocessed_keys_are_retried_until_served(dynamo, monkeypatch):
    await put_nodes(dynamo, 250)

    async def partial(real, params, n):
        response = await real(**params)
        table, served = next(iter(response["Responses"].items()))
        if n <= 3:  # the first call of each chunk: hand back half of the keys as unprocessed
            keep, defer = served[: len(served) // 2], served[len(served) // 2:]
            response["Responses"][table] = keep
            request = params["RequestItems"][table]
            response["UnprocessedKeys"] = {table: {**request, "Keys": [key_of(i) for i in defer]}}
        return response

    calls = wrap(monkeypatch, dynamo, "batch_get_item", partial)
    with capacity_scope() as usage:
        items = await dynamo.batch_get(dynamo.tables.write, [k.node_key(G, f"n{i}") for i in range(250)])
    assert len({key_tuple(i) for i in items}) == 250 and len(items) == 250
    assert len(calls) == 6 and usage.calls_of("BatchGetItem") == 6
    # the retries asked for exactly the deferred keys
    assert sum(len(c["RequestItems"][dynamo.tables.write]["Keys"]) for c in calls[3:]) == 125


async def test_exhausted_unprocessed_retries_raise_unavailable(dynamo, monkeypatch):
    await put_nodes(dynamo, 10)

    async def nothing_served(real, params, n):
        table, request = next(iter(params["RequestItems"].items()))
        return {"Responses": {table: []}, "UnprocessedKeys": {table: request},
                "ConsumedCapacity": [{"TableName": table, "CapacityUnits": 0.0}]}

    calls = wrap(monkeypatch, dynamo, "batch_get_item", nothing_served)
    with pytest.raises(Unavailable) as info:
        await dynamo.batch_get(dynamo.tables.write, [k.node_key(G, f"n{i}") for i in range(10)])
    assert len(calls) == dynamo.options.unprocessed_retry.max_attempts == 4
    assert info.value.reason == Reason.STORAGE_UNAVAILABLE
    assert "10 of 10 keys still unprocessed after 4 attempts" in info.value.message


def test_backoff_is_exponential_with_full_jitter():
    policy = RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.5)
    for retry in range(1, 10):
        delays = [policy.delay(retry) for _ in range(200)]
        cap = min(0.5, 0.01 * 2 ** retry)
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # jitter spreads over the whole window


async def test_batch_write_chunks_and_refuses_duplicate_keys(dynamo):
    with capacity_scope() as usage:
        await put_nodes(dynamo, 60)
    assert usage.calls_of("BatchWriteItem") == 3
    await dynamo.batch_write(dynamo.tables.write, deletes=[k.node_key(G, f"n{i}") for i in range(30)])
    assert len(await dynamo.batch_get(dynamo.tables.write, [k.node_key(G, f"n{i}") for i in range(60)])) == 30
    with pytest.raises(ValueError):
        await dynamo.batch_write(dynamo.tables.write, puts=[node_item(1)], deletes=[k.node_key(G, "n1")])


# --- transactions ---------------------------------------------------------------------------

def put(item: dict, table: str, condition: str | None = None, return_old: bool = False) -> dict:
    body: dict[str, Any] = {"TableName": table, "Item": item}
    if condition:
        body["ConditionExpression"] = condition
    if return_old:
        body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Put": body}


async def test_transact_write_over_100_items_is_refused_before_any_call(dynamo):
    items = [put(node_item(i), dynamo.tables.write) for i in range(101)]
    with capacity_scope() as usage, pytest.raises(ValidationFailed) as info:
        await dynamo.transact_write(items)
    assert info.value.reason == Reason.BATCH_TOO_LARGE
    assert "101" in info.value.message and "100" in info.value.message
    assert info.value.metadata == {"items": "101", "limit": "100"}
    assert usage.calls == 0
    await dynamo.transact_write(items[:100])  # exactly 100 is fine
    assert len(await dynamo.batch_get(dynamo.tables.write, [k.node_key(G, f"n{i}") for i in range(101)])) == 100
    await dynamo.transact_write([])  # nothing to do: no call


async def test_a_failed_condition_cancels_the_whole_transaction_with_reasons_by_index(dynamo):
    table = dynamo.tables.write
    await dynamo.put_item(table, node_item(1, version=num(7)))
    await dynamo.put_item(table, node_item(3, version=num(7)))
    items = [
        put(node_item(2), table, "attribute_not_exists(pk)"),
        {"Update": {"TableName": table, "Key": k.edge_counter_key(G, "n2", "follows", Direction.OUT),
                    "UpdateExpression": "ADD #c :one", "ExpressionAttributeNames": {"#c": "count"},
                    "ExpressionAttributeValues": {":one": num(1)}}},
        put(node_item(1, version=num(8)), table, "attribute_not_exists(pk)", return_old=True),  # exists: fails
        {"ConditionCheck": {"TableName": table, "Key": k.node_key(G, "n3"), "ConditionExpression": "#v = :v",
                            "ExpressionAttributeNames": {"#v": "version"},
                            "ExpressionAttributeValues": {":v": num(7)}}},
    ]
    with pytest.raises(TransactionCancelled) as info:
        await dynamo.transact_write(items)
    cancelled = info.value
    assert [r.code for r in cancelled.reasons] == ["None", "None", "ConditionalCheckFailed", "None"]
    assert cancelled.condition_failed_at() == [2]
    assert cancelled.reason(2).item is not None and get_int(cancelled.reason(2).item, "version") == 7
    assert [r.index for r in cancelled.failed()] == [2]
    assert "item 2: ConditionalCheckFailed" in str(cancelled)
    # nothing of the transaction landed
    assert await dynamo.get_item(table, k.node_key(G, "n2"), consistent=True) is None
    assert await dynamo.get_item(table, k.edge_counter_key(G, "n2", "follows", Direction.OUT), consistent=True) is None
    stored = await dynamo.get_item(table, k.node_key(G, "n1"), consistent=True)
    assert stored is not None and get_int(stored, "version") == 7


async def test_transactions_span_tables(dynamo):
    await dynamo.transact_write([put(node_item(1), dynamo.tables.write),
                                 put({**k.log_record_key(G, 0, 1), "body": string("{}")}, dynamo.tables.log),
                                 put({**k.log_head_key(G, 0), "seq": num(1)}, dynamo.tables.log)])
    got = await dynamo.transact_get([(dynamo.tables.write, k.node_key(G, "n1")),
                                      (dynamo.tables.log, k.log_head_key(G, 0)),
                                      (dynamo.tables.write, k.node_key(G, "absent"))])
    assert got[0] is not None and got[1] is not None and get_int(got[1], "seq") == 1 and got[2] is None


@pytest.mark.parametrize("codes, expected", [
    (["None", "TransactionConflict"], Unavailable),
    (["ThrottlingError", "None"], Unavailable),
    (["TransactionConflict", "ConditionalCheckFailed"], TransactionCancelled),
    (["ValidationError", "None"], TransactionCancelled),
])
async def test_cancellations_for_conflicts_or_throttling_only_are_retryable(dynamo, monkeypatch, codes, expected):
    async def cancelled(real, params, n):
        raise client_error("TransactionCanceledException", "TransactWriteItems",
                           CancellationReasons=[{"Code": c, "Message": "secret AWS detail"} for c in codes])

    wrap(monkeypatch, dynamo, "transact_write_items", cancelled)
    with pytest.raises(expected) as info:
        await dynamo.transact_write([put(node_item(1), dynamo.tables.write), put(node_item(2), dynamo.tables.write)])
    assert "secret AWS detail" not in str(info.value)
    if expected is TransactionCancelled:
        assert [r.code for r in info.value.reasons] == codes


# --- single items and error mapping -------------------------------------------------------------

async def test_single_item_helpers_and_condition_failures(dynamo):
    table = dynamo.tables.write
    await dynamo.put_item(table, node_item(1), condition="attribute_not_exists(pk)")
    with pytest.raises(ConditionFailed) as info:
        await dynamo.put_item(table, node_item(1, version=num(2)), condition="attribute_not_exists(pk)",
                              return_old_on_failure=True)
    assert info.value.item is not None and get_int(info.value.item, "version") == 1
    new = await dynamo.update_item(table, k.node_key(G, "n1"), update="SET #v = #v + :one",
                                   condition="#v = :expected", names={"#v": "version"},
                                   values={":one": num(1), ":expected": num(1)}, return_values="ALL_NEW")
    assert new is not None and get_int(new, "version") == 2
    with pytest.raises(ConditionFailed):
        await dynamo.delete_item(table, k.node_key(G, "n1"), condition="#v = :v", names={"#v": "version"},
                                 values={":v": num(1)})
    got = await dynamo.get_item(table, k.node_key(G, "n1"), projection=["type"], consistent=True)
    assert got == {**k.node_key(G, "n1"), "type": string("User")}
    old = await dynamo.delete_item(table, k.node_key(G, "n1"), return_old=True)
    assert old is not None and get_int(old, "version") == 2
    assert await dynamo.get_item(table, k.node_key(G, "n1")) is None


@pytest.mark.parametrize("raised, expected, fragment", [
    (client_error("ProvisionedThroughputExceededException", "GetItem"), Unavailable, "retry later"),
    (client_error("ThrottlingException", "GetItem"), Unavailable, "retry later"),
    (client_error("RequestLimitExceeded", "GetItem"), Unavailable, "retry later"),
    (client_error("TransactionConflictException", "GetItem"), Unavailable, "retry later"),
    (client_error("SomethingNew", "GetItem", status=503), Unavailable, "retry later"),
    (client_error("InternalServerError", "GetItem", status=500), Unavailable, "retry later"),
    (client_error("ResourceNotFoundException", "GetItem"), Unavailable, "a table does not exist"),
    (client_error("AccessDeniedException", "GetItem"), Unavailable, "access refused"),
    (client_error("ValidationException", "GetItem"), Internal, "refused GetItem (ValidationException)"),
    (EndpointConnectionError(endpoint_url="http://secret-host:1"), Unavailable, "is unreachable"),
    (ReadTimeoutError(endpoint_url="http://secret-host:1"), Unavailable, "is unreachable"),
    (ConnectionResetError("secret AWS detail"), Unavailable, "is unreachable"),
])
async def test_failures_map_to_domain_errors_without_aws_details(dynamo, monkeypatch, raised, expected, fragment):
    async def fail(real, params, n):
        raise raised

    wrap(monkeypatch, dynamo, "get_item", fail)
    with capacity_scope() as usage, pytest.raises(expected) as info:
        await dynamo.get_item(dynamo.tables.write, k.node_key(G, "n1"))
    error = info.value
    assert fragment in error.message
    assert "secret" not in error.message and "\n" not in error.message
    assert error.__cause__ is None and error.__suppress_context__
    assert error.metadata["operation"] == "GetItem"
    assert usage.calls_of("GetItem") == 1 and usage.unreported_calls == 1  # a failed call is still a call


# --- queries ------------------------------------------------------------------------------------

async def test_query_pages_and_query_all(dynamo):
    table = dynamo.tables.write
    edges = [{**k.out_edge_key(G, "hub", "follows", f"u{i:03d}")} for i in range(35)]
    edges += [{**k.out_edge_key(G, "hub", "likes", "u1")}, {**k.in_edge_key(G, "hub", "follows", "u2")}]
    await dynamo.batch_write(table, puts=edges)
    condition = "pk = :pk AND begins_with(sk, :prefix)"
    values = {":pk": string(k.node_partition(G, "hub")), ":prefix": string(k.edges_prefix(Direction.OUT, "follows"))}
    page = await dynamo.query(table, key_condition=condition, values=values, limit=10)
    assert len(page.items) == 10 and page.last_key is not None
    assert [k.parse_edge_sk(get_str(i, "sk"))[2] for i in page.items] == [f"u{i:03d}" for i in range(10)]
    with capacity_scope() as usage:
        everything = await dynamo.query_all(table, key_condition=condition, values=values, page_size=10)
    assert len(everything) == 35 and usage.calls_of("Query") == 4
    newest = await dynamo.query_all(table, key_condition=condition, values=values, forward=False, max_items=5)
    assert [k.parse_edge_sk(get_str(i, "sk"))[2] for i in newest] == [f"u{i:03d}" for i in range(34, 29, -1)]
    counted = await dynamo.query(table, key_condition=condition, values=values, select_count=True)
    assert counted.count == 35 and counted.items == []


async def test_read_model_indexes_list_a_type_and_a_value_range(dynamo):
    table = dynamo.tables.read
    ages = {f"u{i}": age for i, age in enumerate([30, -5, 30, 12, 99, 0, 45, 12])}
    views = [{**k.node_view_key(G, n), **k.type_index_attributes(G, "User", n)} for n in ages]
    entries = [{**k.node_index_entry_key(G, n, "age"),
                **k.value_index_attributes(G, "User", "age", n, age, PropertyKind.INT)} for n, age in ages.items()]
    await dynamo.batch_write(table, puts=views + entries)

    listed = []
    for partition in k.type_index_partitions(G, "User"):
        listed += await dynamo.query_all(table, index=BY_TYPE_INDEX, key_condition="#p = :p",
                                         names={"#p": BY_TYPE_PK}, values={":p": string(partition)})
    assert sorted(get_str(i, BY_TYPE_SK) for i in listed) == sorted(ages)

    lo, hi = k.value_index_bounds(PropertyKind.INT, 0, True, 45, False)  # 0 <= age < 45
    found = []
    for partition in k.value_index_partitions(G, "User", "age"):
        found += await dynamo.query_all(table, index=BY_VALUE_INDEX, key_condition="#p = :p AND #s BETWEEN :lo AND :hi",
                                        names={"#p": BY_VALUE_PK, "#s": BY_VALUE_SK},
                                        values={":p": string(partition), ":lo": string(lo or ""),
                                                ":hi": string(hi or "")})
    merged = sorted(found, key=lambda i: get_str(i, BY_VALUE_SK))  # the k-way merge of the buckets
    got = [(ages[k.parse_value_index_sk(get_str(i, BY_VALUE_SK))], k.parse_value_index_sk(get_str(i, BY_VALUE_SK)))
           for i in merged]
    assert got == sorted((age, n) for n, age in ages.items() if 0 <= age < 45)


# --- capacity -----------------------------------------------------------------------------------

async def test_consumed_capacity_is_summed_per_scope_and_per_process(dynamo):
    await put_nodes(dynamo, 5)
    before = dynamo.meter.totals()
    with capacity_scope() as outer:
        await dynamo.get_item(dynamo.tables.write, k.node_key(G, "n1"))
        with capacity_scope() as inner:
            assert current_scope() is inner
            await dynamo.batch_get(dynamo.tables.write, [k.node_key(G, f"n{i}") for i in range(5)])
            await dynamo.query(dynamo.tables.write, key_condition="pk = :pk",
                               values={":pk": string(k.node_partition(G, "n1"))})
        assert current_scope() is outer
        await dynamo.transact_write([put(node_item(9), dynamo.tables.write)])
    assert current_scope() is None
    assert (inner.calls_of("BatchGetItem"), inner.calls_of("Query"), inner.calls_of("GetItem")) == (1, 1, 0)
    assert outer.calls == 4 and outer.calls_of("GetItem") == 1 and outer.calls_of("TransactWriteItems") == 1
    # moto 5.2 reports capacity for GetItem, BatchGetItem and Query, not for transactions
    assert outer.capacity_of("GetItem") > 0 and inner.capacity_units > 0
    assert outer.capacity_units >= inner.capacity_units + outer.capacity_of("GetItem")
    after = dynamo.meter.totals()
    assert after.calls - before.calls == 4
    assert after.capacity_units - before.capacity_units == pytest.approx(outer.capacity_units)
    assert outer.as_dict()["operations"]["GetItem"]["calls"] == 1


async def test_concurrent_rpcs_have_separate_scopes(dynamo):
    await put_nodes(dynamo, 3)

    async def rpc(reads: int) -> int:
        with capacity_scope() as usage:
            await asyncio.gather(*(dynamo.get_item(dynamo.tables.write, k.node_key(G, f"n{i % 3}"))
                                   for i in range(reads)))
            return usage.calls

    assert await asyncio.gather(rpc(2), rpc(5), rpc(1)) == [2, 5, 1]
