"""Graph invariants on a real SQLite file, write side and read model together.

The command application and the query application (with its projector) share one
file, as in production. After every scenario the store is checked row by row:
counters equal the stored edges, symmetric edges have their mirror, nothing attaches
to a tombstone, unique claims are exactly the live values; the read model's counts
equal its adjacency rows, every adjacency row has its other half, and rebuilding the
read model from the event log gives the very same rows.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest

from infrastructure.persistence.edge_counts import unpack_counts

from command_service.app.commands.apply_schema import ApplySchema
from command_service.app.commands.batch_write import BatchWrite
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.commands.remove_edge import RemoveEdge
from command_service.app.commands.update_node import UpdateNode
from command_service.app.common import TransactionLimits
from command_service.bootstrap import build_for_tests
from domain.edge import Direction
from domain.errors import AlreadyExists, DomainError, NotFound, Reason, RuleViolated, ValidationFailed
from domain.schema import Cardinality, EdgeType, OnDelete, schema_from_dict
from infrastructure.config import Settings
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from query_service.app.consistency import Consistency
from query_service.app.queries.get_node import GetNode
from query_service.app.queries.list_edges import ListEdges
from query_service.bootstrap import bootstrap
from tests.command_samples import EDGE_TYPES, GRAPH, NODE_TYPES, apply_sample_schema, edge, group, user
from tests.query_support import SECRET

pytestmark = pytest.mark.integration

LIMITS = TransactionLimits(max_edges_per_transaction=10)
READ_TABLES = ("rm_nodes", "rm_adjacency", "rm_adjacency_chunks", "rm_node_index", "rm_schemas")


@pytest.fixture
async def world(tmp_path):
    path = str(tmp_path / "edgewise.db")
    store = await SqliteWriteStore.open(path)
    commands = build_for_tests(store, limits=LIMITS, secret=SECRET, cascade_poll_interval=0.01)
    await commands.dispatch(apply_sample_schema())
    queries = await bootstrap(Settings(db_path=path, token_secret=SECRET, projector_poll_interval_ms=10))
    w = SimpleNamespace(path=path, store=store, commands=commands, queries=queries, tmp=tmp_path)
    yield w
    await commands.close()
    await queries.close()


async def settle(w) -> None:
    """Drain background cascades, then project everything."""
    await w.commands.cascade_worker.drain()
    await w.queries.projector.catch_up()


def rows(path: str, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def check_write_model(path: str) -> None:
    edges = rows(path, "SELECT graph, source, type, target FROM edges")
    counted = Counter()
    for g, s, t, d in edges:
        counted[(g, s, t, "OUT")] += 1
        counted[(g, d, t, "IN")] += 1
    stored = {(g, n, t, d): c for g, n, t, d, c in rows(path, "SELECT graph, node, type, direction, count "
                                                             "FROM edge_counters")}
    assert stored == dict(counted), "edge counters differ from the stored edges"
    schemas = {}
    for g, body in rows(path, "SELECT graph, body FROM schemas s WHERE version = "
                              "(SELECT MAX(version) FROM schemas WHERE graph = s.graph)"):
        schemas[g] = schema_from_dict(json.loads(body))
    edge_set = set(edges)
    for g, s, t, d in edges:
        et = schemas[g].edge_types.get(t)
        if et is not None and et.symmetric:
            assert (g, d, t, s) in edge_set, f"symmetric edge {s}-{t}-{d} has no mirror"
        if et is not None and et.cardinality.max_out is not None:
            assert counted[(g, s, t, "OUT")] <= 1, f"cardinality of {t} broken at {s}"
        if et is not None and et.cardinality.max_in is not None:
            assert counted[(g, d, t, "IN")] <= 1, f"cardinality of {t} broken at {d}"
    tombstones = {(g, n) for g, n in rows(path, "SELECT graph, id FROM nodes WHERE deleted = 1")}
    pending = {(g, n) for g, n in rows(path, "SELECT graph, node_id FROM cascade_jobs")}
    for g, s, t, d in edges:
        for end in (s, d):
            assert (g, end) not in tombstones or (g, end) in pending, f"edge {s}-{t}-{d} touches tombstone {end}"
    # unique claims are exactly the unique values of live nodes
    expected = set()
    for g, node_id, node_type, props in rows(path, "SELECT graph, id, type, properties FROM nodes WHERE deleted = 0"):
        values = json.loads(props)
        for p in schemas[g].node_types[node_type].unique_properties:
            if p.name in values:
                expected.add((g, node_type, p.name, json.dumps(values[p.name], separators=(",", ":"),
                                                               sort_keys=True), node_id))
    assert set(rows(path, "SELECT graph, node_type, property, value, node_id FROM unique_claims")) == expected


def check_read_model(path: str) -> None:
    adjacency = rows(path, "SELECT graph, node, direction, edge_type, neighbour FROM rm_adjacency")
    counted = Counter((g, n, t, d) for g, n, d, t, _ in adjacency)
    stored = {(g, n, t, d.value): c for g, n, text in rows(path, "SELECT graph, id, edge_counts FROM rm_nodes")
              for (t, d), c in unpack_counts(text).items()}
    assert stored == dict(counted), "node views' edge counts differ from the adjacency rows"
    chunked = Counter()
    for g, n, d, t, chunk, total, ids in rows(path, "SELECT graph, node, direction, edge_type, chunk, total, ids "
                                                    "FROM rm_adjacency_chunks"):
        for nb in ids.split(" "):
            chunked[(g, n, d, t, nb)] += 1
        if chunk == 0:
            assert total == counted[(g, n, t, d)], f"id chunks of {n} {d} {t} say {total} edges"
    assert chunked == Counter(adjacency), "the id chunks differ from the adjacency rows"
    halves = set(adjacency)
    for g, n, d, t, nb in adjacency:
        other = "IN" if d == "OUT" else "OUT"
        assert (g, nb, other, t, n) in halves, f"adjacency {n} {d} {t} {nb} has no other half"
    live = {(g, i) for g, i in rows(path, "SELECT graph, id FROM rm_nodes WHERE deleted = 0")}
    for g, n, d, t, nb in adjacency:
        assert (g, n) in live and (g, nb) in live, f"adjacency {n} {d} {t} {nb} touches a deleted node"


def check_read_model_matches_write_model(path: str) -> None:
    live_edges = set(rows(path, "SELECT e.graph, e.source, e.type, e.target FROM edges e "
                                "JOIN nodes s ON s.graph = e.graph AND s.id = e.source AND s.deleted = 0 "
                                "JOIN nodes t ON t.graph = e.graph AND t.id = e.target AND t.deleted = 0"))
    out_rows = set(rows(path, "SELECT graph, node, edge_type, neighbour FROM rm_adjacency WHERE direction = 'OUT'"))
    assert out_rows == live_edges
    live_nodes = set(rows(path, "SELECT graph, id, version FROM nodes WHERE deleted = 0"))
    assert set(rows(path, "SELECT graph, id, version FROM rm_nodes WHERE deleted = 0")) == live_nodes


def read_model_dump(path: str) -> dict:
    return {t: sorted(rows(path, f"SELECT * FROM {t}")) for t in READ_TABLES}


async def rebuilt_read_model(w) -> dict:
    """Project the same event log into an empty read model; its rows."""
    copy = str(w.tmp / "rebuild.db")
    src = sqlite3.connect(w.path)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    for table in READ_TABLES + ("rm_checkpoints",):
        dst.execute(f"DELETE FROM {table}")
    dst.commit()
    dst.close()
    fresh = await bootstrap(Settings(db_path=copy, token_secret=SECRET))
    try:
        await fresh.projector.catch_up()
    finally:
        await fresh.close()
    return read_model_dump(copy)


async def check_everything(w) -> None:
    await settle(w)
    check_write_model(w.path)
    check_read_model(w.path)
    check_read_model_matches_write_model(w.path)
    assert await rebuilt_read_model(w) == read_model_dump(w.path), "a rebuilt read model differs from the live one"


async def expect(w, command, reason: str) -> DomainError:
    head = await w.store.head()
    with pytest.raises(DomainError) as err:
        await w.commands.dispatch(command)
    assert err.value.reason == reason, (err.value.reason, err.value.message)
    assert await w.store.head() == head, "a failed command wrote events"
    return err.value


# --- self-loops and symmetric edges ------------------------------------------------------

async def test_self_loops_on_every_kind_of_edge_type_and_deleting_them(world):
    w = world
    for n in "abcd":
        await w.commands.dispatch(user(n))
    await w.commands.dispatch(edge("a", "friend", "a"))  # symmetric self-loop: one row, its own mirror
    await w.commands.dispatch(edge("a", "spouse", "a"))  # symmetric ONE_TO_ONE self-loop
    await expect(w, edge("a", "spouse", "b"), Reason.CARDINALITY_VIOLATED)
    await expect(w, edge("b", "spouse", "a"), Reason.CARDINALITY_VIOLATED)
    await expect(w, edge("a", "manages", "a"), Reason.CYCLE_DETECTED)
    await w.commands.dispatch(edge("a", "follows", "a"))
    await w.commands.dispatch(edge("a", "friend", "b"))
    await w.commands.dispatch(edge("c", "friend", "a"))
    await w.commands.dispatch(edge("b", "spouse", "c"))
    await w.commands.dispatch(edge("b", "follows", "a"))
    await expect(w, edge("b", "friend", "a"), Reason.EDGE_ALREADY_EXISTS)  # the mirror already exists
    await check_everything(w)

    a = await w.queries.queries.get_node(GetNode(GRAPH, "a"))
    assert a.edge_counts == {("friend", Direction.OUT): 3, ("friend", Direction.IN): 3,
                             ("spouse", Direction.OUT): 1, ("spouse", Direction.IN): 1,
                             ("follows", Direction.OUT): 1, ("follows", Direction.IN): 2}

    removed = await w.commands.dispatch(RemoveEdge(GRAPH, "a", "spouse", "a"))
    assert removed.removed_edges == 1
    await w.commands.dispatch(edge("a", "spouse", "d"))  # the self-loop no longer holds the slot
    await expect(w, DeleteNode(GRAPH, "a"), Reason.RESTRICT_VIOLATED)  # "follows" is ON DELETE RESTRICT
    await w.commands.dispatch(RemoveEdge(GRAPH, "b", "follows", "a"))
    await w.commands.dispatch(RemoveEdge(GRAPH, "a", "follows", "a"))
    result = await w.commands.dispatch(DeleteNode(GRAPH, "a"))
    assert not result.cascade_pending
    await check_everything(w)
    assert rows(w.path, "SELECT * FROM edges WHERE source = 'a' OR target = 'a'") == []
    assert rows(w.path, "SELECT * FROM edge_counters WHERE node = 'a'") == []
    assert rows(w.path, "SELECT * FROM rm_adjacency WHERE node = 'a' OR neighbour = 'a'") == []
    for n in "bcd":
        view = await w.queries.queries.get_node(GetNode(GRAPH, n))
        assert all(t != "friend" or n != "d" for t, _ in view.edge_counts)
    d = await w.queries.queries.get_node(GetNode(GRAPH, "d"))
    assert d.edge_counts == {}
    await w.commands.dispatch(edge("d", "spouse", "d"))  # d's ONE_TO_ONE slot is free again


async def test_deleting_both_ends_of_symmetric_edges_in_one_batch(world):
    w = world
    for n in "ab":
        await w.commands.dispatch(user(n))
    await w.commands.dispatch(edge("a", "friend", "b"))
    await w.commands.dispatch(edge("b", "friend", "b"))
    await w.commands.dispatch(BatchWrite(GRAPH, (DeleteNode(GRAPH, "a"), DeleteNode(GRAPH, "b"))))
    await check_everything(w)
    assert rows(w.path, "SELECT COUNT(*) FROM edge_counters") == [(0,)]
    assert rows(w.path, "SELECT COUNT(*) FROM rm_nodes WHERE edge_counts != ''") == [(0,)]
    assert rows(w.path, "SELECT COUNT(*) FROM rm_adjacency_chunks") == [(0,)]


# --- background cascade racing new writes ----------------------------------------------------

async def test_cascade_of_a_supernode_while_writes_race(world):
    w = world
    await w.commands.dispatch(user("hub"))
    await w.commands.dispatch(group("grp"))
    for i in range(24):  # "friend" is symmetric and ON DELETE CASCADE: 48 edge entries
        await w.commands.dispatch(user(f"f{i}"))
        await w.commands.dispatch(edge(f"f{i}", "friend", "hub") if i % 2 else edge("hub", "friend", f"f{i}"))
    await w.commands.dispatch(edge("hub", "manages", "f0"))
    await w.commands.dispatch(edge("hub", "member_of", "grp"))
    await w.commands.dispatch(edge("hub", "friend", "hub"))
    result = await w.commands.dispatch(DeleteNode(GRAPH, "hub"))
    assert result.cascade_pending  # far more than 10 edge entries

    outcomes: Counter = Counter()

    async def racer(i: int) -> None:
        for command in (edge(f"f{i}", "manages", "hub"), edge("hub", "spouse", f"f{i}"),
                        edge("hub", "member_of", "grp"), user("hub"), UpdateNode(GRAPH, "hub", {"name": "x"}),
                        edge(f"f{i}", "friend", f"f{(i + 1) % 24}"), DeleteNode(GRAPH, f"f{i}")):
            try:
                await w.commands.dispatch(command)
                outcomes["ok"] += 1
            except (RuleViolated, AlreadyExists, NotFound) as exc:
                outcomes[exc.reason] += 1
            await asyncio.sleep(0)

    async def cascade() -> None:
        while await w.commands.cascade_worker.run_once():
            await asyncio.sleep(0)

    await asyncio.gather(cascade(), *[racer(i) for i in range(0, 24, 3)])
    assert outcomes[Reason.ENDPOINT_MISSING] == 3 * 8  # nothing attached to the tombstone
    assert outcomes[Reason.NODE_ALREADY_EXISTS] == 8 and outcomes[Reason.NODE_NOT_FOUND] == 8
    await check_everything(w)
    assert rows(w.path, "SELECT COUNT(*) FROM edges WHERE source = 'hub' OR target = 'hub'") == [(0,)]
    assert rows(w.path, "SELECT COUNT(*) FROM cascade_jobs") == [(0,)]
    grp = await w.queries.queries.get_node(GetNode(GRAPH, "grp"))
    assert grp.edge_counts == {}


# --- unique values moving between nodes --------------------------------------------------

async def test_unique_values_move_with_updates(world):
    w = world
    await w.commands.dispatch(user("a", email="x@x", badge=7))
    await w.commands.dispatch(UpdateNode(GRAPH, "a", {"email": "y@x"}))
    await w.commands.dispatch(user("b", email="x@x"))  # the old value is free
    await expect(w, user("c", email="y@x"), Reason.UNIQUE_VIOLATED)
    await expect(w, user("c", badge=7), Reason.UNIQUE_VIOLATED)
    await expect(w, UpdateNode(GRAPH, "b", {"email": "y@x"}), Reason.UNIQUE_VIOLATED)
    # clearing a unique property releases it
    await w.commands.dispatch(UpdateNode(GRAPH, "a", {}, update_mask=("properties.email",)))
    await w.commands.dispatch(user("c", email="y@x"))
    # a swap inside one batch: b lets go of x, a takes it, c keeps y
    await w.commands.dispatch(BatchWrite(GRAPH, (UpdateNode(GRAPH, "b", {"email": "z@x"}),
                                                 UpdateNode(GRAPH, "a", {"email": "x@x"}))))
    await expect(w, BatchWrite(GRAPH, (UpdateNode(GRAPH, "a", {"email": "q@x"}),
                                       UpdateNode(GRAPH, "b", {"email": "y@x"}))), Reason.UNIQUE_VIOLATED)
    # replacing the whole map (mask "properties") releases what it drops
    await w.commands.dispatch(UpdateNode(GRAPH, "a", {"name": "a"}, update_mask=("properties",)))
    await w.commands.dispatch(user("d", badge=7, email="x@x"))
    await w.commands.dispatch(DeleteNode(GRAPH, "d"))
    await w.commands.dispatch(user("e", badge=7, email="x@x"))
    await check_everything(w)


# --- idempotent replay of a batch ------------------------------------------------------------

async def test_idempotent_batch_replay_returns_the_first_answer_and_writes_nothing(world):
    w = world
    rid = "0b8f0a8e-9e0e-4c39-8a51-7d7f6c1a2b3c"
    for n in "ab":
        await w.commands.dispatch(user(n))
    batch = BatchWrite(GRAPH, (user("c"), edge("c", "friend", "a"), UpdateNode(GRAPH, "a", {"age": 3}),
                               RemoveEdge(GRAPH, "c", "friend", "a"), DeleteNode(GRAPH, "b")), request_id=rid)
    first = await w.commands.dispatch(batch)
    head = await w.store.head()
    again = await w.commands.dispatch(batch)
    assert again == first
    assert await w.store.head() == head
    # still the first answer after the world moved on (the batch would fail now)
    await w.commands.dispatch(DeleteNode(GRAPH, "c"))
    head = await w.store.head()
    assert await w.commands.dispatch(batch) == first
    assert await w.store.head() == head
    await expect(w, BatchWrite(GRAPH, (user("z"),), request_id=rid), Reason.REQUEST_ID_REUSED)
    await check_everything(w)


# --- schema evolution: an unused edge type removed, then re-added differently -----------------

async def test_unused_edge_type_removed_and_readded_with_other_settings(world):
    w = world
    for n in "abc":
        await w.commands.dispatch(user(n))
    await w.commands.dispatch(edge("a", "manages", "b"))
    without = tuple(t for t in EDGE_TYPES if t.name != "manages")
    await expect(w, ApplySchema(GRAPH, NODE_TYPES, without, expected_version=1), Reason.TYPE_IN_USE)
    await w.commands.dispatch(RemoveEdge(GRAPH, "a", "manages", "b"))
    await w.commands.dispatch(ApplySchema(GRAPH, NODE_TYPES, without, expected_version=1))
    await expect(w, edge("a", "manages", "b"), Reason.UNKNOWN_EDGE_TYPE)
    # back, now symmetric ONE_TO_ONE RESTRICT (and no longer acyclic)
    manages = EdgeType("manages", "User", "User", cardinality=Cardinality.ONE_TO_ONE, symmetric=True,
                       on_delete=OnDelete.RESTRICT)
    await w.commands.dispatch(ApplySchema(GRAPH, NODE_TYPES, without + (manages,), expected_version=2))
    await w.commands.dispatch(edge("a", "manages", "b"))
    assert rows(w.path, "SELECT source, target FROM edges WHERE type = 'manages' ORDER BY source") == [
        ("a", "b"), ("b", "a")]
    await expect(w, edge("c", "manages", "a"), Reason.CARDINALITY_VIOLATED)
    await expect(w, DeleteNode(GRAPH, "b"), Reason.RESTRICT_VIOLATED)
    await check_everything(w)
    stored = rows(w.path, "SELECT version FROM rm_schemas WHERE graph = ?", GRAPH)
    assert stored == [(3,)]


# --- the read model: rebuild equals live after a long mixed history -------------------------

async def test_rebuilding_the_read_model_from_zero_equals_the_live_one(world):
    w = world
    rng = random.Random(7)
    ids = [f"n{i}" for i in range(14)]
    kinds = ["follows", "friend", "spouse", "manages", "member_of", "owns"]
    groups = ["g0", "g1", "g2"]
    for g in groups:
        await w.commands.dispatch(group(g))
    for step in range(400):
        r = rng.random()
        node = rng.choice(ids)
        if r < 0.15:
            command = user(node, email=f"{rng.randrange(6)}@x", age=rng.randrange(90))
        elif r < 0.25:
            command = UpdateNode(GRAPH, node, {"age": rng.randrange(90), "email": f"{rng.randrange(6)}@x"})
        elif r < 0.3:
            command = DeleteNode(GRAPH, node)
        elif r < 0.8:
            kind = rng.choice(kinds)
            target = rng.choice(groups) if kind in ("member_of", "owns") else rng.choice(ids)
            command = edge(node, kind, target)
        else:
            kind = rng.choice(kinds)
            command = RemoveEdge(GRAPH, node, kind, rng.choice(ids + groups))
        try:
            await w.commands.dispatch(command)
        except (ValidationFailed, RuleViolated, AlreadyExists, NotFound):
            pass
        if step == 200:  # a property becomes indexed half-way: the projector backfills the index
            score = next(t for t in NODE_TYPES if t.name == "User")
            props = tuple(replace(p, indexed=True) if p.name == "score" else p for p in score.properties)
            await w.commands.dispatch(ApplySchema(GRAPH, (replace(score, properties=props),) + NODE_TYPES[1:],
                                                  EDGE_TYPES, expected_version=1))
        if step % 50 == 0:
            await w.queries.projector.run_once()  # live projection in many small batches
    await check_everything(w)


# --- paging while the node goes away ------------------------------------------------------

async def test_page_token_into_the_adjacency_of_a_node_deleted_meanwhile(world):
    w = world
    await w.commands.dispatch(user("hub"))
    for i in range(5):
        await w.commands.dispatch(user(f"f{i}"))
        await w.commands.dispatch(edge("hub", "friend", f"f{i}"))
    await settle(w)
    q = w.queries.queries
    first = await q.list_edges(ListEdges(GRAPH, "hub", Direction.OUT, page_size=2))
    assert len(first.edges) == 2 and first.next_page_token
    # a neighbour on the next page goes away: the next page simply no longer lists it
    gone = (await q.list_edges(ListEdges(GRAPH, "hub", Direction.OUT, page_size=2,
                                         page_token=first.next_page_token))).edges[0].target
    await w.commands.dispatch(DeleteNode(GRAPH, gone))
    await settle(w)
    second = await q.list_edges(ListEdges(GRAPH, "hub", Direction.OUT, page_size=2, page_token=first.next_page_token))
    assert gone not in [e.target for e in second.edges]
    # the node itself goes away: the next page is NOT_FOUND, as a first page would be
    result = await w.commands.dispatch(DeleteNode(GRAPH, "hub"))
    await settle(w)
    with pytest.raises(NotFound):
        await q.list_edges(ListEdges(GRAPH, "hub", Direction.OUT, page_size=2, page_token=first.next_page_token,
                                     consistency=Consistency(at_least_token=result.consistency_token)))
    await check_everything(w)
