"""Contract of domain.ports.IdempotencyStore (AIP-155 request ids) and the store's purge."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import Reason, ValidationFailed
from domain.ports import IdempotencyRecord
from tests.command_samples import GRAPH
from tests.contract.suites.write_fixtures import T0, WriteStoreFixture


class IdempotencyStoreContract(WriteStoreFixture):
    async def test_idempotency_records_round_trip_and_purge(self, store):
        record = IdempotencyRecord(graph=GRAPH, request_id="r1", operation="CreateNode", fingerprint="f" * 64,
                                   response=b"\x00\xffbinary{}", created_at=T0)
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") is None
            await uow.idempotency.put(record)
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") == record
            assert await uow.idempotency.get("other", "r1") is None
        assert await store.purge_idempotency(T0) == 0
        assert await store.purge_idempotency(T0 + timedelta(hours=25)) == 1
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") is None


    async def test_a_reused_request_id_is_refused_and_the_first_record_kept(self, store):
        first = IdempotencyRecord(graph=GRAPH, request_id="r1", operation="CreateNode", fingerprint="a" * 64,
                                  response=b"first", created_at=T0)
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(first)
            await uow.commit()
        async with store.unit_of_work() as uow:
            with pytest.raises(ValidationFailed) as err:
                await uow.idempotency.put(IdempotencyRecord(graph=GRAPH, request_id="r1", operation="DeleteNode",
                                                            fingerprint="b" * 64, response=b"second",
                                                            created_at=T0 + timedelta(seconds=1)))
            assert err.value.reason == Reason.REQUEST_ID_REUSED
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") == first

    async def test_a_record_put_in_a_rolled_back_unit_of_work_is_not_kept(self, store):
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(IdempotencyRecord(graph=GRAPH, request_id="r1", operation="CreateNode",
                                                        fingerprint="f" * 64, response=b"", created_at=T0))
        async with store.unit_of_work() as uow:
            assert await uow.idempotency.get(GRAPH, "r1") is None
