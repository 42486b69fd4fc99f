"""Contract of domain.ports.EdgeRepository: counters, listing, out-neighbours of a frontier,
topology versions, remove_many."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from domain.edge import Direction, Edge
from domain.errors import AlreadyExists, Internal, NotFound, Reason, VersionConflict
from domain.node import Node
from domain.values import EdgeKey
from tests.command_samples import GRAPH

OTHER = "other"
from tests.contract.suites.write_fixtures import T0, WriteStoreFixture, causation, schema


class EdgeBasicsContract(WriteStoreFixture):
    async def test_edges_counters_and_listing(self, store):
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


def neighbours(found: dict[str, list[str]]) -> dict[str, list[str]]:
    """An answer in a comparable form: targets sorted, nodes without any left out."""
    return {node: sorted(targets) for node, targets in found.items() if targets}


class OutNeighboursContract(WriteStoreFixture):
    async def other_graph(self, store: Any, *nodes: str) -> None:
        async with store.unit_of_work() as uow:
            await uow.schemas.save(schema(OTHER))
            await uow.commit()
        for n in nodes:
            await self.add_node(store, n, graph=OTHER)

    async def test_one_call_answers_for_the_whole_frontier_by_type_and_graph(self, store: Any) -> None:
        for n in ("a", "b", "c", "d"):
            await self.add_node(store, n)
        for source, edge_type, target in (("a", "manages", "b"), ("a", "manages", "c"), ("b", "manages", "d"),
                                          ("a", "follows", "d"), ("d", "follows", "a")):
            await self.add_edge(store, source, edge_type, target)
        await self.other_graph(store, "a", "d")
        async with store.unit_of_work() as uow:
            s = await uow.schemas.get(OTHER)
            await uow.edges.add(Edge.create(graph=OTHER, source="a", type_name="manages", target="d", properties={},
                                            schema=s, causation=causation()))
            await uow.commit()
        async with store.unit_of_work() as uow:
            frontier = ["a", "b", "c", "d", "nobody", "a"]  # repeats and unknown ids are fine
            assert neighbours(await uow.edges.out_neighbours(GRAPH, "manages", frontier)) == {
                "a": ["b", "c"], "b": ["d"]}
            assert neighbours(await uow.edges.out_neighbours(GRAPH, "follows", frontier)) == {"a": ["d"], "d": ["a"]}
            assert neighbours(await uow.edges.out_neighbours(OTHER, "manages", frontier)) == {"a": ["d"]}
            assert neighbours(await uow.edges.out_neighbours(GRAPH, "manages", ["c", "d"])) == {}
            assert neighbours(await uow.edges.out_neighbours(GRAPH, "manages", [])) == {}
            assert neighbours(await uow.edges.out_neighbours(GRAPH, "owns", ["a"])) == {}

    async def test_a_large_frontier_is_answered_whole(self, store: Any) -> None:
        """A frontier of 1201 ids, past any per-statement chunk (SQLite: 500), with edges
        leaving sources spread over all of it. Each edge is written with its endpoints in a
        unit of work of its own: a store may refuse one past its transaction size (DynamoDB:
        100 items) and check that endpoints exist."""
        sources = [*range(0, 1200, 48), 1199]
        for i in sources:
            async with store.unit_of_work() as uow:
                s = await uow.schemas.get(GRAPH)
                for node_id in (f"n{i}", f"n{i + 1}"):
                    await uow.nodes.add(Node.create(graph=GRAPH, node_id=node_id, type_name="User",
                                                    properties={"name": node_id}, schema=s, causation=causation()))
                await uow.edges.add(Edge.create(graph=GRAPH, source=f"n{i}", type_name="follows",
                                                target=f"n{i + 1}", properties={}, schema=s, causation=causation()))
                await uow.commit()
        async with store.unit_of_work() as uow:
            found = neighbours(await uow.edges.out_neighbours(GRAPH, "follows", [f"n{i}" for i in range(1201)]))
        assert found == {f"n{i}": [f"n{i + 1}"] for i in sources}

    async def test_what_the_unit_of_work_added_or_removed_counts_before_it_is_written(self, store: Any) -> None:
        for n in ("a", "b", "c"):
            await self.add_node(store, n)
        await self.add_edge(store, "a", "manages", "b")
        async with store.unit_of_work() as uow:
            s = await uow.schemas.get(GRAPH)
            await uow.edges.add(Edge.create(graph=GRAPH, source="b", type_name="manages", target="c", properties={},
                                            schema=s, causation=causation()))
            ab = await uow.edges.get(EdgeKey(GRAPH, "a", "manages", "b"))
            ab.remove(causation())
            await uow.edges.remove_many([ab])
            await uow.edges.add(Edge.create(graph=GRAPH, source="c", type_name="manages", target="a", properties={},
                                            schema=s, causation=causation()))
            assert neighbours(await uow.edges.out_neighbours(GRAPH, "manages", ["a", "b", "c"])) == {
                "b": ["c"], "c": ["a"]}
            await uow.rollback()
        async with store.unit_of_work() as uow:
            assert neighbours(await uow.edges.out_neighbours(GRAPH, "manages", ["a", "b", "c"])) == {"a": ["b"]}

    async def test_it_works_only_inside_the_open_unit_of_work(self, store: Any) -> None:
        uow = store.unit_of_work()
        with pytest.raises(Internal):
            await uow.edges.out_neighbours(GRAPH, "manages", ["a"])
        with pytest.raises(Internal):
            await uow.edges.topology_version(GRAPH, "manages")
        with pytest.raises(Internal):
            uow.edges.bump_topology(GRAPH, "manages", 0)


class TopologyVersionContract(WriteStoreFixture):
    async def versions(self, store: Any) -> tuple[int, int, int]:
        async with store.unit_of_work() as uow:
            return (await uow.edges.topology_version(GRAPH, "manages"),
                    await uow.edges.topology_version(GRAPH, "member_of"),
                    await uow.edges.topology_version(OTHER, "manages"))

    async def bump(self, store: Any, expected: int) -> None:
        async with store.unit_of_work() as uow:
            uow.edges.bump_topology(GRAPH, "manages", expected)
            await uow.commit()

    async def test_a_bump_counts_once_per_unit_of_work_and_shows_after_commit(self, store: Any) -> None:
        assert await self.versions(store) == (0, 0, 0)
        async with store.unit_of_work() as uow:
            assert await uow.edges.topology_version(GRAPH, "manages") == 0
            uow.edges.bump_topology(GRAPH, "manages", 0)
            uow.edges.bump_topology(GRAPH, "manages", 0)  # the same bump again: nothing more
            assert await uow.edges.topology_version(GRAPH, "manages") == 0  # its own bump is not visible
            await uow.commit()
        assert await self.versions(store) == (1, 0, 0)  # other types and graphs untouched
        await self.bump(store, 1)
        assert await self.versions(store) == (2, 0, 0)

    async def test_a_rolled_back_bump_leaves_the_version(self, store: Any) -> None:
        async with store.unit_of_work() as uow:
            uow.edges.bump_topology(GRAPH, "manages", 0)
            await uow.rollback()
        assert await self.versions(store) == (0, 0, 0)

    @pytest.mark.parametrize("stored, stale", [(0, 3), (1, 0), (2, 1)])
    async def test_a_stale_expected_version_fails_the_commit_and_writes_nothing(self, store: Any, stored: int,
                                                                             stale: int) -> None:
        for n in ("a", "b"):
            await self.add_node(store, n)
        for version in range(stored):
            await self.bump(store, version)
        head = await store.head()
        with pytest.raises(VersionConflict) as err:
            async with store.unit_of_work() as uow:
                await uow.edges.add(Edge.create(graph=GRAPH, source="a", type_name="manages", target="b",
                                                properties={}, schema=await uow.schemas.get(GRAPH),
                                                causation=causation()))
                uow.edges.bump_topology(GRAPH, "manages", stale)
                await uow.commit()
        assert err.value.reason == Reason.TOPOLOGY_VERSION_CONFLICT
        assert await store.head() == head
        async with store.unit_of_work() as uow:
            assert await uow.edges.get(EdgeKey(GRAPH, "a", "manages", "b")) is None
            assert await uow.edges.count(GRAPH, "a", "manages", Direction.OUT) == 0
            assert await uow.edges.topology_version(GRAPH, "manages") == stored

    async def test_two_different_expected_versions_in_one_unit_of_work_never_commit(self, store: Any) -> None:
        with pytest.raises(VersionConflict) as err:  # at the second bump or at the latest at commit
            async with store.unit_of_work() as uow:
                uow.edges.bump_topology(GRAPH, "manages", 0)
                uow.edges.bump_topology(GRAPH, "manages", 1)
                await uow.commit()
        assert err.value.reason == Reason.TOPOLOGY_VERSION_CONFLICT
        assert await self.versions(store) == (0, 0, 0)


class EdgeRepositoryContract(EdgeBasicsContract, OutNeighboursContract, TopologyVersionContract):
    """The whole EdgeRepository port."""
