"""Edgewise vs PostgreSQL 15 on the same power-law graph, in one session (issue 5).

1. Ingest: the graph goes into Edgewise through the PUBLIC ``BatchWrite`` (100
   operations per call, 4 concurrent callers, a fresh request_id per call), then a
   read with ``consistency.at_least_token`` (the last write's token) measures how
   long the projection needs to catch up. PostgreSQL gets the same rows twice: with
   COPY into the tables the read workloads use, and with durable batched INSERTs
   (100 rows per transaction, 4 connections) into separate tables for the rate.
2. Workloads, closed loop with 1 client, the same Zipf(1.0) start nodes / pairs for
   every system, the systems interleaved in blocks (the order rotates per block) so
   that drift on a shared machine hits all of them alike:
   W1 3-hop IN traversal capped at 1000 nodes: Edgewise Traverse (NAMES, FULL, and
      the naive engine in a second query-service process on the same file), the
      empty RPC, PostgreSQL level by level and a recursive CTE; answers checked.
   W2 FindPath (max depth 6) vs PostgreSQL bidirectional level queries; checked.
   W3 GetNode vs the empty RPC (and PostgreSQL's primary-key read), then 16
      concurrent callers.
   W4 a Zipf GetNode/ListEdges mix after warm-up, with the cache hit ratio (hook).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from concurrent.futures import ThreadPoolExecutor
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health_pb2

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import command_service_pb2_grpc
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc
from edgewise.graph.v1 import resources_pb2 as pb
from grpc_health.v1 import health_pb2_grpc

from bench import answers
from bench.answers import Levels
from bench.graphgen import Graph, ZipfSampler, node_id, node_index, power_law_graph
from bench.pg import PgCluster, PgQueries, PgUnavailable
from bench.stack import Stack
from bench.stats import median

GRAPH_ID = "social"
GRAPH = f"graphs/{GRAPH_ID}"
PREFIX = f"{GRAPH}/nodes/"
EDGE = "follows"
HEALTH = health_pb2.HealthCheckRequest(service="edgewise.graph.v1.GraphQueryService")

# W1 and W2 systems, in the order of the tables
EW_NAMES, EW_FULL, EW_NAIVE, FLOOR = "Edgewise NAMES", "Edgewise FULL", "Edgewise naive", "empty RPC"
PG_LEVELS, PG_CTE = "PG levels", "PG recursive CTE"
EW_PATH, PG_BIDI = "Edgewise FindPath", "PG bidirectional"


@dataclass
class SideConfig:
    graph_nodes: int = 10_000
    out_degree: int = 10
    seed: int = 20240101
    starts: int = 100  # Zipf start nodes (W1) and pairs (W2)
    passes: int = 2  # each start is measured this many times per system
    block: int = 10  # samples per interleaving block
    depth: int = 3
    max_nodes: int = 1000  # reached nodes, the start excluded (Traverse max_nodes = this + 1)
    fanout: int = 1000  # Traverse per_node_fanout
    naive_cap: int = 20  # at most this many naive traversals in all
    naive_deadline_s: float = 10.0
    deadline_s: float = 30.0  # every other Edgewise call
    cte_timeout_ms: int = 5000
    path_depth: int = 6
    getnode_iterations: int = 300
    concurrency: int = 16
    concurrent_calls: int = 2000  # per system and round (2 rounds)
    mix_warmup: int = 0  # 0: six calls per node of the graph (see _w4)
    mix_warmup_callers: int = 8
    mix_calls: int = 2000
    ingest_batch: int = 100
    ingest_callers: int = 4
    catchup_timeout_s: float = 3600.0
    poll_ms: int | None = None
    with_pg: bool = True


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    censored: int = 0  # timed out / cut by a deadline (their latency is a lower bound)
    truncated: int = 0  # answers cut by a budget (max_nodes, per_node_fanout, LIMIT)
    reached: list[int] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # which sample (start / pair) each latency belongs to


@dataclass
class SideResult:
    config: SideConfig
    graph: dict = field(default_factory=dict)
    mix_warmup: int = 0
    ew_ingest: dict = field(default_factory=dict)
    pg_copy: dict = field(default_factory=dict)
    pg_ingest: dict = field(default_factory=dict)
    pg_version: str = ""
    pg_skipped: str = ""
    traverse: dict[str, Samples] = field(default_factory=dict)
    findpath: dict[str, Samples] = field(default_factory=dict)
    path_found: dict[str, int] = field(default_factory=dict)
    reads: dict[str, Samples] = field(default_factory=dict)
    concurrent: dict[str, dict] = field(default_factory=dict)
    mix: dict[str, Samples] = field(default_factory=dict)
    cache_hit_ratio: float | None = None
    cache_by_kind: dict[str, tuple[float, float]] = field(default_factory=dict)  # (hits, misses) in W4
    mismatches: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _name(i: int | str) -> str:
    return PREFIX + (i if isinstance(i, str) else node_id(i))


def _schema() -> pb.Schema:
    P = pb.PropertyDefinition
    return pb.Schema(
        node_types=[pb.NodeType(name="user", properties=[P(name="name", kind=pb.PROPERTY_KIND_STRING),
                                                         P(name="joined", kind=pb.PROPERTY_KIND_INT)])],
        edge_types=[pb.EdgeType(name=EDGE, source_type="user", target_type="user",
                                cardinality=pb.CARDINALITY_MANY_TO_MANY, on_delete=pb.ON_DELETE_CASCADE)])


def _node_row(i: int) -> tuple[str, str, int]:
    return node_id(i), f"user {i}", i


def _create_op(i: int) -> cmd.BatchWriteOperation:
    node = pb.Node(type="user")
    node.properties["name"].CopyFrom(pb.PropertyValue(string_value=f"user {i}"))
    node.properties["joined"].CopyFrom(pb.PropertyValue(int_value=i))
    return cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=node_id(i), node=node))


def _edge_op(s: int, t: int) -> cmd.BatchWriteOperation:
    return cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(source=_name(s), type=EDGE,
                                                                               target=_name(t))))


# ---------------------------------------------------------------------------------------------
# ingest


async def _batch_write_all(address: str, batches: list[Callable[[], list]], callers: int, log,
                           label: str) -> dict:
    """Sends every batch through BatchWrite with ``callers`` concurrent callers."""
    latencies: list[float] = []
    last = {"t": 0.0, "token": ""}
    done = [0]
    todo = iter(range(len(batches)))
    started = time.perf_counter()
    report_every = max(1, len(batches) // 10)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = command_service_pb2_grpc.GraphCommandServiceStub(channel)

        async def caller() -> None:
            for i in todo:  # one shared iterator: each batch is sent once
                request = cmd.BatchWriteRequest(parent=GRAPH, operations=batches[i](), request_id=str(uuid.uuid4()))
                for attempt in range(3):  # a retry reuses the request_id: idempotent
                    t0 = time.perf_counter()
                    try:
                        response = await stub.BatchWrite(request, timeout=300)
                        break
                    except grpc.aio.AioRpcError as err:
                        if attempt == 2 or err.code() not in (grpc.StatusCode.UNAVAILABLE,
                                                              grpc.StatusCode.DEADLINE_EXCEEDED):
                            raise
                now = time.perf_counter()
                latencies.append(now - t0)
                last["t"], last["token"] = now, response.consistency_token
                done[0] += 1
                if done[0] % report_every == 0:
                    log(f"    {label}: {done[0]}/{len(batches)} calls, {now - started:.0f}s")

        await asyncio.gather(*(caller() for _ in range(callers)))
    return {"elapsed": time.perf_counter() - started, "latencies": latencies, "token": last["token"]}


def _ew_ingest(stack: Stack, graph: Graph, cfg: SideConfig, log) -> dict:
    stack.commands.ApplySchema(cmd.ApplySchemaRequest(graph=GRAPH, schema=_schema(), expected_version=0,
                                                      request_id=str(uuid.uuid4())), timeout=30)
    b = cfg.ingest_batch
    node_batches = [lambda lo=lo: [_create_op(i) for i in range(lo, min(lo + b, graph.nodes))]
                    for lo in range(0, graph.nodes, b)]
    edge_batches = [lambda lo=lo: [_edge_op(s, t) for s, t in graph.edges[lo:lo + b]]
                    for lo in range(0, len(graph.edges), b)]
    address = stack.addresses["command_service"]
    nodes = asyncio.run(_batch_write_all(address, node_batches, cfg.ingest_callers, log, "nodes"))
    log(f"  Edgewise: {graph.nodes} nodes in {nodes['elapsed']:.1f}s ({graph.nodes / nodes['elapsed']:.0f}/s)")
    edges = asyncio.run(_batch_write_all(address, edge_batches, cfg.ingest_callers, log, "edges"))
    written = time.perf_counter()
    log(f"  Edgewise: {len(graph.edges)} edges in {edges['elapsed']:.1f}s "
        f"({len(graph.edges) / edges['elapsed']:.0f}/s); waiting for the projection")
    # the projection has caught up when a read carrying the last write's token is served
    deadline = written + cfg.catchup_timeout_s
    shown = written
    while True:
        if time.perf_counter() - shown > 30:
            shown = time.perf_counter()
            log(f"    still waiting for the projection ({shown - written:.0f}s)")
        try:
            stack.queries.GetNode(q.GetNodeRequest(name=_name(0), consistency=pb.ReadConsistency(
                at_least_token=edges["token"])), timeout=60)
            break
        except grpc.RpcError as err:
            if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                    or time.perf_counter() > deadline:
                raise
            stack.check_alive()
    catchup = time.perf_counter() - written
    # and nothing is left: a fully consistent read waits for the whole log
    stack.queries.GetNode(q.GetNodeRequest(name=_name(0), consistency=pb.ReadConsistency(fully_consistent=True)),
                          timeout=60)
    db = Path(stack.env["EDGEWISE_DB_PATH"])
    wal = db.with_name(db.name + "-wal")
    return {"nodes": graph.nodes, "edges": len(graph.edges), "nodes_s": nodes["elapsed"], "edges_s": edges["elapsed"],
            "latencies": nodes["latencies"] + edges["latencies"], "edge_latencies": edges["latencies"],
            "catchup_s": catchup, "db_bytes": db.stat().st_size, "wal_bytes": wal.stat().st_size if wal.exists() else 0}


# ---------------------------------------------------------------------------------------------
# interleaving


def interleave(n: int, systems: dict[str, Callable[[int], None]], block: int) -> None:
    """Runs every system on samples 0..n-1, block by block; the systems' order rotates
    from one block to the next."""
    names = list(systems)
    for b, lo in enumerate(range(0, n, block)):
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            for k in range(lo, min(lo + block, n)):
                systems[name](k)


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------------------------------------
# W1: 3-hop IN traversal


def _traverse_request(start: str, view: int, cfg: SideConfig) -> q.TraverseRequest:
    return q.TraverseRequest(
        start=_name(start), steps=[q.TraversalStep(edge_type=EDGE, direction=pb.DIRECTION_IN, repeat=True)],
        budget=q.TraversalBudget(max_depth=cfg.depth, max_nodes=cfg.max_nodes + 1, per_node_fanout=cfg.fanout),
        view=view)


def _levels_of(resp: q.TraverseResponse) -> Levels:
    return answers.levels_from_names([list(lv.node_names) for lv in resp.levels], resp.truncated, PREFIX)


def _w1(stack: Stack, naive, pg: PgQueries | None, starts: list[str], cfg: SideConfig, res: SideResult,
        oracle: answers.Oracle) -> None:
    n = len(starts)
    got: dict[str, dict[int, Levels | None]] = {}
    res.traverse = {}

    def ew(system: str, stub, view: int, deadline: float) -> Callable[[int], None]:
        s = res.traverse.setdefault(system, Samples())
        got[system] = {}

        def run(k: int) -> None:
            try:
                elapsed, resp = _timed(lambda: stub.Traverse(_traverse_request(starts[k], view, cfg), timeout=deadline))
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                s.latencies.append(deadline)
                s.index.append(k)
                s.censored += 1
                got[system][k] = None
                return
            s.latencies.append(elapsed)
            s.index.append(k)
            if resp.truncated_reason == "deadline":
                s.censored += 1
                got[system][k] = None
                return
            lv = _levels_of(resp)
            s.truncated += lv.truncated
            s.reached.append(lv.count() - 1)
            got[system][k] = lv
        return run

    floor = res.traverse.setdefault(FLOOR, Samples())

    def empty(k: int) -> None:
        elapsed, _ = _timed(lambda: stack.query_health.Check(HEALTH, timeout=cfg.deadline_s))
        floor.latencies.append(elapsed)
        floor.index.append(k)

    systems: dict[str, Callable[[int], None]] = {
        EW_NAMES: ew(EW_NAMES, stack.queries, q.NODE_VIEW_NAMES, cfg.deadline_s),
        EW_FULL: ew(EW_FULL, stack.queries, q.NODE_VIEW_FULL, cfg.deadline_s),
        FLOOR: empty,
    }
    # the naive engine: only the first few samples of each block, at most naive_cap in all
    blocks = math.ceil(n / cfg.block)
    per_block = max(1, math.ceil(cfg.naive_cap / blocks)) if cfg.naive_cap > 0 else 0
    naive_run = ew(EW_NAIVE, naive, q.NODE_VIEW_NAMES, cfg.naive_deadline_s) if naive is not None else None
    if naive_run is not None and per_block:
        def naive_capped(k: int) -> None:
            if k % cfg.block < per_block and len(res.traverse[EW_NAIVE].latencies) < cfg.naive_cap:
                naive_run(k)
        systems[EW_NAIVE] = naive_capped

    if pg is not None:
        lv_s = res.traverse.setdefault(PG_LEVELS, Samples())
        cte_s = res.traverse.setdefault(PG_CTE, Samples())
        got[PG_LEVELS], got[PG_CTE] = {}, {}

        def pg_levels(k: int) -> None:
            elapsed, lv = _timed(lambda: answers.bfs_levels(pg.expand_in, starts[k], cfg.depth, cfg.max_nodes + 1))
            lv_s.latencies.append(elapsed)
            lv_s.index.append(k)
            lv_s.truncated += lv.truncated
            lv_s.reached.append(lv.count() - 1)
            got[PG_LEVELS][k] = lv

        def pg_cte(k: int) -> None:
            elapsed, rows = _timed(lambda: pg.cte(starts[k], cfg.depth, cfg.max_nodes + 2))
            cte_s.latencies.append(elapsed)
            cte_s.index.append(k)
            if rows is None:
                cte_s.censored += 1
                got[PG_CTE][k] = None
                return
            truncated = len(rows) > cfg.max_nodes + 1
            rows = rows[:cfg.max_nodes + 1]
            by_depth: dict[int, list[str]] = {}
            for node, depth in rows:
                by_depth.setdefault(depth, []).append(node)
            lv = Levels(levels=[by_depth[d] for d in sorted(by_depth)], truncated=truncated)
            cte_s.truncated += truncated
            cte_s.reached.append(lv.count() - 1)
            got[PG_CTE][k] = lv

        systems[PG_LEVELS] = pg_levels
        systems[PG_CTE] = pg_cte

    # warm-up: every system once on a popular and on a quiet start (not recorded)
    for system, fn in systems.items():
        if system != EW_NAIVE:
            fn(0)
            fn(n - 1)
    for s in res.traverse.values():
        s.latencies.clear(), s.index.clear(), s.reached.clear()
        s.censored = s.truncated = 0
    for d in got.values():
        d.clear()
    interleave(n, systems, cfg.block)

    # answers: every system against the ground truth (the generated graph, in memory), and the
    # three Edgewise variants (same engine semantics) against each other exactly
    checked = 0
    for k in range(n):
        truth = oracle.levels_in(starts[k], cfg.depth)
        fits = truth.count() <= cfg.max_nodes + 1
        for system, answers_by_k in got.items():
            lv = answers_by_k.get(k)
            if lv is None:
                continue
            checked += 1
            diff = answers.compare_levels(lv, truth, system, "the graph")
            if diff is None and lv.truncated and fits:
                diff = f"{system} says truncated, but all {truth.count()} nodes fit in the budget"
            if diff is not None:
                res.mismatches.append(f"W1 start {starts[k]}: {diff}")
        names = got[EW_NAMES].get(k)
        for other in (EW_FULL, EW_NAIVE):
            theirs = got.get(other, {}).get(k)
            if names is not None and theirs is not None:
                checked += 1
                if not answers.same_levels(names, theirs):
                    res.mismatches.append(f"W1 start {starts[k]}: {EW_NAMES} and {other} differ: "
                                          f"{answers.compare_levels(names, theirs, EW_NAMES, other) or 'truncation'}")
    res.checked["W1"] = checked


# ---------------------------------------------------------------------------------------------
# W2: FindPath


def _w2(stack: Stack, pg: PgQueries | None, pairs: list[tuple[str, str]], cfg: SideConfig, res: SideResult,
        oracle: answers.Oracle) -> None:
    n = len(pairs)
    lengths: dict[str, dict[int, int | None]] = {EW_PATH: {}, PG_BIDI: {}}
    res.findpath = {EW_PATH: Samples(), FLOOR: Samples()}

    def ew(k: int) -> None:
        s, t = pairs[k]
        elapsed, resp = _timed(lambda: stack.queries.FindPath(q.FindPathRequest(
            source=_name(s), target=_name(t), edge_types=[EDGE], direction=pb.DIRECTION_OUT,
            max_depth=cfg.path_depth), timeout=cfg.deadline_s))
        res.findpath[EW_PATH].latencies.append(elapsed)
        res.findpath[EW_PATH].index.append(k)
        if resp.truncated:
            res.findpath[EW_PATH].truncated += 1
            lengths[EW_PATH][k] = -1
        else:
            lengths[EW_PATH][k] = len(resp.edges) if resp.found else None

    def empty(k: int) -> None:
        elapsed, _ = _timed(lambda: stack.query_health.Check(HEALTH, timeout=cfg.deadline_s))
        res.findpath[FLOOR].latencies.append(elapsed)
        res.findpath[FLOOR].index.append(k)

    systems: dict[str, Callable[[int], None]] = {EW_PATH: ew, FLOOR: empty}
    if pg is not None:
        res.findpath[PG_BIDI] = Samples()

        def bidi(k: int) -> None:
            s, t = pairs[k]
            elapsed, dist = _timed(lambda: answers.bidirectional_distance(pg.expand_out, pg.expand_in, s, t,
                                                                          cfg.path_depth))
            res.findpath[PG_BIDI].latencies.append(elapsed)
            res.findpath[PG_BIDI].index.append(k)
            lengths[PG_BIDI][k] = dist
        systems[PG_BIDI] = bidi
    for fn in systems.values():
        fn(0)
    for s in res.findpath.values():
        s.latencies.clear(), s.index.clear()
        s.truncated = 0
    interleave(n, systems, cfg.block)
    checked = 0
    for k in range(n):
        truth = oracle.distance(pairs[k][0], pairs[k][1], cfg.path_depth)
        res.path_found["the graph (exact)"] = res.path_found.get("the graph (exact)", 0) + (truth is not None)
        for system, by_k in lengths.items():
            if k not in by_k:
                continue
            got = by_k[k]
            res.path_found[system] = res.path_found.get(system, 0) + (got is not None and got >= 0)
            if got == -1:  # Edgewise said truncated: "not found within the budget"
                continue
            checked += 1
            if (diff := answers.compare_paths(got, truth, system, "the graph")) is not None:
                res.mismatches.append(f"W2 {pairs[k][0]} -> {pairs[k][1]}: {diff}")
    res.checked["W2"] = checked


# ---------------------------------------------------------------------------------------------
# W3: GetNode vs the empty RPC, then concurrent callers


def _w3(stack: Stack, pg: PgQueries | None, graph: Graph, cfg: SideConfig, res: SideResult, rng: random.Random) -> None:
    ids = [node_id(rng.randrange(graph.nodes)) for _ in range(cfg.getnode_iterations)]

    def get_node(k: int) -> None:
        elapsed, resp = _timed(lambda: stack.queries.GetNode(q.GetNodeRequest(name=_name(ids[k])),
                                                             timeout=cfg.deadline_s))
        if resp.node.name != _name(ids[k]):
            raise RuntimeError(f"GetNode returned {resp.node.name!r} for {ids[k]}")
        res.reads["GetNode"].latencies.append(elapsed)

    def empty(k: int) -> None:
        res.reads[FLOOR].latencies.append(_timed(lambda: stack.query_health.Check(HEALTH, timeout=cfg.deadline_s))[0])

    res.reads = {"GetNode": Samples(), FLOOR: Samples()}
    systems: dict[str, Callable[[int], None]] = {"GetNode": get_node, FLOOR: empty}
    if pg is not None:
        res.reads["PG primary-key SELECT"] = Samples()

        def pg_get(k: int) -> None:
            elapsed, row = _timed(lambda: pg.get_node(ids[k]))
            if row is None:
                raise RuntimeError(f"PostgreSQL has no node {ids[k]}")
            res.reads["PG primary-key SELECT"].latencies.append(elapsed)
        systems["PG primary-key SELECT"] = pg_get
    for _ in range(20):
        for fn in systems.values():
            fn(0)
    for s in res.reads.values():
        s.latencies.clear()
    interleave(len(ids), systems, 1)  # round robin, rotating
    res.concurrent = asyncio.run(_concurrent(stack, graph, cfg, rng))


async def _concurrent(stack: Stack, graph: Graph, cfg: SideConfig, rng: random.Random) -> dict[str, dict]:
    out: dict[str, dict] = {}
    async with grpc.aio.insecure_channel(stack.addresses["query_service"]) as channel:
        queries = query_service_pb2_grpc.GraphQueryServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        calls = {
            "GetNode": lambda: queries.GetNode(q.GetNodeRequest(name=_name(rng.randrange(graph.nodes))),
                                               timeout=cfg.deadline_s),
            FLOOR: lambda: health.Check(HEALTH, timeout=cfg.deadline_s),
        }

        async def run(call, count: int) -> tuple[float, list[float]]:
            left = [count]
            lat: list[float] = []

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    t0 = time.perf_counter()
                    await call()
                    lat.append(time.perf_counter() - t0)
            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
            return time.perf_counter() - t, lat

        for call in calls.values():  # warm-up
            await run(call, cfg.concurrency * 5)
        for _ in range(2):  # two rounds, alternating, so drift hits both
            for name, call in calls.items():
                elapsed, lat = await run(call, cfg.concurrent_calls)
                entry = out.setdefault(name, {"elapsed": 0.0, "latencies": []})
                entry["elapsed"] += elapsed
                entry["latencies"] += lat
    for entry in out.values():
        entry["rps"] = len(entry["latencies"]) / entry["elapsed"]
    return out


# ---------------------------------------------------------------------------------------------
# W4: a Zipf GetNode/ListEdges mix and the cache hit ratio


def cache_counters(stack: Stack) -> dict[str, tuple[float, float]] | None:
    """HOOK(cache): the query service's read-cache (hits, misses) per kind, or None.

    The read cache exports Prometheus counters ``edgewise_read_cache_hits{kind=...}`` and
    ``edgewise_read_cache_misses{kind=...}`` on ``http://127.0.0.1:$EDGEWISE_METRICS_PORT/metrics``
    (the harness sets that port for the main query service). A query service without
    them (no cache yet, or metrics off) gives None, and the report says "not exposed" --
    never a made-up number.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode("utf-8", "replace")
    except OSError:
        return None
    return parse_cache_counters(text)


def parse_cache_counters(text: str) -> dict[str, tuple[float, float]] | None:
    """(hits, misses) per cache kind from Prometheus text exposition; None if absent."""
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        m = _CACHE_LINE.match(line)
        if m:
            which, kind, value = m.group(1), m.group(2), float(m.group(3))
            found.setdefault(kind, [0.0, 0.0])[0 if which == "hits" else 1] += value
    return {k: (v[0], v[1]) for k, v in found.items()} or None


_CACHE_LINE = re.compile(r'^edgewise_read_cache_(hits|misses)(?:_total)?\{kind="([^"]*)"\}\s+([0-9.eE+-]+)\s*$')


def _w4(stack: Stack, graph: Graph, cfg: SideConfig, res: SideResult, log) -> None:
    zipf = ZipfSampler(graph.nodes, 1.0, seed=cfg.seed + 4)
    rng = random.Random(cfg.seed + 5)
    res.mix = {"GetNode": Samples(), "ListEdges(IN, 50)": Samples()}

    def call(record: bool) -> None:
        ident = node_id(zipf.sample())
        if rng.random() < 0.5:
            elapsed, _ = _timed(lambda: stack.queries.GetNode(q.GetNodeRequest(name=_name(ident)),
                                                              timeout=cfg.deadline_s))
            key = "GetNode"
        else:
            elapsed, _ = _timed(lambda: stack.queries.ListEdges(q.ListEdgesRequest(
                name=_name(ident), edge_type=EDGE, direction=pb.DIRECTION_IN, page_size=50), timeout=cfg.deadline_s))
            key = "ListEdges(IN, 50)"
        if record:
            res.mix[key].latencies.append(elapsed)

    # Zipf(1.0) has a long tail: after W draws from N keys the keys seen carry
    # sum_k p_k (1 - (1 - p_k)^W) of the mass -- ~0.5 after 500 draws from 10^5 keys, ~0.91
    # after 3 x 10^5. "After warm-up" means the cache has met the keys that make up the
    # mix; each call draws its kind (GetNode or ListEdges) and its key independently, so
    # the warm-up is six draws per node (three per kind), from concurrent callers.
    warmup = cfg.mix_warmup or 6 * graph.nodes
    res.mix_warmup = warmup
    with ThreadPoolExecutor(cfg.mix_warmup_callers) as pool:
        list(pool.map(lambda _: call(False), range(warmup), chunksize=256))
    before = cache_counters(stack)
    for _ in range(cfg.mix_calls):
        call(True)
    after = cache_counters(stack)
    if before is not None and after is not None:
        for kind, (hits, misses) in after.items():
            h0, m0 = before.get(kind, (0.0, 0.0))
            if hits - h0 or misses - m0:
                res.cache_by_kind[kind] = (hits - h0, misses - m0)
        hits = sum(h for h, _ in res.cache_by_kind.values())
        misses = sum(m for _, m in res.cache_by_kind.values())
        res.cache_hit_ratio = hits / (hits + misses) if hits + misses else None
        log(f"  cache hit ratio: {res.cache_hit_ratio} ({res.cache_by_kind})")
    else:
        log("  cache hit ratio: not exposed")


# ---------------------------------------------------------------------------------------------


def run(cfg: SideConfig, workdir: Path, log=print) -> SideResult:
    res = SideResult(config=cfg)
    t = time.perf_counter()
    graph = power_law_graph(cfg.graph_nodes, cfg.out_degree, seed=cfg.seed)
    deg = sorted(graph.in_degrees(), reverse=True)
    res.graph = {"nodes": graph.nodes, "edges": len(graph.edges), "max_in": deg[0], "top10_in": deg[:10],
                 "median_in": deg[len(deg) // 2], "generate_s": time.perf_counter() - t}
    log(f"  graph: {graph.nodes} nodes, {len(graph.edges)} edges; in-degree max {deg[0]}, "
        f"median {deg[len(deg) // 2]} (generated in {res.graph['generate_s']:.1f}s)")
    zipf = ZipfSampler(graph.nodes, 1.0, seed=cfg.seed + 1)
    picks = zipf.samples(cfg.starts)
    starts = [node_id(i) for i in picks] * cfg.passes
    pairs = [(node_id(s), node_id(t)) for s, t in ZipfSampler(graph.nodes, 1.0, seed=cfg.seed + 2).pairs(cfg.starts)]
    pairs = pairs * cfg.passes
    res.graph["distinct_starts"] = len(set(picks))
    oracle = answers.Oracle(graph.nodes, graph.edges, node_id, node_index)

    pg_cluster: PgCluster | None = None
    pgq: PgQueries | None = None
    extra = {} if cfg.poll_ms is None else {"EDGEWISE_PROJECTOR_POLL_INTERVAL_MS": str(cfg.poll_ms)}
    stack = Stack(workdir, extra)
    try:
        if cfg.with_pg:
            try:
                pg_cluster = PgCluster(log=log).start()
                res.pg_version = pg_cluster.version
            except PgUnavailable as exc:
                res.pg_skipped = str(exc)
                log(f"  SKIPPING the PostgreSQL workloads: {exc}")
                pg_cluster = None
        else:
            res.pg_skipped = "disabled with --no-pg"
        stack.start()
        log("  [ingest] Edgewise BatchWrite")
        res.ew_ingest = _ew_ingest(stack, graph, cfg, log)
        log(f"  projection caught up {res.ew_ingest['catchup_s']:.1f}s after the last write; "
            f"DB file {res.ew_ingest['db_bytes'] / 2**20:.0f} MiB (+ WAL {res.ew_ingest['wal_bytes'] / 2**20:.0f} MiB)")
        if pg_cluster is not None:
            node_rows = [_node_row(i) for i in range(graph.nodes)]
            edge_rows = [(node_id(s), node_id(t)) for s, t in graph.edges]
            log("  [ingest] PostgreSQL durable batched INSERT")
            ing = pg_cluster.ingest(node_rows, edge_rows, batch=cfg.ingest_batch, workers=cfg.ingest_callers)
            res.pg_ingest = {"nodes": ing.nodes, "edges": ing.edges, "nodes_s": ing.nodes_s, "edges_s": ing.edges_s,
                             "latencies": ing.latencies, "bytes": ing.bytes, "edge_bytes": ing.edge_bytes,
                             "settings": ing.settings}
            log(f"  PostgreSQL INSERT: {ing.edges / ing.edges_s:.0f} edges/s, {ing.bytes / 2**20:.0f} MiB")
            res.pg_copy = pg_cluster.load_copy(node_rows, edge_rows)
            log(f"  PostgreSQL COPY: {res.pg_copy['copy_s']:.1f}s + index {res.pg_copy['index_s']:.1f}s")
            pgq = PgQueries(pg_cluster, cte_timeout_ms=cfg.cte_timeout_ms)
        naive = None
        if cfg.naive_cap > 0:
            # the N+1 baseline reads the store: without its read cache, every per-node read
            # is a storage round trip, as in a hand-written adjacency table
            naive = stack.start_query_replica("query_service_naive", {
                "EDGEWISE_TRAVERSE_ENGINE": "naive", "EDGEWISE_PROJECTOR_ENABLED": "false",
                "EDGEWISE_READ_CACHE_MB": "0"})
        stack.check_alive()
        t = time.perf_counter()
        log(f"  [W1] 3-hop IN traversal: {len(starts)} samples ({cfg.starts} Zipf starts x {cfg.passes})")
        _w1(stack, naive, pgq, starts, cfg, res, oracle)
        res.timings["W1"] = time.perf_counter() - t
        t = time.perf_counter()
        log(f"  [W2] FindPath: {len(pairs)} samples")
        _w2(stack, pgq, pairs, cfg, res, oracle)
        res.timings["W2"] = time.perf_counter() - t
        t = time.perf_counter()
        log("  [W3] GetNode vs empty RPC; concurrent callers")
        _w3(stack, pgq, graph, cfg, res, random.Random(cfg.seed + 3))
        res.timings["W3"] = time.perf_counter() - t
        t = time.perf_counter()
        log("  [W4] Zipf GetNode/ListEdges mix")
        _w4(stack, graph, cfg, res, log)
        res.timings["W4"] = time.perf_counter() - t
    except BaseException:
        for module in stack.processes:
            log(f"--- last lines of {module}'s log ---\n{stack.tail(module)}")
        raise
    finally:
        if pgq is not None:
            pgq.close()
        res.exit_codes = stack.stop()
        if pg_cluster is not None:
            pg_cluster.stop()
    return res


def summary(res: SideResult) -> dict:
    """Headline numbers (medians, rates) used by the report and the targets table."""
    out: dict = {}
    ew = res.ew_ingest
    if ew:
        out["ew_edges_per_s"] = ew["edges"] / ew["edges_s"]
        out["ew_nodes_per_s"] = ew["nodes"] / ew["nodes_s"]
        out["ew_batch_p50"] = median(ew["latencies"])
    if res.pg_ingest:
        out["pg_edges_per_s"] = res.pg_ingest["edges"] / res.pg_ingest["edges_s"]
        out["pg_nodes_per_s"] = res.pg_ingest["nodes"] / res.pg_ingest["nodes_s"]
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")
