"""One contract suite for the write-side ports (SchemaRepository, NodeRepository,
EdgeRepository, IdempotencyStore, CascadeJobQueue, UnitOfWork + EventLog).

Subclass once per adapter and implement ``make_store`` (an object with
``unit_of_work()``, ``event_log()``, ``head()``, ``purge_idempotency()``, ``close()``).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta, timezone

import pytest

from domain.edge import Direction, Edge
from domain.errors import AlreadyExists, NotFound, Reason, RuleViolated, VersionConflict
from domain.events import Causation, NodeCreated
from domain.node import Node
from domain.ports import CascadeJob, IdempotencyRecord
from domain.schema import Schema
from domain.values import EdgeKey
from tests.command_samples import BORN, EDGE_TYPES, GRAPH, NODE_TYPES

T0 = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
_EVENT_IDS = itertools.count(1)


def causation(at: datetime = T0, request_id: str = "req") -> Causation:
    return Causation(occurred_at=at, new_event_id=lambda: f"evt-{next(_EVENT_IDS)}",
                     request_id=request_id, trace_context="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


def schema() -> Schema:
    s = Schema(GRAPH)
    s.apply(NODE_TYPES, EDGE_TYPES, expected_version=0, type_in_use=lambda k, n: False, causation=causation())
    return s


FULL_PROPS = {"name": "Zoë 🚀 名前", "email": "zoe@example.com", "age": -(2**63), "score": 0.1 + 0.2,
              "active": False, "born": BORN, "badge": 2**63 - 1}


class WriteStoreContract:
    async def make_store(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture
    async def store(self):
        store = await self.make_store()
        async with store.unit_of_work() as uow:
            s = schema()
            await uow.schemas.save(s)
            await uow.commit()
        yield store
        await store.close()

    async def add_node(self, store, node_id: str, **props) -> Node:
        async with store.unit_of_work() as uow:
            node = Node.create(graph=GRAPH, node_id=node_id, type_name="User",
                               properties={"name": node_id, **props}, schema=await uow.schemas.get(GRAPH),
                               causation=causation())
            await uow.nodes.add(node)
            await uow.commit()
        return node

    async def add_edge(self, store, source: str, edge_type: str, target: str, at: datetime = T0) -> None:
        async with store.unit_of_work() as uow:
            e = Edge.create(graph=GRAPH, source=source, type_name=edge_type, target=target, properties={},
                            schema=await uow.schemas.get(GRAPH), causation=causation(at))
            await uow.edges.add(e)
            await uow.commit()

    # --- schemas -------------------------------------------------------------------
    async def test_schema_round_trips_and_is_version_checked(self, store):
        async with store.unit_of_work() as uow:
            loaded = await uow.schemas.get(GRAPH)
            assert loaded.version == 1 and loaded.node_types == schema().node_types
            assert loaded.edge_types == schema().edge_types and loaded.update_time == T0
            assert (await uow.schemas.get("empty")).version == 0
            stale = schema()  # version 1 again
            with pytest.raises(VersionConflict):
                await uow.schemas.save(stale)

    # --- nodes ---------------------------------------------------------------------
    async def test_a_fully_populated_node_round_trips(self, store):
        node = await self.add_node(store, "zoë-1".replace("ë", "e"), **{k: v for k, v in FULL_PROPS.items()
                                                                        if k != "name"})
        async with store.unit_of_work() as uow:
            loaded = await uow.nodes.get(GRAPH, node.id)
        assert loaded is not None
        assert loaded.properties == {**FULL_PROPS, "name": node.id}
        assert loaded.properties["born"].utcoffset() == timedelta(0)
        assert type(loaded.properties["score"]) is float and type(loaded.properties["active"]) is bool
        assert (loaded.type, loaded.version, loaded.create_time, loaded.update_time, loaded.deleted) == \
            ("User", 1, T0, T0, False)
        async with store.unit_of_work() as uow:
            await uow.nodes.add(Node(graph=GRAPH, id="u2", type="User", properties={"name": FULL_PROPS["name"]},
                                     version=1, create_time=T0, update_time=T0))
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert (await uow.nodes.get(GRAPH, "u2")).properties["name"] == FULL_PROPS["name"]

    async def test_adding_a_taken_node_id_already_exists(self, store):
        await self.add_node(store, "a")
        async with store.unit_of_work() as uow:
            with pytest.raises(AlreadyExists) as err:
                await uow.nodes.add(Node(graph=GRAPH, id="a", type="User", properties={"name": "x"}, version=1,
                                         create_time=T0, update_time=T0))
        assert err.value.reason == Reason.NODE_ALREADY_EXISTS

    async def test_get_many_and_count_of_type(self, store):
        for n in ("a", "b", "c"):
            await self.add_node(store, n)
        async with store.unit_of_work() as uow:
            found = await uow.nodes.get_many(GRAPH, ["a", "c", "zz"])
            assert set(found) == {"a", "c"}
            c = await uow.nodes.get(GRAPH, "c")
            c.delete(expected_version=None, causation=causation())
            await uow.nodes.save(c)
            assert await uow.nodes.count_of_type(GRAPH, "User") == 2
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert (await uow.nodes.get(GRAPH, "c")).deleted

    async def test_save_is_conditional_on_the_loaded_version(self, store):
        await self.add_node(store, "a")
        async with store.unit_of_work() as uow:
            stale = await uow.nodes.get(GRAPH, "a")
        async with store.unit_of_work() as uow:
            fresh = await uow.nodes.get(GRAPH, "a")
            fresh.update(properties={"age": 1}, update_mask=None, expected_version=None,
                         schema=await uow.schemas.get(GRAPH), causation=causation())
            await uow.nodes.save(fresh)
            await uow.commit()
        async with store.unit_of_work() as uow:
            stale.update(properties={"age": 2}, update_mask=None, expected_version=None,
                         schema=await uow.schemas.get(GRAPH), causation=causation())
            with pytest.raises(VersionConflict):
                await uow.nodes.save(stale)
        async with store.unit_of_work() as uow:
            assert (await uow.nodes.get(GRAPH, "a")).properties["age"] == 1

    async def test_a_concurrent_version_conflict_lets_exactly_one_writer_commit(self, store):
        await self.add_node(store, "a")
        async with store.unit_of_work() as uow:
            read_version = (await uow.nodes.get(GRAPH, "a")).version

        async def update(age: int) -> str:
            async with store.unit_of_work() as uow:
                node = await uow.nodes.get(GRAPH, "a")
                await asyncio.sleep(0)
                node.update(properties={"age": age}, update_mask=None, expected_version=read_version,
                            schema=await uow.schemas.get(GRAPH), causation=causation(request_id=f"r{age}"))
                await uow.nodes.save(node)
                await uow.commit()
            return "ok"

        head = await store.head()
        outcomes = await asyncio.gather(update(1), update(2), return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["VersionConflict", "str"]
        async with store.unit_of_work() as uow:
            node = await uow.nodes.get(GRAPH, "a")
        assert node.version == 2 and node.properties["age"] in (1, 2)
        assert await store.head() == head + 1  # the loser wrote no event

    async def test_unique_claims_keep_kinds_apart(self, store):
        async with store.unit_of_work() as uow:
            await uow.nodes.claim_unique(GRAPH, "User", "badge", 1, "a")
            await uow.nodes.claim_unique(GRAPH, "User", "badge", "1", "b")
            await uow.nodes.claim_unique(GRAPH, "User", "badge", True, "c")
            await uow.nodes.claim_unique(GRAPH, "User", "badge", 1, "a")  # re-claim by the holder is fine
            with pytest.raises(RuleViolated) as err:
                await uow.nodes.claim_unique(GRAPH, "User", "badge", 1, "z")
            assert err.value.reason == Reason.UNIQUE_VIOLATED
            assert await uow.nodes.unique_holder(GRAPH, "User", "badge", "1") == "b"
            await uow.nodes.claim_unique(GRAPH, "User", "born", BORN, "a")
            assert await uow.nodes.unique_holder(GRAPH, "User", "born", BORN.astimezone(timezone.utc)) == "a"
            await uow.nodes.release_unique(GRAPH, "User", "badge", 1, "someone-else")  # not the holder: no-op
            assert await uow.nodes.unique_holder(GRAPH, "User", "badge", 1) == "a"
            await uow.nodes.release_unique(GRAPH, "User", "badge", 1, "a")
            assert await uow.nodes.unique_holder(GRAPH, "User", "badge", 1) is None
            await uow.commit()

    # --- edges ---------------------------------------------------------------------
    async def test_edges_counters_listing_and_reachability(self, store):
        for n in ("a", "b", "c"):
            await self.add_node(store, n)
        await self.add_edge(store, "a", "manages", "b", T0)
        await self.add_edge(store, "b", "manages", "c", T0 + timedelta(seconds=1))
        await self.add_edge(store, "a", "follows", "c", T0 + timedelta(seconds=2))
        async with store.unit_of_work() as uow:
            got = await uow.edges.get(EdgeKey(GRAPH, "a", "manages", "b"))
            assert got is not None and got.create_time == T0 and got.properties == {}
            assert await uow.edges.get(EdgeKey(GRAPH, "b", "manages", "a")) is None
            assert await uow.edges.count(GRAPH, "b", "manages", Direction.OUT) == 1
            assert await uow.edges.count(GRAPH, "b", "manages", Direction.IN) == 1
            assert await uow.edges.counts_for_node(GRAPH, "a") == {("manages", Direction.OUT): 1,
                                                                   ("follows", Direction.OUT): 1}
            out = await uow.edges.list_for_node(GRAPH, "a", Direction.OUT)
            assert [(e.type, e.target) for e in out] == [("follows", "c"), ("manages", "b")]  # newest first
            both = await uow.edges.list_for_node(GRAPH, "b", Direction.BOTH)
            assert [(e.source, e.target) for e in both] == [("b", "c"), ("a", "b")]  # OUT then IN
            assert len(await uow.edges.list_for_node(GRAPH, "a", Direction.OUT, limit=1)) == 1
            assert [e.type for e in await uow.edges.list_for_node(GRAPH, "a", Direction.OUT, "manages")] == ["manages"]
            assert await uow.edges.reaches(GRAPH, "manages", "a", "c")
            assert not await uow.edges.reaches(GRAPH, "manages", "c", "a")
            assert not await uow.edges.reaches(GRAPH, "follows", "b", "c")
            assert await uow.edges.reaches(GRAPH, "manages", "c", "c")  # a self-loop closes a cycle
            assert await uow.edges.count_of_type(GRAPH, "manages") == 2

    async def test_edges_are_unique_and_removal_restores_counters(self, store):
        for n in ("a", "b"):
            await self.add_node(store, n)
        await self.add_edge(store, "a", "follows", "b")
        async with store.unit_of_work() as uow:
            with pytest.raises(AlreadyExists) as err:
                await uow.edges.add(Edge(graph=GRAPH, source="a", type="follows", target="b", properties={},
                                         create_time=T0))
            assert err.value.reason == Reason.EDGE_ALREADY_EXISTS
            e = await uow.edges.get(EdgeKey(GRAPH, "a", "follows", "b"))
            e.remove(causation())
            await uow.edges.remove_many([e])
            with pytest.raises(NotFound):
                await uow.edges.remove_many([e])
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.edges.counts_for_node(GRAPH, "a") == {}
            assert await uow.edges.counts_for_node(GRAPH, "b") == {}
            assert await uow.edges.count_of_type(GRAPH, "follows") == 0

    async def test_removing_many_edges_that_share_counters_moves_each_by_all_of_them(self, store):
        for n in ("hub", "a", "b", "c"):
            await self.add_node(store, n)
        for n in ("a", "b", "c"):
            await self.add_edge(store, n, "follows", "hub")
        await self.add_edge(store, "hub", "follows", "a")
        async with store.unit_of_work() as uow:
            edges = [await uow.edges.get(EdgeKey(GRAPH, n, "follows", "hub")) for n in ("a", "b")]
            for e in edges:
                e.remove(causation())
            await uow.edges.remove_many(edges)
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.edges.counts_for_node(GRAPH, "hub") == {("follows", Direction.IN): 1,
                                                                     ("follows", Direction.OUT): 1}
            assert await uow.edges.counts_for_node(GRAPH, "a") == {("follows", Direction.IN): 1}
            assert await uow.edges.counts_for_node(GRAPH, "b") == {}
            assert [e.source for e in await uow.edges.list_for_node(GRAPH, "hub", Direction.IN)] == ["c"]
        assert [e.event.type for e in (await store.event_log().read_after(0, 100))[-2:]] == ["EdgeRemoved"] * 2

    async def test_removing_many_with_one_missing_is_not_found_and_keeps_counters_true(self, store):
        for n in ("hub", "a", "b"):
            await self.add_node(store, n)
        await self.add_edge(store, "a", "follows", "hub")
        async with store.unit_of_work() as uow:
            present = await uow.edges.get(EdgeKey(GRAPH, "a", "follows", "hub"))
            missing = Edge(graph=GRAPH, source="b", type="follows", target="hub", properties={}, create_time=T0)
            with pytest.raises(NotFound) as err:
                await uow.edges.remove_many([present, missing])
            assert err.value.reason == Reason.EDGE_NOT_FOUND
            assert err.value.resource_name == f"graphs/{GRAPH}/edges/b/follows/hub"
            stored = len(await uow.edges.list_for_node(GRAPH, "hub", Direction.IN))
            assert await uow.edges.count(GRAPH, "hub", "follows", Direction.IN) == stored

    # --- idempotency, cascade jobs ---------------------------------------------------
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

    # --- unit of work & event log ----------------------------------------------------
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
