"""TransactionBuilder (which item's failed condition means what) and the log's commit
records (packing, unpacking), without a server."""

from __future__ import annotations

import random
import string
from datetime import datetime, timezone

import pytest

from domain.errors import Internal, NotFound, Reason, VersionConflict
from domain.events import NodeCreated
from infrastructure.persistence.dynamodb import keys as k
from infrastructure.persistence.dynamodb.errors import CancellationReason, TransactionCancelled
from infrastructure.persistence.dynamodb.event_log import (
    MAX_RECORD_BYTES,
    event_json,
    pack_events,
    record_items,
    unpack_record,
)
from infrastructure.persistence.dynamodb.transaction import Guard, TransactionBuilder

T = "t-write"


def builder() -> TransactionBuilder:
    tx = TransactionBuilder()
    tx.add("Put", T, item={**k.node_key("g", "a"), "v": {"N": "1"}}, condition="attribute_not_exists(pk)",
           guard=Guard(lambda old: NotFound("node", resource_type="Node", resource_name="a")))
    tx.add("Update", T, key=k.log_head_key("g", 0), update="SET s = :n", condition="s = :o",
           values={":n": {"N": "2"}, ":o": {"N": "1"}}, guard=Guard(lambda old: Internal("moved"), log=True))
    tx.add("Update", T, key=k.topology_key("g", "manages"), update="SET v = :n", condition="v = :o",
           values={":n": {"N": "2"}, ":o": {"N": "1"}},
           guard=Guard(lambda old: VersionConflict("topology", reason=Reason.TOPOLOGY_VERSION_CONFLICT),
                       what="topology"), return_old=True)
    return tx


def cancelled(*codes: str) -> TransactionCancelled:
    return TransactionCancelled([CancellationReason(i, code) for i, code in enumerate(codes)])


def test_items_carry_their_conditions_and_a_key_is_touched_once():
    tx = builder()
    assert len(tx) == 3 and tx.what_at(2) == "topology"
    assert tx.items[2]["Update"]["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert "ReturnValuesOnConditionCheckFailure" not in tx.items[0]["Put"]
    with pytest.raises(Internal):
        tx.add("ConditionCheck", T, key=k.node_key("g", "a"), condition="attribute_exists(pk)",
               guard=Guard(lambda old: Internal("x")))
    with pytest.raises(Internal):  # a condition nobody can explain
        tx.add("Put", T, item=k.node_key("g", "b"), condition="attribute_exists(pk)")
    copy = tx.copy()
    copy.add("Put", T, item=k.node_key("g", "b"))
    assert (len(tx), len(copy)) == (3, 4)


@pytest.mark.parametrize("codes, expected", [
    (("ConditionalCheckFailed", "None", "None"), "NOT_FOUND"),
    (("None", "ConditionalCheckFailed", "ConditionalCheckFailed"), Reason.TOPOLOGY_VERSION_CONFLICT),
    (("None", "ConditionalCheckFailed", "None"), None),  # only the log head moved: retry
    (("TransactionConflict", "ConditionalCheckFailed", "None"), None),  # a conflict and the head: retry
    (("TransactionConflict", "None", "ConditionalCheckFailed"), Reason.TOPOLOGY_VERSION_CONFLICT),
    (("None", "None", "ValidationError"), Reason.INTERNAL),
])
def test_the_first_failed_condition_that_is_not_the_log_head_explains_the_cancellation(codes, expected):
    error = builder().explain(cancelled(*codes))
    assert (error.reason if error is not None else None) == expected


def event(i: int, name: str = "x") -> NodeCreated:
    return NodeCreated(event_id=f"e{i}", graph="g", aggregate_id=f"n{i}", aggregate_version=1,
                       occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc), node_type="User",
                       properties={"name": name, "score": float("inf")})


def test_a_commit_s_events_are_one_record_keyed_by_its_last_position():
    events = [event(i) for i in range(100)]
    packed = pack_events([event_json(e) for e in events])
    assert [p.count for p in packed] == [100]
    (item,) = record_items("g", 41, packed)
    assert item["sk"] == {"S": k.log_record_sk(141)}
    logged = unpack_record(item, "g.0")
    assert [le.position for le in logged] == list(range(42, 142)) and [le.event for le in logged] == events


def test_records_are_halved_until_each_fits():
    rng = random.Random(1)
    big = [event(i, "".join(rng.choices(string.ascii_letters, k=100_000))) for i in range(9)]
    packed = pack_events([event_json(e) for e in big])
    assert len(packed) > 1 and sum(p.count for p in packed) == 9
    assert all(len(p.payload) <= MAX_RECORD_BYTES for p in packed)
    items = record_items("g", 0, packed)
    positions = [le.position for item in items for le in unpack_record(item, "g.0")]
    assert positions == list(range(1, 10))
