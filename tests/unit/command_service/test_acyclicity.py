"""The acyclicity check as a bounded level-by-level BFS over ``EdgeRepository.out_neighbours``
(command_service.app.acyclicity), over the in-memory fake, and its cost in storage rounds."""

from __future__ import annotations

from typing import Sequence

import pytest

from command_service.app.acyclicity import guard_topology, reaches
from command_service.app.commands.batch_write import BatchWrite
from command_service.app.common import TransactionLimits
from command_service.bootstrap import CommandApplication, build_for_tests
from domain.edge import Edge
from domain.errors import Reason, RuleViolated, VersionConflict
from tests.command_samples import GRAPH, apply_sample_schema, edge, user
from tests.contract.suites.write_fixtures import T0
from tests.fakes import FakeClock, InMemoryUnitOfWork, InMemoryWriteStore, SequentialIds


class Counting:
    """An ``out_neighbours`` that counts its calls and the frontiers it was asked for."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._edges = uow.edges
        self.frontiers: list[list[str]] = []

    async def out_neighbours(self, graph: str, edge_type: str, node_ids: Sequence[str]) -> dict[str, list[str]]:
        self.frontiers.append(list(node_ids))
        return await self._edges.out_neighbours(graph, edge_type, node_ids)


def graph_of(*pairs: tuple[str, str], edge_type: str = "manages") -> InMemoryWriteStore:
    store = InMemoryWriteStore()
    for source, target in pairs:
        e = Edge(graph=GRAPH, source=source, type=edge_type, target=target, properties={}, create_time=T0)
        store.state.edges[e.key] = e
    return store


def chain(length: int) -> InMemoryWriteStore:
    """n0 -> n1 -> ... -> n{length}."""
    return graph_of(*((f"n{i}", f"n{i + 1}") for i in range(length)))


async def walk(store: InMemoryWriteStore, from_id: str, to_id: str, *, max_visited: int = 1000,
               edge_type: str = "manages") -> tuple[bool, list[list[str]]]:
    async with store.unit_of_work() as uow:
        edges = Counting(uow)
        found = await reaches(edges, GRAPH, edge_type, from_id, to_id, max_visited=max_visited)
    return found, edges.frontiers


@pytest.mark.parametrize("depth", [1, 2, 5, 30])
async def test_a_chain_of_depth_d_is_walked_one_call_per_level(depth: int) -> None:
    store = chain(depth)
    found, frontiers = await walk(store, "n0", f"n{depth}")
    assert found and len(frontiers) == depth  # found while reading level d
    found, frontiers = await walk(store, "n0", "elsewhere")
    assert not found and len(frontiers) == depth + 1  # the last call finds n{d} has no out-edges
    assert frontiers == [[f"n{i}"] for i in range(depth + 1)]
    found, frontiers = await walk(store, f"n{depth}", "n0")  # against the direction of the edges
    assert not found and len(frontiers) == 1


async def test_a_diamond_is_walked_by_level_and_each_node_once() -> None:
    store = graph_of(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"))
    found, frontiers = await walk(store, "a", "e")
    assert found and frontiers == [["a"], ["b", "c"], ["d"]]
    found, frontiers = await walk(store, "a", "z")
    assert not found and frontiers == [["a"], ["b", "c"], ["d"], ["e"]]  # d asked for once, not twice


async def test_a_node_reaches_itself_without_a_storage_call() -> None:
    found, frontiers = await walk(graph_of(), "a", "a")
    assert found and frontiers == []


async def test_an_existing_cycle_does_not_loop_forever() -> None:
    found, frontiers = await walk(graph_of(("a", "b"), ("b", "c"), ("c", "a")), "a", "z")
    assert not found and len(frontiers) == 3


async def test_only_the_edge_type_asked_for_is_followed() -> None:
    store = graph_of(("a", "b"))
    e = Edge(graph=GRAPH, source="b", type="follows", target="c", properties={}, create_time=T0)
    store.state.edges[e.key] = e
    assert not (await walk(store, "a", "c"))[0]
    assert (await walk(store, "b", "c", edge_type="follows"))[0]


async def test_no_path_between_disconnected_nodes() -> None:
    found, frontiers = await walk(graph_of(("a", "b"), ("c", "d")), "a", "d")
    assert not found and frontiers == [["a"], ["b"]]


async def test_past_the_bound_the_write_is_refused_not_answered() -> None:
    store = chain(10)  # 11 nodes
    with pytest.raises(RuleViolated) as err:
        await walk(store, "n0", "elsewhere", max_visited=5)
    assert err.value.reason == Reason.CYCLE_CHECK_TOO_LARGE
    assert err.value.metadata["subject"] == "manages"
    # a walk that reaches its answer, or ends, within the bound is answered
    assert (await walk(store, "n0", "n4", max_visited=5))[0]
    assert not (await walk(store, "n0", "elsewhere", max_visited=11))[0]
    assert not (await walk(store, "n5", "elsewhere", max_visited=6))[0]  # n5..n10: six nodes, walk over


async def test_the_bound_refuses_before_reading_another_level() -> None:
    store = graph_of(*(("root", f"k{i}") for i in range(50)), *((f"k{i}", f"x{i}") for i in range(50)))
    async with store.unit_of_work() as uow:
        edges = Counting(uow)
        with pytest.raises(RuleViolated):
            await reaches(edges, GRAPH, "manages", "root", "elsewhere", max_visited=20)
    assert edges.frontiers == [["root"]]  # the 50 children were never asked for


async def test_guard_topology_reads_then_stages_one_bump_per_unit_of_work() -> None:
    store = InMemoryWriteStore()
    for _ in range(2):
        async with store.unit_of_work() as uow:
            await guard_topology(uow.edges, GRAPH, "manages")
            await guard_topology(uow.edges, GRAPH, "manages")  # a batch's second acyclic edge
            await uow.commit()
    assert store.state.topology == {(GRAPH, "manages"): 2}


# --- through the command handlers -------------------------------------------------------

@pytest.fixture
async def app(store: InMemoryWriteStore) -> CommandApplication:
    app = build_for_tests(store, clock=FakeClock(), ids=SequentialIds(),
                          limits=TransactionLimits(max_cycle_check_nodes=50))
    await app.dispatch(apply_sample_schema())
    return app


@pytest.fixture
def store() -> InMemoryWriteStore:
    return InMemoryWriteStore()


@pytest.mark.parametrize("depth", [1, 3, 10])
async def test_closing_a_cycle_over_a_chain_of_depth_d_costs_at_most_d_plus_1_rounds(
        app: CommandApplication, store: InMemoryWriteStore, depth: int) -> None:
    await app.dispatch(BatchWrite(GRAPH, tuple(user(f"u{i}") for i in range(depth + 2))))
    await app.dispatch(BatchWrite(GRAPH, tuple(edge(f"u{i}", "manages", f"u{i + 1}") for i in range(depth))))
    before = store.out_neighbour_calls
    with pytest.raises(RuleViolated) as err:
        await app.dispatch(edge(f"u{depth}", "manages", "u0"))
    assert err.value.reason == Reason.CYCLE_DETECTED
    assert store.out_neighbour_calls - before <= depth + 1
    before = store.out_neighbour_calls
    await app.dispatch(edge("u0", "manages", f"u{depth + 1}"))  # a shortcut: walks u{d+1}'s descendants
    assert store.out_neighbour_calls - before == 1


async def test_adding_acyclic_edges_bumps_the_topology_version_once_per_write(
        app: CommandApplication, store: InMemoryWriteStore) -> None:
    await app.dispatch(BatchWrite(GRAPH, tuple(user(f"u{i}") for i in range(4))))
    await app.dispatch(edge("u0", "manages", "u1"))
    await app.dispatch(BatchWrite(GRAPH, (edge("u1", "manages", "u2"), edge("u2", "manages", "u3"))))
    await app.dispatch(edge("u0", "follows", "u1"))  # not acyclic: no bump
    assert store.state.topology == {(GRAPH, "manages"): 2}


async def test_a_cycle_check_past_the_configured_bound_refuses_the_edge(
        app: CommandApplication, store: InMemoryWriteStore) -> None:
    await app.dispatch(BatchWrite(GRAPH, tuple(user(f"u{i}") for i in range(62))))
    for start in range(0, 60, 20):
        await app.dispatch(BatchWrite(GRAPH, tuple(edge(f"u{i}", "manages", f"u{i + 1}")
                                                  for i in range(start, start + 20))))
    with pytest.raises(RuleViolated) as err:
        await app.dispatch(edge("u61", "manages", "u0"))  # u0's descendants: 61 nodes > 50
    assert err.value.reason == Reason.CYCLE_CHECK_TOO_LARGE
    await app.dispatch(edge("u59", "manages", "u61"))  # u61 has no descendants: answered


async def test_a_topology_changed_since_it_was_read_aborts_the_write(
        app: CommandApplication, store: InMemoryWriteStore) -> None:
    """What DynamoDB's condition catches: another writer's acyclic edge committed between
    this write's version read and its commit."""
    await app.dispatch(BatchWrite(GRAPH, (user("a"), user("b"))))
    async with store.unit_of_work() as uow:
        await guard_topology(uow.edges, GRAPH, "manages")
        another_writer_bumps(store)
        with pytest.raises(VersionConflict) as err:
            await uow.commit()
    assert err.value.reason == Reason.TOPOLOGY_VERSION_CONFLICT


def another_writer_bumps(store: InMemoryWriteStore) -> None:
    """Another writer's bump, committed behind the open unit of work's back (the fake's
    lock would otherwise serialise them)."""
    store.state.topology[(GRAPH, "manages")] = store.state.topology.get((GRAPH, "manages"), 0) + 1
