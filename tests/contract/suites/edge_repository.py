"""Contract of domain.ports.EdgeRepository: counters, listing, reachability, remove_many."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.edge import Direction, Edge
from domain.errors import AlreadyExists, NotFound, Reason
from domain.values import EdgeKey
from tests.command_samples import GRAPH
from tests.contract.suites.write_fixtures import T0, WriteStoreFixture, causation


class EdgeRepositoryContract(WriteStoreFixture):
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
        assert [e.event.type for e in (await self.graph_events(store))[-2:]] == ["EdgeRemoved"] * 2


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

