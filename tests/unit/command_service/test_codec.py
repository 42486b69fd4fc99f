"""Idempotency fingerprints and stored responses (command_service.app.codec)."""

import json
from datetime import datetime, timedelta, timezone

from command_service.app.codec import ResultCodec, fingerprint
from command_service.app.commands.add_edge import AddEdge, AddEdgeResult
from command_service.app.commands.apply_schema import ApplySchema
from command_service.app.commands.batch_write import BatchWrite, BatchWriteResult
from command_service.app.commands.create_node import CreateNode
from command_service.app.commands.update_node import UpdateNode
from command_service.app.common import CommandMeta
from domain.edge import Edge
from tests.command_samples import EDGE_TYPES, NODE_TYPES

BORN = datetime(1990, 5, 17, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


def test_fingerprints_are_stable_across_releases():
    # Records stored by an earlier release must still match a retry: these hashes
    # were computed by the first implementation and must never change.
    batch = BatchWrite(graph="g1", request_id="r", operations=(
        CreateNode(graph="g1", type="User", node_id="a",
                   properties={"name": "a", "age": 3, "score": 1.5, "active": True, "born": BORN}),
        AddEdge(graph="g1", source="a", type="follows", target="b", properties={"since": BORN}),
        UpdateNode(graph="g1", node_id="a", properties={"score": float("nan")}, update_mask=("properties.score",),
                   etag='"2"')))
    assert fingerprint(batch) == "e9f9bcf1c4758eefc9e64d55f97c45dfd3a1980cd420e4e3efc4b5ebb02bae61"
    assert fingerprint(ApplySchema(graph="g1", node_types=NODE_TYPES, edge_types=EDGE_TYPES, expected_version=0)) \
        == "3cd15c02e5ce1887dd72b3bd4d5cfcc01e0fe81a3d88eaa20734af2469e6a0ba"
    assert fingerprint(CreateNode(graph="g1", type="User", properties={"name": "x", "badge": 1})) \
        == "9206b88c253580adf5a54bf387205e43b941f59d8f14ed835e7c86f268576bdb"


def test_same_request_same_fingerprint_and_any_difference_changes_it():
    base = CreateNode(graph="g1", type="User", node_id="a", properties={"name": "a", "badge": 1})
    assert fingerprint(base) == fingerprint(CreateNode(graph="g1", type="User", node_id="a",
                                                       properties={"badge": 1, "name": "a"},
                                                       request_id="other", meta=CommandMeta("x", "y")))
    different = [
        CreateNode(graph="g1", type="User", node_id="a", properties={"name": "a", "badge": "1"}),
        CreateNode(graph="g1", type="User", node_id="a", properties={"name": "a", "badge": True}),
        CreateNode(graph="g1", type="User", node_id="a", properties={"name": "a", "badge": 1.0}),
        CreateNode(graph="g1", type="User", node_id="b", properties={"name": "a", "badge": 1}),
        CreateNode(graph="g2", type="User", node_id="a", properties={"name": "a", "badge": 1}),
        AddEdge(graph="g1", source="a", type="User", target="a"),
    ]
    prints = {fingerprint(c) for c in [base, *different]}
    assert len(prints) == len(different) + 1
    one = BatchWrite(graph="g1", operations=(base, different[0]))
    assert fingerprint(one) != fingerprint(BatchWrite(graph="g1", operations=(different[0], base)))


def _batch_result(n: int) -> BatchWriteResult:
    at = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc)
    return BatchWriteResult(results=tuple(
        AddEdgeResult(edge=Edge(graph="g1", source=f"n{i}", type="follows", target=f"n{i + 1}", properties={},
                                create_time=at)) for i in range(n)), consistency_token="tok")


def test_large_responses_are_stored_compressed_and_replay_exactly():
    codec = ResultCodec([BatchWriteResult, AddEdgeResult])
    result = _batch_result(100)
    stored = codec.encode(result)
    plain = json.dumps(codec._enc(result), separators=(",", ":"), sort_keys=True).encode()
    assert len(stored) * 5 < len(plain)
    assert codec.decode(stored) == result
    small = _batch_result(1)
    assert codec.encode(small).startswith(b"{") and codec.decode(codec.encode(small)) == small


def test_records_stored_uncompressed_by_earlier_releases_still_decode():
    codec = ResultCodec([BatchWriteResult, AddEdgeResult])
    result = _batch_result(30)
    legacy = json.dumps(codec._enc(result), separators=(",", ":"), sort_keys=True).encode()
    assert codec.decode(legacy) == result


def test_edge_batch_results_are_stored_as_rows_and_the_tagged_form_still_decodes():
    codec = ResultCodec([BatchWriteResult, AddEdgeResult])
    result = _batch_result(3)
    mixed = BatchWriteResult(results=(*result.results, AddEdgeResult(
        edge=Edge(graph="g1", source="a", type="follows", target="b", properties={"since": BORN}, create_time=BORN))))
    for r in (result, mixed):
        assert "$edge_results" in json.dumps(codec._enc(r))
        assert codec.decode(codec.encode(r)) == r
    at = "2026-01-02T03:04:05.006000+00:00"
    tagged = {"$result": "BatchWriteResult", "fields": {"consistency_token": "tok", "results": {"$tuple": [
        {"$result": "AddEdgeResult", "fields": {"consistency_token": "", "edge": {"$edge": {
            "create_time": at, "graph": "g1", "properties": {}, "source": f"n{i}", "target": f"n{i + 1}",
            "type": "follows"}}}} for i in range(3)]}}}
    assert codec.decode(json.dumps(tagged).encode()) == result
