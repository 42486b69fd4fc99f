"""Invariant 3 on a real SQLite file: the cycle check is one ``out_neighbours`` statement
per BFS level, and every acyclic write serialises on the topology version row."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import AsyncIterator, Awaitable

import pytest

from command_service.app.commands.batch_write import BatchWrite
from command_service.bootstrap import CommandApplication, build_for_tests
from domain.errors import Reason, RuleViolated
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from tests.command_samples import GRAPH, apply_sample_schema, edge, user

pytestmark = pytest.mark.integration

NEIGHBOURS = "SELECT source, target FROM edges"


@pytest.fixture
async def store(tmp_path: Path) -> SqliteWriteStore:
    return await SqliteWriteStore.open(str(tmp_path / "edgewise.db"))


@pytest.fixture
async def app(store: SqliteWriteStore) -> AsyncIterator[CommandApplication]:
    app = build_for_tests(store)
    await app.dispatch(apply_sample_schema())
    await app.dispatch(BatchWrite(GRAPH, tuple(user(f"u{i}") for i in range(40))))
    yield app
    await app.close()


def topology_versions(tmp_path: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(str(tmp_path / "edgewise.db")) as conn:
        return conn.execute("SELECT graph, edge_type, version FROM topology_versions").fetchall()


async def traced(store: SqliteWriteStore, coro: Awaitable[object]) -> tuple[list[str], int, object]:
    statements: list[str] = []
    await store.trace_statements(statements.append)
    hops = store.round_trips
    try:
        outcome = await coro
    except RuleViolated as exc:
        outcome = exc
    hops = store.round_trips - hops
    await store.trace_statements(None)
    return statements, hops, outcome


@pytest.mark.parametrize("depth", [1, 4, 16])
async def test_a_cycle_check_over_a_chain_of_depth_d_costs_at_most_d_plus_1_statements(
        app: CommandApplication, store: SqliteWriteStore, depth: int) -> None:
    await app.dispatch(BatchWrite(GRAPH, tuple(edge(f"u{i}", "manages", f"u{i + 1}") for i in range(depth))))
    statements, hops, outcome = await traced(store, app.dispatch(edge(f"u{depth}", "manages", "u0")))
    assert isinstance(outcome, RuleViolated) and outcome.reason == Reason.CYCLE_DETECTED
    assert not [s for s in statements if "RECURSIVE" in s.upper()]
    assert 1 <= len([s for s in statements if s.startswith(NEIGHBOURS)]) <= depth + 1
    statements, hops, outcome = await traced(store, app.dispatch(edge("u0", "manages", f"u{depth + 1}")))
    assert not isinstance(outcome, BaseException)
    assert len([s for s in statements if s.startswith(NEIGHBOURS)]) == 1  # u{d+1} has no descendants
    assert hops <= 5  # the endpoints, the key, the topology version, one level, the commit


async def test_every_acyclic_write_bumps_its_topology_version_once(
        app: CommandApplication, store: SqliteWriteStore, tmp_path: Path) -> None:
    await app.dispatch(edge("u0", "manages", "u1"))
    await app.dispatch(BatchWrite(GRAPH, (edge("u1", "manages", "u2"), edge("u2", "manages", "u3"),
                                          edge("u0", "follows", "u3"))))
    await app.dispatch(edge("u5", "follows", "u6"))  # not acyclic: no bump
    assert topology_versions(tmp_path) == [(GRAPH, "manages", 2)]
    with pytest.raises(RuleViolated):
        await app.dispatch(edge("u3", "manages", "u0"))
    assert topology_versions(tmp_path) == [(GRAPH, "manages", 2)]  # a refused write changes nothing


async def test_concurrent_acyclic_writes_in_one_group_commit_each_bump_in_turn(
        app: CommandApplication, store: SqliteWriteStore, tmp_path: Path) -> None:
    """Units of work of one group commit run in one transaction: each reads the version
    the one before it wrote, so none conflicts, and the version counts every write."""
    before = store.groups_committed
    outcomes = await asyncio.gather(*(app.dispatch(edge(f"u{i}", "manages", f"u{i + 1}")) for i in range(10, 30)),
                                    return_exceptions=True)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert store.groups_committed > before
    assert topology_versions(tmp_path) == [(GRAPH, "manages", 20)]
