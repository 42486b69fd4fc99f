"""Contract of domain.ports.UnitOfWork (+ command_service WriteUnitOfWork): commit and
rollback, the outbox appended in recorded order. Log positions come out of ``commit()``
only (there is no flush: a DynamoDB transaction cannot be written half-way): per shard,
the last position the commit appended; a commit without events names, for each shard it
names, that shard's head."""

from __future__ import annotations

import json

import pytest

from domain.edge import Edge
from domain.errors import Internal
from domain.events import NodeCreated
from domain.node import Node
from domain.ports import PendingIdempotencyRecord
from domain.values import EdgeKey
from tests.command_samples import GRAPH
from tests.contract.suites.write_fixtures import T0, WriteStoreFixture, causation, schema

OTHER = "g2"


class UnitOfWorkContract(WriteStoreFixture):
    async def test_events_are_appended_in_the_order_recorded(self, store):
        log = store.event_log()
        shard = log.shard_of(GRAPH)
        head = await self.shard_head(store)
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
            committed = await uow.commit()
        assert committed.positions == {shard: head + 4}
        assert await log.heads([shard]) == {shard: head + 4}
        logged = await log.read_after(shard, head, 100)
        assert [le.position for le in logged] == [head + 1, head + 2, head + 3, head + 4]
        assert [(le.event.type, le.event.aggregate_id) for le in logged] == [
            ("NodeCreated", "a"), ("NodeCreated", "b"), ("NodeUpdated", "a"), ("EdgeAdded", "a/follows/b")]
        assert isinstance(logged[0].event, NodeCreated) and logged[0].event.properties == {"name": "a"}
        assert logged[0].event.trace_context.startswith("00-0af7")


    async def test_a_commit_across_graphs_names_the_last_position_in_each_graphs_shard(self, store):
        async with store.unit_of_work() as uow:
            await uow.schemas.save(schema(OTHER))
            await uow.commit()
        log = store.event_log()
        shards = {log.shard_of(GRAPH), log.shard_of(OTHER)}  # one shard on SQLite, two on the fake
        before = await log.heads(sorted(shards))
        async with store.unit_of_work() as uow:
            for graph, node_id in ((GRAPH, "a"), (OTHER, "x"), (GRAPH, "b")):
                await uow.nodes.add(Node.create(graph=graph, node_id=node_id, type_name="User",
                                                properties={"name": node_id}, schema=await uow.schemas.get(graph),
                                                causation=causation()))
            committed = await uow.commit()
        assert set(committed.positions) == shards
        assert committed.positions == await log.heads(sorted(shards))
        appended = [le for shard in sorted(shards) for le in await log.read_after(shard, before[shard], 100)]
        assert len(appended) == 3
        for shard in shards:
            assert committed.positions[shard] == max(le.position for le in appended if le.shard == shard)

    async def test_a_commit_without_events_returns_the_heads_of_the_shards_it_names(self, store):
        await self.add_node(store, "a")
        async with store.unit_of_work() as uow:
            assert await uow.nodes.get(GRAPH, "a") is not None
            committed = await uow.commit()
        assert committed.positions, "a token must name at least one shard"
        assert committed.positions == await store.event_log().heads(list(committed.positions))
        assert await self.shard_head(store) == 2  # nothing was appended

    async def test_a_commit_without_events_but_a_request_id_names_the_graphs_shard(self, store):
        """A write that appended nothing still answers with a token covering its graph's shard:
        the response stored for its request id carries it to every retry."""
        log = store.event_log()
        shard = log.shard_of(GRAPH)
        async with store.unit_of_work() as uow:
            await uow.idempotency.put(PendingIdempotencyRecord(
                graph=GRAPH, request_id="r-noop", operation="DeleteNode", fingerprint="f" * 64, created_at=T0,
                render=lambda committed: json.dumps(committed.positions, sort_keys=True).encode()))
            committed = await uow.commit()
        assert committed.positions[shard] == await self.shard_head(store) == 1
        assert committed.positions == await log.heads(list(committed.positions))


    async def test_leaving_without_commit_rolls_back_state_and_events(self, store):
        head = await self.shard_head(store)
        with pytest.raises(RuntimeError):
            async with store.unit_of_work() as uow:
                await uow.nodes.add(Node.create(graph=GRAPH, node_id="a", type_name="User", properties={"name": "a"},
                                                schema=await uow.schemas.get(GRAPH), causation=causation()))
                raise RuntimeError("boom")
        async with store.unit_of_work() as uow:
            assert await uow.nodes.get(GRAPH, "a") is None
            await uow.rollback()
        assert await self.shard_head(store) == head
        assert await self.graph_events(store, after=head) == []


    async def test_repositories_work_only_inside_the_open_unit_of_work(self, store):
        """A handler that reads or writes outside ``async with uow:`` fails on every adapter,
        not only on the ones whose storage needs an open transaction."""
        uow = store.unit_of_work()

        async def outside() -> None:
            for call in (lambda: uow.schemas.get(GRAPH), lambda: uow.nodes.get(GRAPH, "a"),
                         lambda: uow.nodes.count_of_type(GRAPH, "User"),
                         lambda: uow.edges.get(EdgeKey(GRAPH, "a", "follows", "b")),
                         lambda: uow.idempotency.get(GRAPH, "r1"), lambda: uow.cascades.next(),
                         lambda: uow.idempotency.put(PendingIdempotencyRecord(
                             graph=GRAPH, request_id="r1", operation="CreateNode", fingerprint="f" * 64,
                             created_at=T0, render=lambda committed: b""))):
                with pytest.raises(Internal):
                    await call()

        await outside()  # not entered yet
        async with uow:
            assert await uow.nodes.get(GRAPH, "a") is None
        await outside()  # left again
        assert await self.shard_head(store) == 1

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
        head = await self.shard_head(store)
        await self.add_node(store, "a")  # the refused entries left the store usable
        assert await self.shard_head(store) == head + 1
