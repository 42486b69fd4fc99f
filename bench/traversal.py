"""Workload 1: batched vs naive Traverse through the query application, in process.

A random graph (``nodes`` nodes; for every fan-out F an edge type ``fF`` along which
every node has exactly F distinct out-neighbours) is written to the event log of a
temporary SQLite file and projected by the real projector. Two query applications
are then built with ``query_service.bootstrap.build_application`` over the same
file, one per engine, each with its own reader pool and ``SqliteReadModel``.

For each (fan-out, depth) case both engines run on the same start node one after
the other (the order alternates every repetition), and every pair of answers must
be identical or the benchmark aborts. Latency is wall time of
``queries.traverse(...)``; round trips come from ``SqliteReadModel.round_trips``.
A thin recording wrapper around the read model also logs the sequence of calls of
every traversal (checked against ``round_trips``), so the round trips of each BFS
level can be shown: level 0 is the schema and start-node reads, then each level is
a run of adjacency reads followed by a run of node reads.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from domain.edge import Direction
from domain.events import EdgeAdded, NodeCreated, SchemaApplied
from domain.schema import EdgeType, NodeType, PropertyDef, Schema, schema_to_dict
from domain.values import PropertyKind
from infrastructure.persistence.sqlite.connection import SqliteConnection, SqliteReaderPool
from infrastructure.persistence.sqlite.event_log import EVENT_LOG_DDL, SqliteEventLog, append_events
from infrastructure.persistence.sqlite.read_model import READ_MODEL_DDL, SqliteProjectionStore, SqliteReadModel
from infrastructure.tokens import TokenSigner
from query_service.app.queries.traverse import Traverse, TraversalBudget, TraversalResult, TraversalStep
from query_service.bootstrap import READER_POOL_SIZE, build_application

from bench.stats import median, ms, p95, ratio, table

GRAPH = "bench"
SECRET = b"bench-only-secret-0123456789abcdef"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
ENGINES = ("batched", "naive")


class BenchmarkMismatch(AssertionError):
    """The engines disagreed: the comparison would be meaningless."""


@dataclass
class TraversalConfig:
    nodes: int = 2000
    fanouts: tuple[int, ...] = (5, 20, 50)
    depths: tuple[int, ...] = (2, 3)
    starts: int = 5  # distinct start nodes, cycled through
    reps: int = 30  # at most this many timed pairs (batched + naive on the same start) per case
    min_reps: int = 5  # at least this many, whatever the time budget
    case_budget_s: float = 2.0  # stop adding pairs to a case after this long (past min_reps)
    seed: int = 20240101


@dataclass
class CaseResult:
    fanout: int
    depth: int
    reached: float  # mean nodes returned
    latency: dict[str, list[float]] = field(default_factory=dict)
    trips: dict[str, list[int]] = field(default_factory=dict)  # round trips per traversal (every run)
    per_level: dict[str, list[float]] = field(default_factory=dict)  # mean round trips of level 0..depth


class RecordingReadModel:
    """Delegates to the real read model; while ``trace`` is a list, appends each call's name."""

    def __init__(self, inner: SqliteReadModel) -> None:
        self.inner = inner
        self.trace: list[str] | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.trace is not None:
                self.trace.append(name)
            return await attr(*args, **kwargs)
        return call


def build_events(cfg: TraversalConfig) -> tuple[list, int]:
    rng = random.Random(cfg.seed)
    clock = iter(range(1, 10**9))
    ids = iter(range(1, 10**9))

    def common(aggregate: str) -> dict:
        return dict(event_id=f"e{next(ids)}", graph=GRAPH, aggregate_id=aggregate, aggregate_version=1,
                    occurred_at=T0 + timedelta(microseconds=1000 * next(clock)))

    node_type = NodeType("Node", (PropertyDef("rank", PropertyKind.INT),))
    edge_types = {f"f{f}": EdgeType(f"f{f}", "Node", "Node") for f in cfg.fanouts}
    schema = Schema(graph=GRAPH, version=1, node_types={"Node": node_type}, edge_types=edge_types, update_time=T0)
    events: list = [SchemaApplied(**common("schema"), schema=schema_to_dict(schema))]
    events += [NodeCreated(**common(f"n{i}"), node_type="Node", properties={"rank": i}) for i in range(cfg.nodes)]
    edges = 0
    for f in cfg.fanouts:
        for i in range(cfg.nodes):
            targets = [t for t in rng.sample(range(cfg.nodes), min(f + 1, cfg.nodes)) if t != i][:f]
            for t in targets:
                c = common(f"n{i}/f{f}/n{t}")
                events.append(EdgeAdded(**c, source=f"n{i}", edge_type=f"f{f}", target=f"n{t}",
                                        properties={}, create_time=c["occurred_at"]))
                edges += 1
    return events, edges


def write_log(path: str, events: list) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(EVENT_LOG_DDL + READ_MODEL_DDL)
        conn.execute("BEGIN IMMEDIATE")
        append_events(conn, events)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _levels(trace: list[str]) -> list[int]:
    """Round trips per level: level 0 is the schema and start-node reads, then each
    level is a run of ``adjacency_many`` followed by a run of ``get_nodes``."""
    assert trace[:2] == ["get_schema", "get_nodes"], trace[:5]
    levels = [2]
    previous = "get_nodes"
    for name in trace[2:]:
        if name == "adjacency_many" and previous == "get_nodes":
            levels.append(0)
        levels[-1] += 1
        previous = name
    return levels


def _same(a: TraversalResult, b: TraversalResult) -> str | None:
    if a == b:
        return None
    ids_a, ids_b = [n.id for n in a.nodes], [n.id for n in b.nodes]
    return (f"nodes {len(ids_a)} vs {len(ids_b)} (first difference at "
            f"{next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))}), "
            f"edges {len(a.edges)} vs {len(b.edges)}, levels {[len(lv.node_ids) for lv in a.levels]} vs "
            f"{[len(lv.node_ids) for lv in b.levels]}, truncated {a.truncated_reason!r} vs {b.truncated_reason!r}")


async def _run(cfg: TraversalConfig, workdir: Path, log) -> tuple[list[CaseResult], dict]:
    path = str(workdir / "traversal.db")
    t = time.perf_counter()
    events, edges = build_events(cfg)
    write_log(path, events)
    setup = {"nodes": cfg.nodes, "edges": edges, "events": len(events)}
    log(f"  graph: {cfg.nodes} nodes, {edges} edges ({len(events)} events) written in {time.perf_counter() - t:.1f}s")

    writer = await SqliteConnection(path, name="bench-projector").open()
    opened: list = [writer]
    try:
        store = SqliteProjectionStore(writer)
        apps, models = {}, {}
        for engine in ENGINES:
            readers = await SqliteReaderPool(path, size=READER_POOL_SIZE).open()
            opened.append(readers)
            model = RecordingReadModel(SqliteReadModel(readers))
            models[engine] = model
            apps[engine] = build_application(
                read_model=model, store=store, event_log=SqliteEventLog(readers), signer=TokenSigner(SECRET),
                projector_enabled=(engine == "batched"), traverse_engine=engine)
        t = time.perf_counter()
        projected = await apps["batched"].projector.catch_up()  # type: ignore[union-attr]
        setup["projection_s"] = time.perf_counter() - t
        log(f"  projected {projected} events in {setup['projection_s']:.1f}s")

        rng = random.Random(cfg.seed + 1)
        starts = [f"n{i}" for i in rng.sample(range(cfg.nodes), min(cfg.starts, cfg.nodes))]
        results: list[CaseResult] = []
        for fanout in cfg.fanouts:
            for depth in cfg.depths:
                def query(start: str) -> Traverse:
                    return Traverse(GRAPH, start, (TraversalStep(f"f{fanout}", Direction.OUT, repeat=True),),
                                    TraversalBudget(max_depth=depth, max_nodes=10_000, per_node_fanout=1000))

                case = CaseResult(fanout, depth, 0.0, {e: [] for e in ENGINES}, {e: [] for e in ENGINES}, {})
                level_runs: dict[str, list[list[int]]] = {e: [] for e in ENGINES}
                reached: list[int] = []

                async def pair(start: str, order: tuple[str, ...], timed: bool) -> None:
                    answers: dict[str, TraversalResult] = {}
                    for engine in order:
                        model = models[engine]
                        model.trace = []
                        before = model.inner.round_trips
                        t0 = time.perf_counter()
                        answers[engine] = await apps[engine].queries.traverse(query(start))
                        elapsed = time.perf_counter() - t0
                        trace, model.trace = model.trace, None
                        trips = model.inner.round_trips - before
                        if len(trace) != trips:
                            raise BenchmarkMismatch("recorded calls do not match SqliteReadModel.round_trips")
                        if timed:
                            case.latency[engine].append(elapsed)
                            case.trips[engine].append(trips)
                            level_runs[engine].append(_levels(trace))
                    if (diff := _same(answers["batched"], answers["naive"])) is not None:
                        raise BenchmarkMismatch(f"f{fanout} depth {depth} start {start}: batched vs naive: {diff}")
                    if timed:
                        reached.append(len(answers["batched"].nodes))

                await pair(starts[0], ENGINES, timed=False)  # warm-up (caches, statement cache)
                # timed: interleaved on the same start node, alternating which engine goes first;
                # at least min_reps pairs, then stop at reps pairs or when the case's time budget is spent
                case_started = time.perf_counter()
                rep = 0
                while rep < cfg.reps and (rep < cfg.min_reps or time.perf_counter() - case_started < cfg.case_budget_s):
                    await pair(starts[rep % len(starts)], ENGINES if rep % 2 == 0 else ENGINES[::-1], timed=True)
                    rep += 1
                case.reached = statistics.mean(reached)
                for engine in ENGINES:
                    width = max(len(lv) for lv in level_runs[engine])
                    case.per_level[engine] = [statistics.mean(lv[i] if i < len(lv) else 0 for lv in level_runs[engine])
                                              for i in range(width)]
                results.append(case)
                log(f"  f{fanout} depth {depth}: batched {ms(median(case.latency['batched']))} ms, "
                    f"naive {ms(median(case.latency['naive']))} ms")
        return results, setup
    finally:
        for resource in reversed(opened):
            await resource.close()


def run(cfg: TraversalConfig, workdir: Path, log=print) -> tuple[list[CaseResult], dict]:
    return asyncio.run(_run(cfg, workdir, log))


def report(results: list[CaseResult]) -> str:
    rows = []
    for c in results:
        b, n = c.latency["batched"], c.latency["naive"]
        tb, tn = statistics.mean(c.trips["batched"]), statistics.mean(c.trips["naive"])
        rows.append([f"f{c.fanout} d{c.depth}", f"{c.reached:.0f}", len(b),
                     ms(median(b)), ms(p95(b)), ms(median(n)), ms(p95(n)), ratio(median(n), median(b)),
                     f"{tb:.0f}", f"{tn:.0f}", ratio(tn, tb)])
    lat = table(["case", "nodes", "n", "batched p50", "p95", "naive p50", "p95", "naive/batched",
                 "trips batched", "trips naive", "trips ratio"], rows)
    level_rows = []
    for c in results:
        for engine in ENGINES:
            levels = " / ".join(f"{x:.0f}" if x == int(x) else f"{x:.1f}" for x in c.per_level[engine])
            level_rows.append([f"f{c.fanout} d{c.depth}", engine, levels])
    levels = table(["case", "engine", "round trips per level (L0 = schema + start node / L1 / L2 ...)"], level_rows)
    return lat + "\n\n" + levels
