"""Contract of domain.ports.EventLog, the read side of the transactional outbox.

``read_after(position, limit, graph=...)`` returns committed events after ``position`` in
position order, at most ``limit`` of them (counted after the graph filter); positions on
one shard are strictly increasing and gap-free, also across rollbacks and lost races;
``head()`` is the highest position written (0 when empty). Every event type comes back
exactly as the aggregates recorded it: all fields, properties of every kind (kind and UTC
offset included), request id and trace context.

The ``event_log`` fixture is the reader the adapter's query side uses (see
``WriteStoreFixture.event_log``); events are written through the store's units of work.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from domain.edge import Edge
from domain.events import EVENT_TYPES, DomainEvent
from domain.node import Node
from domain.schema import Schema
from tests.command_samples import BORN, EDGE_TYPES, GRAPH, NODE_TYPES
from tests.contract.suites.write_fixtures import FULL_PROPS, T0, WriteStoreFixture, causation, schema

OTHER = "g2"


def assert_same_kinds(got: dict, want: dict) -> None:
    """``==`` alone lets True pass for 1 and a +02:00 time for its UTC twin."""
    assert got == want
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
    assert {k: v.utcoffset() for k, v in got.items() if isinstance(v, datetime)} == \
        {k: v.utcoffset() for k, v in want.items() if isinstance(v, datetime)}


class EventLogContract(WriteStoreFixture):
    async def write_nodes(self, store, *node_ids: str, graph: str = GRAPH) -> int:
        """One commit per node; returns the head after the last one."""
        for node_id in node_ids:
            await self.add_node(store, node_id, graph=graph)
        return await store.head()

    async def apply_schema(self, store, graph: str) -> None:
        async with store.unit_of_work() as uow:
            await uow.schemas.save(schema(graph))
            await uow.commit()

    async def test_an_empty_log_has_head_zero_and_nothing_to_read(self, empty_store, event_log):
        assert await event_log.head() == 0
        assert await event_log.read_after(0, 10) == []
        assert await event_log.read_after(0, 10, graph=GRAPH) == []

    async def test_read_after_returns_the_events_after_a_position_in_order(self, store, event_log):
        head = await self.write_nodes(store, "a", "b", "c", "d")
        everything = await event_log.read_after(0, 100)
        assert [le.position for le in everything] == list(range(1, head + 1))
        assert [le.event.type for le in everything] == ["SchemaApplied"] + ["NodeCreated"] * 4
        assert [le.event.aggregate_id for le in everything[1:]] == ["a", "b", "c", "d"]
        assert [le.position for le in await event_log.read_after(2, 100)] == [3, 4, 5]
        assert await event_log.read_after(head, 100) == []
        assert await event_log.read_after(head + 10, 100) == []
        assert await event_log.head() == head == await store.head()

    async def test_limit_bounds_a_read_and_pages_cover_the_log_exactly_once(self, store, event_log):
        await self.write_nodes(store, "a", "b", "c", "d", "e")
        assert [le.position for le in await event_log.read_after(0, 2)] == [1, 2]
        assert [le.position for le in await event_log.read_after(4, 1)] == [5]
        pages, position = [], 0
        while page := await event_log.read_after(position, 2):
            assert len(page) <= 2
            pages += page
            position = page[-1].position
        assert pages == await event_log.read_after(0, 100)
        assert len(pages) == 6

    async def test_the_graph_filter_keeps_global_positions_and_limits_after_filtering(self, store, event_log):
        await self.apply_schema(store, OTHER)  # position 2
        await self.add_node(store, "a")  # 3
        await self.add_node(store, "x", graph=OTHER)  # 4
        await self.add_node(store, "b")  # 5
        await self.add_node(store, "y", graph=OTHER)  # 6
        await self.add_node(store, "z", graph=OTHER)  # 7
        mine = await event_log.read_after(0, 100, graph=GRAPH)
        assert [(le.position, le.event.aggregate_id) for le in mine] == [(1, "schema"), (3, "a"), (5, "b")]
        assert all(le.event.graph == GRAPH for le in mine)
        theirs = await event_log.read_after(0, 3, graph=OTHER)
        assert [(le.position, le.event.aggregate_id) for le in theirs] == [(2, "schema"), (4, "x"), (6, "y")]
        assert [le.position for le in await event_log.read_after(4, 10, graph=OTHER)] == [6, 7]
        assert [le.position for le in await event_log.read_after(3, 1, graph=GRAPH)] == [5]
        assert await event_log.read_after(5, 10, graph=GRAPH) == []
        assert await event_log.read_after(0, 10, graph="nope") == []
        everything = await event_log.read_after(0, 100)
        assert sorted(mine + theirs + (await event_log.read_after(6, 10, graph=OTHER)),
                      key=lambda le: le.position) == everything

    async def test_positions_stay_gap_free_across_rollbacks_and_lost_races(self, store, event_log):
        await self.add_node(store, "a")
        with pytest.raises(RuntimeError):
            async with store.unit_of_work() as uow:
                await uow.nodes.add(Node.create(graph=GRAPH, node_id="gone", type_name="User",
                                                properties={"name": "gone"}, schema=await uow.schemas.get(GRAPH),
                                                causation=causation()))
                await uow.flush()  # positions were handed out, then rolled back
                raise RuntimeError("boom")

        async def update(age: int) -> None:
            async with store.unit_of_work() as uow:
                node = await uow.nodes.get(GRAPH, "a")
                await asyncio.sleep(0)
                node.update(properties={"age": age}, update_mask=None, expected_version=1,
                            schema=await uow.schemas.get(GRAPH), causation=causation(request_id=f"r{age}"))
                await uow.nodes.save(node)
                await uow.commit()

        outcomes = await asyncio.gather(update(1), update(2), return_exceptions=True)
        assert sum(isinstance(o, Exception) for o in outcomes) == 1  # one lost the race
        async with store.unit_of_work() as uow:
            b = Node.create(graph=GRAPH, node_id="b", type_name="User", properties={"name": "b"},
                            schema=await uow.schemas.get(GRAPH), causation=causation())
            await uow.nodes.add(b)
            committed = await uow.commit()
        logged = await event_log.read_after(0, 100)
        assert [le.position for le in logged] == list(range(1, len(logged) + 1))
        assert [(le.event.type, le.event.aggregate_id) for le in logged] == [
            ("SchemaApplied", "schema"), ("NodeCreated", "a"), ("NodeUpdated", "a"), ("NodeCreated", "b")]
        assert len({le.shard for le in logged}) == 1
        assert committed.positions == {logged[-1].shard: logged[-1].position}
        assert await event_log.head() == logged[-1].position

    async def test_a_reader_sees_committed_events_only(self, store, event_log):
        head = await event_log.head()
        async with store.unit_of_work() as uow:
            await uow.nodes.add(Node.create(graph=GRAPH, node_id="a", type_name="User", properties={"name": "a"},
                                            schema=await uow.schemas.get(GRAPH), causation=causation()))
            flushed = await uow.flush()
            assert await event_log.read_after(head, 10) == []
            assert await event_log.head() == head
            await uow.commit()
        logged = await event_log.read_after(head, 10)
        assert [le.position for le in logged] == list(flushed.positions.values())
        assert await event_log.head() == head + 1

    async def test_every_event_type_round_trips_fully_populated(self, store, event_log):
        head = await event_log.head()
        recorded: list[DomainEvent] = []

        def took(aggregate) -> None:  # the events the unit of work is about to take
            recorded.extend(aggregate.events)

        graph = "round-trip"
        at = [T0 + timedelta(microseconds=i) for i in range(8)]
        async with store.unit_of_work() as uow:
            s = Schema(graph)
            s.apply(NODE_TYPES, EDGE_TYPES, expected_version=0, type_in_use=lambda k, n: False,
                    causation=causation(at[0], "req-schema", "00-11111111111111111111111111111111-1111111111111111-01"))
            took(s)
            await uow.schemas.save(s)
            zoe = Node.create(graph=graph, node_id="zoe", type_name="User", properties=dict(FULL_PROPS), schema=s,
                              causation=causation(at[1], "req-zoe", "00-22222222222222222222222222222222-2222222222222222-00"))
            took(zoe)
            await uow.nodes.add(zoe)
            inf = Node.create(graph=graph, node_id="inf", type_name="User",
                              properties={"name": "∞", "score": float("inf"), "age": 0, "active": True},
                              schema=s, causation=causation(at[2], "req-inf"))
            took(inf)
            await uow.nodes.add(inf)
            await uow.commit()
        async with store.unit_of_work() as uow:
            s = await uow.schemas.get(graph)
            zoe = await uow.nodes.get(graph, "zoe")
            zoe.update(properties={"score": float("-inf"), "active": True},
                       update_mask=["properties.score", "properties.active", "properties.email"],  # clears email
                       expected_version=1, schema=s, causation=causation(at[3], "req-update"))
            took(zoe)
            await uow.nodes.save(zoe)
            edge = Edge.create(graph=graph, source="zoe", type_name="follows", target="inf",
                               properties={"since": BORN}, schema=s, causation=causation(at[4], "req-edge"))
            took(edge)
            await uow.edges.add(edge)
            await uow.commit()
        async with store.unit_of_work() as uow:
            edge = await uow.edges.get(edge.key)
            edge.remove(causation(at[5], "req-unlink"))
            took(edge)
            await uow.edges.remove_many([edge])
            inf = await uow.nodes.get(graph, "inf")
            inf.delete(expected_version=None, causation=causation(at[6], "req-delete"))
            took(inf)
            await uow.nodes.save(inf)
            await uow.commit()

        logged = await event_log.read_after(head, 100)
        assert {e.type for e in recorded} == set(EVENT_TYPES)  # the test covers every event type
        assert [le.event for le in logged] == recorded  # dataclass ==: same type, every field equal
        assert [le.position for le in logged] == list(range(head + 1, head + 1 + len(recorded)))
        for le, want in zip(logged, recorded):
            got = le.event
            assert (got.event_id, got.request_id, got.trace_context) == \
                (want.event_id, want.request_id, want.trace_context)
            assert got.request_id.startswith("req-") and got.trace_context.startswith("00-")
            assert got.occurred_at == want.occurred_at and got.occurred_at.utcoffset() == timedelta(0)
            if hasattr(want, "properties"):
                assert_same_kinds(got.properties, want.properties)
        by_type: dict[str, DomainEvent] = {}
        for le in logged:
            by_type.setdefault(le.event.type, le.event)
        assert by_type["NodeCreated"].properties["born"] == BORN  # zoe's, the first NodeCreated
        assert by_type["NodeUpdated"].changed == ("active", "email", "score")
        assert by_type["EdgeAdded"].create_time == at[4]
        assert by_type["SchemaApplied"].schema == recorded[0].schema
        assert await event_log.read_after(head, 100, graph=graph) == logged
