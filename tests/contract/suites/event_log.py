"""Contract of domain.ports.EventLog, the read side of the transactional outbox.

The log is a set of shards; every event of a graph lives in ``shard_of(graph)`` (one
shard for every graph on SQLite, one per graph on the fake and on DynamoDB), so the
suite names shards only through ``shard_of`` and compares positions per shard.
``read_after(shard, position, limit, graph=...)`` returns committed events of the shard
after ``position`` in position order, at most ``limit`` of them (counted after the graph
filter); positions in a shard are strictly increasing and gap-free, also across rollbacks
and lost races; ``heads(shards)`` is the highest position written in each shard (0 when
empty), ``shards()`` every shard that may hold events. Every event type comes back exactly
as the aggregates recorded it: all fields, properties of every kind (kind and UTC offset
included), request id and trace context.

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


async def head_of(event_log, shard: str) -> int:
    return (await event_log.heads([shard]))[shard]


class EventLogContract(WriteStoreFixture):
    async def write_nodes(self, store, event_log, *node_ids: str, graph: str = GRAPH) -> int:
        """One commit per node; returns the head of the graph's shard after the last one."""
        for node_id in node_ids:
            await self.add_node(store, node_id, graph=graph)
        return await head_of(event_log, event_log.shard_of(graph))

    async def apply_schema(self, store, graph: str) -> None:
        async with store.unit_of_work() as uow:
            await uow.schemas.save(schema(graph))
            await uow.commit()

    async def test_an_empty_log_has_head_zero_and_nothing_to_read(self, empty_store, event_log):
        shard = event_log.shard_of(GRAPH)
        assert await event_log.heads([shard]) == {shard: 0}
        assert all(head == 0 for head in (await event_log.heads()).values())
        assert await event_log.read_after(shard, 0, 10) == []
        assert await event_log.read_after(shard, 0, 10, graph=GRAPH) == []

    async def test_read_after_returns_the_events_after_a_position_in_order(self, store, event_log):
        shard = event_log.shard_of(GRAPH)
        head = await self.write_nodes(store, event_log, "a", "b", "c", "d")
        everything = await event_log.read_after(shard, 0, 100)
        assert [le.position for le in everything] == list(range(1, head + 1))
        assert all(le.shard == shard for le in everything)
        assert [le.event.type for le in everything] == ["SchemaApplied"] + ["NodeCreated"] * 4
        assert [le.event.aggregate_id for le in everything[1:]] == ["a", "b", "c", "d"]
        assert [le.position for le in await event_log.read_after(shard, 2, 100)] == [3, 4, 5]
        assert await event_log.read_after(shard, head, 100) == []
        assert await event_log.read_after(shard, head + 10, 100) == []
        assert head == 5 == await self.shard_head(store)  # the writer's view of the log agrees

    async def test_heads_name_every_shard_asked_for_and_shards_list_the_written_ones(self, store, event_log):
        await self.apply_schema(store, OTHER)
        await self.add_node(store, "a")
        await self.add_node(store, "x", graph=OTHER)
        await self.add_node(store, "y", graph=OTHER)
        mine, theirs = event_log.shard_of(GRAPH), event_log.shard_of(OTHER)
        assert event_log.shard_of(GRAPH) == mine  # a graph's shard is fixed
        shards = await event_log.shards()
        assert mine in shards and theirs in shards and len(set(shards)) == len(shards)
        assert await event_log.shards() == shards  # a stable order
        everything = await event_log.heads()
        assert set(everything) == set(shards)
        for shard in {mine, theirs}:
            logged = await event_log.read_after(shard, 0, 100)
            assert everything[shard] == logged[-1].position == len(logged)
            assert await event_log.heads([shard]) == {shard: everything[shard]}
        assert await event_log.heads([mine, theirs]) == {mine: everything[mine], theirs: everything[theirs]}
        assert await event_log.heads([]) == {}
        # every graph's events, and only they, are in the graph's shard
        assert [le.event.aggregate_id for le in await event_log.read_after(mine, 0, 100, graph=GRAPH)] == \
            ["schema", "a"]
        assert [le.event.aggregate_id for le in await event_log.read_after(theirs, 0, 100, graph=OTHER)] == \
            ["schema", "x", "y"]
        for shard in shards:
            for le in await event_log.read_after(shard, 0, 100):
                assert le.shard == shard == event_log.shard_of(le.event.graph)

    async def test_limit_bounds_a_read_and_pages_cover_the_log_exactly_once(self, store, event_log):
        shard = event_log.shard_of(GRAPH)
        await self.write_nodes(store, event_log, "a", "b", "c", "d", "e")
        assert [le.position for le in await event_log.read_after(shard, 0, 2)] == [1, 2]
        assert [le.position for le in await event_log.read_after(shard, 4, 1)] == [5]
        pages, position = [], 0
        while page := await event_log.read_after(shard, position, 2):
            assert len(page) <= 2
            pages += page
            position = page[-1].position
        assert pages == await event_log.read_after(shard, 0, 100)
        assert len(pages) == 6

    async def test_the_graph_filter_keeps_shard_positions_and_limits_after_filtering(self, store, event_log):
        await self.apply_schema(store, OTHER)
        await self.add_node(store, "a")
        await self.add_node(store, "x", graph=OTHER)
        await self.add_node(store, "b")
        await self.add_node(store, "y", graph=OTHER)
        await self.add_node(store, "z", graph=OTHER)
        mine_shard, their_shard = event_log.shard_of(GRAPH), event_log.shard_of(OTHER)
        mine = await event_log.read_after(mine_shard, 0, 100, graph=GRAPH)
        assert [le.event.aggregate_id for le in mine] == ["schema", "a", "b"]
        assert all(le.event.graph == GRAPH and le.shard == mine_shard for le in mine)
        theirs = await event_log.read_after(their_shard, 0, 100, graph=OTHER)
        assert [le.event.aggregate_id for le in theirs] == ["schema", "x", "y", "z"]
        assert all(le.event.graph == OTHER and le.shard == their_shard for le in theirs)
        for logged in (mine, theirs):
            positions = [le.position for le in logged]
            assert positions == sorted(set(positions))  # increasing (gaps: other graphs sharing the shard)
        # the limit counts the graph's events only, and pages by position cover them exactly once
        assert await event_log.read_after(their_shard, 0, 3, graph=OTHER) == theirs[:3]
        assert await event_log.read_after(their_shard, theirs[1].position, 10, graph=OTHER) == theirs[2:]
        assert await event_log.read_after(mine_shard, mine[0].position, 1, graph=GRAPH) == mine[1:2]
        assert await event_log.read_after(mine_shard, mine[-1].position, 10, graph=GRAPH) == []
        assert await event_log.read_after(mine_shard, 0, 10, graph="nope") == []
        # a shard holds exactly the events of the graphs it is the shard of
        for shard in {mine_shard, their_shard}:
            expected = sorted([le for le in mine + theirs if le.shard == shard], key=lambda le: le.position)
            assert await event_log.read_after(shard, 0, 100) == expected

    async def test_positions_stay_gap_free_across_rollbacks_and_lost_races(self, store, event_log):
        shard = event_log.shard_of(GRAPH)
        await self.add_node(store, "a")
        with pytest.raises(RuntimeError):
            async with store.unit_of_work() as uow:
                await uow.nodes.add(Node.create(graph=GRAPH, node_id="gone", type_name="User",
                                                properties={"name": "gone"}, schema=await uow.schemas.get(GRAPH),
                                                causation=causation()))
                raise RuntimeError("boom")  # recorded, never committed

        async def update(age: int) -> None:
            async with store.unit_of_work() as uow:
                node = await uow.nodes.get(GRAPH, "a")
                await asyncio.sleep(0)
                node.update(properties={"age": age}, update_mask=None, expected_version=1,
                            schema=await uow.schemas.get(GRAPH), causation=causation(request_id=f"r{age}"))
                await uow.nodes.save(node)
                await uow.commit()  # the loser fails here, positions or not already handed out

        outcomes = await asyncio.gather(update(1), update(2), return_exceptions=True)
        assert sum(isinstance(o, Exception) for o in outcomes) == 1  # one lost the race
        async with store.unit_of_work() as uow:
            b = Node.create(graph=GRAPH, node_id="b", type_name="User", properties={"name": "b"},
                            schema=await uow.schemas.get(GRAPH), causation=causation())
            await uow.nodes.add(b)
            committed = await uow.commit()
        logged = await event_log.read_after(shard, 0, 100)
        assert [le.position for le in logged] == list(range(1, len(logged) + 1))
        assert [(le.event.type, le.event.aggregate_id) for le in logged] == [
            ("SchemaApplied", "schema"), ("NodeCreated", "a"), ("NodeUpdated", "a"), ("NodeCreated", "b")]
        assert {le.shard for le in logged} == {shard}
        assert committed.positions == {shard: logged[-1].position}
        assert await event_log.heads([shard]) == {shard: logged[-1].position}

    async def test_a_reader_sees_committed_events_only(self, store, event_log):
        shard = event_log.shard_of(GRAPH)
        head = await head_of(event_log, shard)
        async with store.unit_of_work() as uow:
            await uow.nodes.add(Node.create(graph=GRAPH, node_id="a", type_name="User", properties={"name": "a"},
                                            schema=await uow.schemas.get(GRAPH), causation=causation()))
            assert await event_log.read_after(shard, head, 10) == []
            assert await head_of(event_log, shard) == head
            committed = await uow.commit()
        logged = await event_log.read_after(shard, head, 10)
        assert [le.position for le in logged] == [committed.positions[shard]] == [head + 1]
        assert await head_of(event_log, shard) == head + 1

    async def test_every_event_type_round_trips_fully_populated(self, store, event_log):
        recorded: list[DomainEvent] = []

        def took(aggregate) -> None:  # the events the unit of work is about to take
            recorded.extend(aggregate.events)

        graph = "round-trip"
        shard = event_log.shard_of(graph)
        head = await head_of(event_log, shard)
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

        logged = await event_log.read_after(shard, head, 100)
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
        assert await event_log.read_after(shard, head, 100, graph=graph) == logged
