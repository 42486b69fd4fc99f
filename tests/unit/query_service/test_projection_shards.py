"""The query side over a sharded event log (one shard per graph, as on DynamoDB): the
projection progress per shard, consistency tokens naming several shards, and the
projector keeping one checkpoint per shard."""

from __future__ import annotations

import asyncio

import pytest

from command_service.bootstrap import build_for_tests
from domain.errors import Reason, Unavailable, ValidationFailed
from infrastructure.persistence.memory.read_model import InMemoryReadModel
from infrastructure.tokens import TokenSigner
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.queries.get_node import GetNode
from query_service.bootstrap import build_application
from query_service.projection.progress import ProjectionProgress
from query_service.projection.projector import PROJECTOR_NAME
from tests.command_samples import apply_sample_schema, user
from tests.fakes import FakeClock, InMemoryWriteStore, SequentialIds
from tests.query_support import SECRET, Events
from tests.unit.query_service.conftest import ListEventLog

# --- ProjectionProgress ----------------------------------------------------------------------


async def test_progress_is_kept_per_shard_and_never_moves_back():
    progress = ProjectionProgress()
    assert progress.position("g") == 0 and progress.positions() == {}
    progress.advance("g", 3)
    progress.advance("g", 2)  # an older report changes nothing
    progress.advance_all({"h": 1, "g": 1})
    assert progress.positions() == {"g": 3, "h": 1}
    assert (progress.position("g"), progress.position("h"), progress.position("never")) == (3, 1, 0)
    assert progress.reached({"g": 3, "h": 1}) and progress.reached({}) and progress.reached({"never": 0})
    assert not progress.reached({"g": 3, "h": 2})
    assert progress.behind({"g": 2, "h": 4, "never": 1}) == {"h": (4, 1), "never": (1, 0)}
    assert progress.behind({"g": 3}) == {}


async def test_wait_for_needs_every_shard_it_names():
    progress = ProjectionProgress()
    woken: list[int] = []
    progress.on_behind = lambda: woken.append(1)
    progress.advance("g", 5)
    waiting = asyncio.ensure_future(progress.wait_for({"g": 5, "h": 2}, 5.0))
    await asyncio.sleep(0.01)
    assert not waiting.done() and woken == [1]  # behind: the projector is woken
    progress.advance("h", 1)
    await asyncio.sleep(0.01)
    assert not waiting.done()  # "g" is there, "h" is not yet
    progress.advance("h", 2)
    assert await asyncio.wait_for(waiting, 1) is True
    assert await progress.wait_for({"g": 5, "h": 2}, 0) is True
    assert await progress.wait_for({"g": 5, "h": 3}, 0.02) is False  # one lagging shard is enough to time out
    assert progress.behind({"g": 5, "h": 3}) == {"h": (3, 2)}


async def test_a_replica_waits_on_the_stored_checkpoints_of_every_shard():
    stored = {"g": 1}

    async def refresh():
        return dict(stored)

    progress = ProjectionProgress(refresh=refresh, poll_interval=0.005)
    waiting = asyncio.ensure_future(progress.wait_for({"g": 2, "h": 1}, 5.0))
    await asyncio.sleep(0.02)
    stored["g"] = 2
    await asyncio.sleep(0.02)
    assert not waiting.done()
    stored["h"] = 1
    assert await asyncio.wait_for(waiting, 1) is True
    assert progress.positions() == {"g": 2, "h": 1}


# --- ConsistencyGate -------------------------------------------------------------------------


def gate(progress: ProjectionProgress, log: ListEventLog | None = None, max_wait: float = 0.05) -> ConsistencyGate:
    return ConsistencyGate(signer=TokenSigner(SECRET), progress=progress, event_log=log or ListEventLog(),
                           time_remaining=lambda: None, max_wait=max_wait)


def token(positions) -> str:
    return TokenSigner(SECRET).sign({"p": positions})


async def test_a_token_names_a_position_in_each_of_several_shards():
    progress = ProjectionProgress()
    g = gate(progress)
    assert g.required_positions(token({"g": 3, "h": 2})) == {"g": 3, "h": 2}
    for bad in ({"g": -1}, {"g": True}, {"g": "3"}, {"g": 1.5}, [3], 3, None):
        with pytest.raises(ValidationFailed) as err:
            g.required_positions(token(bad))
        assert err.value.reason == Reason.INVALID_CONSISTENCY_TOKEN

    progress.advance("g", 3)
    with pytest.raises(Unavailable) as err:  # no graph: every shard counts; "g" is there, "h" is not
        await g.ensure(Consistency(at_least_token=token({"g": 3, "h": 2})))
    assert err.value.reason == Reason.CONSISTENCY_NOT_REACHED and err.value.retry_after_seconds > 0
    assert err.value.metadata == {"shard": "h", "required_position": "2", "projected_position": "0"}
    waiting = asyncio.ensure_future(gate(progress, max_wait=5.0).ensure(
        Consistency(at_least_token=token({"g": 3, "h": 2}))))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    progress.advance("h", 2)
    await asyncio.wait_for(waiting, 1)
    await g.ensure(Consistency(at_least_token=token({"g": 1, "h": 2})))  # reached: returns at once


async def test_a_read_of_one_graph_waits_only_for_its_own_shard_of_a_token():
    """On DynamoDB a shard is a graph: a token's other shards must neither hold a read of graph
    "g" back nor be named in its CONSISTENCY_NOT_REACHED (that would tell about graph "h")."""
    progress = ProjectionProgress()
    progress.advance("g", 3)
    g = gate(progress, ListEventLog())
    both = Consistency(at_least_token=token({"g": 3, "h": 2}))
    await g.ensure(both, "g")  # "h" lagging does not hold "g" back
    await g.ensure(Consistency(at_least_token=token({"h": 2})), "g")  # nothing of "g" to wait for
    with pytest.raises(Unavailable) as err:
        await g.ensure(Consistency(at_least_token=token({"g": 4, "h": 2})), "g")
    assert err.value.metadata == {"shard": "g", "required_position": "4", "projected_position": "3"}
    with pytest.raises(Unavailable) as err:
        await g.ensure(both, "h")
    assert err.value.metadata == {"shard": "h", "required_position": "2", "projected_position": "0"}
    assert "'g'" not in err.value.message


async def test_fully_consistent_waits_for_the_head_of_the_graphs_shard_only():
    log, ev_g, ev_h = ListEventLog(), Events("g"), Events("h")
    log.append(ev_g.schema(), ev_g.create("a"), ev_h.schema(), ev_h.create("x"), ev_h.create("y"))
    progress = ProjectionProgress()
    progress.advance("g", 2)
    g = gate(progress, log)
    await g.ensure(Consistency(fully_consistent=True), "g")  # "h" lagging does not hold "g" back
    with pytest.raises(Unavailable) as err:
        await g.ensure(Consistency(fully_consistent=True), "h")
    assert err.value.metadata == {"shard": "h", "required_position": "3", "projected_position": "0"}
    with pytest.raises(Unavailable):
        await g.ensure(Consistency(fully_consistent=True))  # no graph: every shard's head
    progress.advance("h", 3)
    await g.ensure(Consistency(fully_consistent=True), "h")
    await g.ensure(Consistency(fully_consistent=True))


# --- Projector -------------------------------------------------------------------------------


class TwoGraphs:
    """The command side on the fake write store (its log sharded per graph) and a projecting
    query side over the same log and an in-memory read model."""

    def __init__(self) -> None:
        self.store = InMemoryWriteStore()
        self.commands = build_for_tests(self.store, clock=FakeClock(), ids=SequentialIds(), secret=SECRET)
        self.rm = InMemoryReadModel()
        self.log = self.store.event_log()
        self.queries = build_application(read_model=self.rm, store=self.rm, event_log=self.log,
                                         signer=TokenSigner(SECRET), projector_enabled=True, poll_interval=0.01,
                                         max_consistency_wait=1.0)

    @property
    def projector(self):
        return self.queries.projector

    async def checkpoints(self) -> dict[str, int]:
        return await self.rm.positions(PROJECTOR_NAME)


async def test_the_projector_projects_every_shard_with_a_checkpoint_each():
    w = TwoGraphs()
    for graph in ("g", "h"):
        await w.commands.dispatch(apply_sample_schema(graph=graph))
    for node_id in ("a", "b", "c"):
        await w.commands.dispatch(user(node_id, graph="g"))
    await w.commands.dispatch(user("x", graph="h"))
    assert await w.log.shards() == ["g", "h"]
    assert await w.log.heads() == {"g": 4, "h": 2}
    assert await w.projector.catch_up() == 6
    assert await w.checkpoints() == {"g": 4, "h": 2}
    assert w.projector.progress.positions() == {"g": 4, "h": 2}
    assert (await w.queries.queries.get_node(GetNode("g", "c"))).id == "c"
    assert (await w.queries.queries.get_node(GetNode("h", "x"))).id == "x"
    assert (await w.rm.get_nodes("h", ["a", "b", "c"])) == {}  # each graph's events stayed in its graph

    await w.commands.dispatch(user("y", graph="h"))  # only one shard moves
    assert await w.projector.catch_up() == 1
    assert await w.checkpoints() == {"g": 4, "h": 3}
    assert await w.projector.catch_up() == 0  # nothing left in any shard


async def test_a_write_token_waits_for_its_graphs_shard_with_the_projector_running():
    w = TwoGraphs()
    for graph in ("g", "h"):
        await w.commands.dispatch(apply_sample_schema(graph=graph))
    task = asyncio.create_task(w.projector.run())
    try:
        for i in range(5):
            graph = "gh"[i % 2]
            written = await w.commands.dispatch(user(f"n{i}", graph=graph))
            assert TokenSigner(SECRET).verify(written.consistency_token, field="t", reason="BAD")["p"] == \
                {graph: await w.store.head(graph)}
            view = await w.queries.queries.get_node(GetNode(graph, f"n{i}",
                                                            Consistency(at_least_token=written.consistency_token)))
            assert view.id == f"n{i}"
    finally:
        w.projector.stop()
        await task
    assert await w.checkpoints() == await w.log.heads() == {"g": 4, "h": 3}


async def test_a_restarted_projector_resumes_each_shard_from_its_own_checkpoint():
    w = TwoGraphs()
    for graph in ("g", "h"):
        await w.commands.dispatch(apply_sample_schema(graph=graph))
    await w.projector.catch_up()
    await w.commands.dispatch(user("a", graph="g"))
    await w.commands.dispatch(user("b", graph="g"))
    await w.commands.dispatch(user("x", graph="h"))
    await w.rm.reset(PROJECTOR_NAME, {"g": 2, "h": 1})  # as if "g" had got further before the restart
    restarted = build_application(read_model=w.rm, store=w.rm, event_log=w.log, signer=TokenSigner(SECRET),
                                  projector_enabled=True)
    assert await restarted.projector.start_position() == {"g": 2, "h": 1}
    assert restarted.projector.progress.positions() == {"g": 2, "h": 1}
    assert await restarted.projector.catch_up() == 2  # "b" in "g", "x" in "h"; "a" is not replayed
    assert await w.rm.positions(PROJECTOR_NAME) == {"g": 3, "h": 2}
