"""Contract of domain.ports.NodeRepository: fully populated round trip, conditional saves
(incl. a concurrent version conflict) and unique claims."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

import pytest

from domain.errors import AlreadyExists, Reason, RuleViolated, VersionConflict
from domain.node import Node
from tests.command_samples import BORN, GRAPH
from tests.contract.suites.write_fixtures import FULL_PROPS, T0, WriteStoreFixture, causation


class NodeRepositoryContract(WriteStoreFixture):
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

        head = await self.shard_head(store)
        outcomes = await asyncio.gather(update(1), update(2), return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["VersionConflict", "str"]
        async with store.unit_of_work() as uow:
            node = await uow.nodes.get(GRAPH, "a")
        assert node.version == 2 and node.properties["age"] in (1, 2)
        assert await self.shard_head(store) == head + 1  # the loser wrote no event


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

