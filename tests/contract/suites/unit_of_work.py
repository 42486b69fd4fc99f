"""Contract of domain.ports.UnitOfWork (+ command_service WriteUnitOfWork.flush): commit and
rollback, the outbox appended in recorded order, a commit without events returns the head."""

from __future__ import annotations

import pytest

from domain.edge import Edge
from domain.errors import Internal
from domain.events import NodeCreated
from domain.node import Node
from domain.values import EdgeKey
from tests.command_samples import GRAPH
from tests.contract.suites.write_fixtures import WriteStoreFixture, causation


class UnitOfWorkContract(WriteStoreFixture):
    async def test_events_are_appended_in_the_order_recorded(self, store):
        head = await store.head()
        async with store.unit_of_work() as uow:
            s = await uow.schemas.get(GRAPH)
            a = Node.create(graph=GRAPH, node_id="a", type_name="User", properties={"name": "a"}, schema=s,
                            causation=causation())
            await uow.nodes.add(a)
            b = Node.create(graph=GRAPH, node_id="b", type_name="User", properties={"name": "b"}, schema=s,
                            causation=causation())
            await uow.nodes.add(b)
            a.update(properties={"age": 3}, update_mask=None, expected_version=None, schema=s, causation=causation())
            await uow.nodes.save(a)
            e = Edge.create(graph=GRAPH, source="a", type_name="follows", target="b", properties={}, schema=s,
                            causation=causation())
            await uow.edges.add(e)
            flushed = await uow.flush()
            committed = await uow.commit()
        assert committed == flushed and committed.positions == {"0": head + 4}
        logged = await store.event_log().read_after(head, 100)
        assert [le.position for le in logged] == [head + 1, head + 2, head + 3, head + 4]
        assert [(le.event.type, le.event.aggregate_id) for le in logged] == [
            ("NodeCreated", "a"), ("NodeCreated", "b"), ("NodeUpdated", "a"), ("EdgeAdded", "a/follows/b")]
        assert isinstance(logged[0].event, NodeCreated) and logged[0].event.properties == {"name": "a"}
        assert logged[0].event.trace_context.startswith("00-0af7")


    async def test_a_commit_without_events_returns_the_head(self, store):
        head = await store.head()
        async with store.unit_of_work() as uow:
            assert (await uow.commit()).positions == {"0": head}


    async def test_leaving_without_commit_rolls_back_state_and_events(self, store):
        head = await store.head()
        with pytest.raises(RuntimeError):
            async with store.unit_of_work() as uow:
                await uow.nodes.add(Node.create(graph=GRAPH, node_id="a", type_name="User", properties={"name": "a"},
                                                schema=await uow.schemas.get(GRAPH), causation=causation()))
                await uow.flush()  # even flushed events vanish
                raise RuntimeError("boom")
        async with store.unit_of_work() as uow:
            assert await uow.nodes.get(GRAPH, "a") is None
            await uow.rollback()
        assert await store.head() == head
        assert await store.event_log().read_after(head, 10) == []


    async def test_repositories_work_only_inside_the_open_unit_of_work(self, store):
        """A handler that reads or writes outside ``async with uow:`` fails on every adapter,
        not only on the ones whose storage needs an open transaction."""
        uow = store.unit_of_work()

        async def outside() -> None:
            for call in (lambda: uow.schemas.get(GRAPH), lambda: uow.nodes.get(GRAPH, "a"),
                         lambda: uow.nodes.count_of_type(GRAPH, "User"),
                         lambda: uow.edges.get(EdgeKey(GRAPH, "a", "follows", "b")),
                         lambda: uow.idempotency.get(GRAPH, "r1"), lambda: uow.cascades.next(), uow.flush):
                with pytest.raises(Internal):
                    await call()

        await outside()  # not entered yet
        async with uow:
            assert await uow.nodes.get(GRAPH, "a") is None
        await outside()  # left again
        assert await store.head() == 1

    async def test_a_unit_of_work_is_used_once(self, store):
        committed, rolled_back = store.unit_of_work(), store.unit_of_work()
        async with committed:
            await committed.commit()
        async with rolled_back:
            pass
        for uow in (committed, rolled_back):
            with pytest.raises(Internal):
                async with uow:
                    pass  # pragma: no cover - refused on entry
        head = await store.head()
        async with store.unit_of_work() as uow:  # the refused entries left the store usable
            assert (await uow.commit()).positions == {"0": head}
