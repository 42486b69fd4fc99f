"""Contract of domain.ports.IdempotencyStore (AIP-155 request ids) and the store's purge.

A record is staged with ``put`` as a ``PendingIdempotencyRecord``; the unit of work renders
its response with the positions of its own commit and writes it in that commit's
transaction, so a stored response carries exactly the commit's positions. Nothing is kept
from a unit of work that does not commit."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from domain.errors import Reason, ValidationFailed
from domain.node import Node
from domain.ports import CommitResult, IdempotencyRecord, PendingIdempotencyRecord
from tests.command_samples import GRAPH
from tests.contract.suites.write_fixtures import T0, WriteStoreFixture, causation


def pending(request_id: str = "r1", *, graph: str = GRAPH, operation: str = "CreateNode",
            fingerprint: str = "f" * 64, response: bytes | None = None, created_at=T0,
            rendered: list[CommitResult] | None = None) -> PendingIdempotencyRecord:
    """A staged record whose response is ``response``, or else the commit's positions as JSON;
    every commit it is rendered with is appended to ``rendered``."""

    def render(committed: CommitResult) -> bytes:
        if rendered is not None:
            rendered.append(committed)
        return response if response is not None else json.dumps(committed.positions, sort_keys=True).encode()

    return PendingIdempotencyRecord(graph=graph, request_id=request_id, operation=operation,
                                    fingerprint=fingerprint, created_at=created_at, render=render)


def stored(record: PendingIdempotencyRecord, response: bytes) -> IdempotencyRecord:
    return IdempotencyRecord(graph=record.graph, request_id=record.request_id, operation=record.operation,
                             fingerprint=record.fingerprint, response=response, created_at=record.created_at)


class IdempotencyStoreContract(WriteStoreFixture):
    async def test_idempotency_records_round_trip_and_purge(self, store):
        record = pending(response=b"\x00\xffbinary{}")
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") is None
            await uow.idempotency.put(record)
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") == stored(record, b"\x00\xffbinary{}")
            assert await uow.idempotency.get("other", "r1") is None
        assert await store.purge_idempotency(T0) == 0
        assert await store.purge_idempotency(T0 + timedelta(hours=25)) == 1
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") is None

    async def test_the_stored_response_is_rendered_with_the_positions_of_its_own_commit(self, store):
        rendered: list[CommitResult] = []
        record = pending(rendered=rendered)
        async with store.unit_of_work() as uow:
            s = await uow.schemas.get(GRAPH)
            for node_id in ("a", "b"):
                await uow.nodes.add(Node.create(graph=GRAPH, node_id=node_id, type_name="User",
                                                properties={"name": node_id}, schema=s, causation=causation()))
            await uow.idempotency.put(record)
            assert rendered == []  # positions exist only once the commit allocates them
            committed = await uow.commit()
        # rendered with what commit() returned (an adapter that retries its transaction
        # after a lost log-sequence race renders again, with the new positions)
        assert rendered and rendered[-1] == committed
        shard = store.event_log().shard_of(GRAPH)
        assert committed.positions[shard] == await self.shard_head(store) == 3
        async with store.unit_of_work() as uow:
            got = await uow.idempotency.get(GRAPH, "r1")
        assert got == stored(record, json.dumps(committed.positions, sort_keys=True).encode())
        assert json.loads(got.response) == committed.positions

    async def test_a_commit_without_events_renders_the_heads_it_names(self, store):
        await self.add_node(store, "a")
        record = pending(operation="UpdateNode")
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(record)
            committed = await uow.commit()
        async with store.unit_of_work() as uow:
            got = await uow.idempotency.get(GRAPH, "r1")
        assert json.loads(got.response) == committed.positions
        assert committed.positions[store.event_log().shard_of(GRAPH)] == await self.shard_head(store) == 2

    async def test_a_reused_request_id_is_refused_and_the_first_record_kept(self, store):
        first = pending(fingerprint="a" * 64, response=b"first")
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(first)
            await uow.commit()
        async with store.unit_of_work() as uow:
            with pytest.raises(ValidationFailed) as err:
                await uow.idempotency.put(pending(operation="DeleteNode", fingerprint="b" * 64, response=b"second",
                                                  created_at=T0 + timedelta(seconds=1)))
            assert err.value.reason == Reason.REQUEST_ID_REUSED
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") == stored(first, b"first")

    async def test_staging_a_request_id_twice_in_one_unit_of_work_is_refused(self, store):
        first = pending(fingerprint="a" * 64, response=b"first")
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(first)
            with pytest.raises(ValidationFailed) as err:
                await uow.idempotency.put(pending(fingerprint="b" * 64, response=b"second"))
            assert err.value.reason == Reason.REQUEST_ID_REUSED
            await uow.idempotency.put(pending(graph="other", response=b"elsewhere"))  # another graph's id space
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") == stored(first, b"first")
            assert (await uow.idempotency.get("other", "r1")).response == b"elsewhere"

    async def test_a_record_put_in_a_rolled_back_unit_of_work_is_not_kept(self, store):
        rendered: list[CommitResult] = []
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(pending(response=b"", rendered=rendered))
        with pytest.raises(RuntimeError):
            async with store.unit_of_work() as uow:
                await uow.nodes.add(Node.create(graph=GRAPH, node_id="a", type_name="User", properties={"name": "a"},
                                                schema=await uow.schemas.get(GRAPH), causation=causation()))
                await uow.idempotency.put(pending("r2", rendered=rendered))
                raise RuntimeError("boom")
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(pending("r3", rendered=rendered))
            await uow.rollback()
        assert rendered == []  # never rendered: there was no commit
        async with store.unit_of_work() as uow:
            for request_id in ("r1", "r2", "r3"):
                assert await uow.idempotency.get(GRAPH, request_id) is None
            await uow.idempotency.put(pending("r1"))  # the ids are free
            await uow.commit()
