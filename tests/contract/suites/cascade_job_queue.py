"""Contract of domain.ports.CascadeJobQueue: pending jobs, oldest first."""

from __future__ import annotations

from datetime import timedelta

from domain.ports import CascadeJob
from tests.command_samples import GRAPH
from tests.contract.suites.write_fixtures import T0, WriteStoreFixture


class CascadeJobQueueContract(WriteStoreFixture):
    async def test_cascade_jobs_queue_in_order(self, store):
        jobs = [CascadeJob(GRAPH, f"n{i}", "req", "tp", T0 + timedelta(seconds=i)) for i in (2, 1)]
        async with store.unit_of_work() as uow:
            assert await uow.cascades.next() is None
            for job in jobs:
                await uow.cascades.enqueue(job)
            await uow.cascades.enqueue(jobs[0])  # enqueueing twice is harmless
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.cascades.next() == jobs[1]
            await uow.cascades.complete(GRAPH, "n1")
            assert await uow.cascades.next() == jobs[0]


    async def test_completing_is_idempotent_and_an_uncommitted_enqueue_is_dropped(self, store):
        job = CascadeJob(GRAPH, "n1", "req-cascade", "00-trace-01", T0)
        async with store.unit_of_work() as uow:
            await uow.cascades.enqueue(job)  # never committed
        async with store.unit_of_work() as uow:
            assert await uow.cascades.next() is None
            await uow.cascades.enqueue(job)
            await uow.commit()
        async with store.unit_of_work() as uow:
            await uow.cascades.complete(GRAPH, "n1")
            await uow.cascades.complete(GRAPH, "n1")  # already done: harmless
            await uow.cascades.complete(GRAPH, "never-queued")
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.cascades.next() is None
