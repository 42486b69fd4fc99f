"""Workloads 2 and 3: both services as real processes, driven through the generated stubs.

Workload 2 (read latency against an empty RPC): GetNode, ListEdges (page of 50) and
Traverse (depth 2) against ``grpc.health.v1.Health/Check`` on the SAME channel to the
query service, the four calls interleaved round-robin so drift hits them alike.
The health check goes through the same server, interceptor chain and channel but
does no work: its latency is the floor the stack (client stub, HTTP/2, gRPC server,
middleware, event loop) puts under every call.

Workload 3 (write path and projection lag): CreateNode and AddEdge (each with a
request_id, as real callers send) through the command service; right after each
write's response, a read with ``consistency.at_least_token`` set to that write's
token (GetNode for a node, GetEdge for an edge) is sent to the query service. The
projection lag reported is the time from the write's response until that read
succeeds (the query service holds it until the projector has applied the write).
Each write is preceded by a random pause (0..``write_gap_ms``) so that writes arrive
at a random phase of the projector's poll loop, as independent callers would.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health_pb2

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb

from bench.stack import Stack
from bench.stats import median, ms, p95, ratio, table

GRAPH = "graphs/bench"
TIMEOUT = 10.0
MAX_ATTEMPTS = 20  # bounded retries of a consistency read that came back UNAVAILABLE


@dataclass
class E2EConfig:
    nodes: int = 500
    fanout: int = 10  # "follows" out-edges per node (Traverse depth 2 reaches about 1 + f + f^2 nodes)
    hubs: int = 10  # nodes with hub_edges extra out-edges ("links"), so a ListEdges page is full
    hub_edges: int = 60
    read_iterations: int = 300  # each of the four RPCs is timed this many times
    writes: int = 100  # CreateNode and AddEdge each
    warmup: int = 20
    poll_interval_ms: int | None = None  # None: the service default (EDGEWISE_PROJECTOR_POLL_INTERVAL_MS)
    # a random pause of 0..write_gap_ms before each write: a closed loop would otherwise fall into
    # step with the projector's polling (every write landing just after a poll, so every lag a full interval)
    write_gap_ms: float = 60.0
    seed: int = 7


@dataclass
class E2EResult:
    reads: dict[str, list[float]] = field(default_factory=dict)
    writes: dict[str, list[float]] = field(default_factory=dict)
    lag: dict[str, list[float]] = field(default_factory=dict)
    setup: dict[str, float] = field(default_factory=dict)
    traverse_nodes: float = 0.0
    exit_codes: dict[str, int] = field(default_factory=dict)


def _name(node_id: str) -> str:
    return f"{GRAPH}/nodes/{node_id}"


def _schema() -> pb.Schema:
    P = pb.PropertyDefinition
    return pb.Schema(
        node_types=[pb.NodeType(name="Node", properties=[P(name="name", kind=pb.PROPERTY_KIND_STRING),
                                                         P(name="rank", kind=pb.PROPERTY_KIND_INT)])],
        edge_types=[pb.EdgeType(name=t, source_type="Node", target_type="Node",
                                cardinality=pb.CARDINALITY_MANY_TO_MANY, on_delete=pb.ON_DELETE_CASCADE)
                    for t in ("follows", "links")])


def _node(i: int | str) -> pb.Node:
    node = pb.Node(type="Node")
    node.properties["name"].CopyFrom(pb.PropertyValue(string_value=f"node {i}"))
    node.properties["rank"].CopyFrom(pb.PropertyValue(int_value=hash(str(i)) % 1000))
    return node


def _populate(stack: Stack, cfg: E2EConfig, rng: random.Random) -> str:
    stack.commands.ApplySchema(cmd.ApplySchemaRequest(graph=GRAPH, schema=_schema(), expected_version=0,
                                                      request_id=str(uuid.uuid4())), timeout=TIMEOUT)
    ops = [cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=f"n{i}", node=_node(i)))
           for i in range(cfg.nodes)]
    edges: set[tuple[str, str, str]] = set()
    for i in range(cfg.nodes):
        for t in rng.sample([t for t in range(cfg.nodes) if t != i], min(cfg.fanout, cfg.nodes - 1)):
            edges.add((f"n{i}", "follows", f"n{t}"))
    for h in range(min(cfg.hubs, cfg.nodes)):
        for t in rng.sample([t for t in range(cfg.nodes) if t != h], min(cfg.hub_edges, cfg.nodes - 1)):
            edges.add((f"n{h}", "links", f"n{t}"))
    ops += [cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(
        source=_name(s), type=t, target=_name(d)))) for s, t, d in sorted(edges)]
    token = ""
    for i in range(0, len(ops), 100):  # BatchWrite takes at most 100 operations
        token = stack.commands.BatchWrite(cmd.BatchWriteRequest(parent=GRAPH, operations=ops[i:i + 100],
                                                                request_id=str(uuid.uuid4())),
                                          timeout=TIMEOUT).consistency_token
    return token


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _read_until_consistent(call: Callable[[], object]) -> None:
    for _ in range(MAX_ATTEMPTS):
        try:
            call()
            return
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
    raise RuntimeError(f"a consistency read still failed after {MAX_ATTEMPTS} attempts")


def run(cfg: E2EConfig, workdir: Path, log=print) -> E2EResult:
    rng = random.Random(cfg.seed)
    extra = {} if cfg.poll_interval_ms is None else {"EDGEWISE_PROJECTOR_POLL_INTERVAL_MS": str(cfg.poll_interval_ms)}
    result = E2EResult()
    stack = Stack(workdir, extra)
    try:
        t = time.perf_counter()
        stack.start()
        result.setup["start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        token = _populate(stack, cfg, rng)
        # wait until the query side has projected everything written so far
        _read_until_consistent(lambda: stack.queries.GetNode(q.GetNodeRequest(
            name=_name("n0"), consistency=pb.ReadConsistency(at_least_token=token)), timeout=TIMEOUT))
        result.setup["populate_s"] = time.perf_counter() - t
        log(f"  stack up in {result.setup['start_s']:.1f}s; {cfg.nodes} nodes and their edges written "
            f"and projected in {result.setup['populate_s']:.1f}s")
        _workload_reads(stack, cfg, rng, result)
        _workload_writes(stack, cfg, rng, result)
    except BaseException:
        for module in stack.processes:
            log(f"--- last lines of {module}'s log ---\n{stack.tail(module)}")
        raise
    finally:
        result.exit_codes = stack.stop()
    return result


def _workload_reads(stack: Stack, cfg: E2EConfig, rng: random.Random, result: E2EResult) -> None:
    health = health_pb2.HealthCheckRequest(service="edgewise.graph.v1.GraphQueryService")
    ordinary = [f"n{i}" for i in range(min(cfg.hubs, cfg.nodes), cfg.nodes)] or ["n0"]
    hubs = [f"n{i}" for i in range(min(cfg.hubs, cfg.nodes))] or ["n0"]
    traversed: list[int] = []

    def check_health() -> object:
        resp = stack.query_health.Check(health, timeout=TIMEOUT)
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError("the query service is not SERVING")
        return resp

    def get_node() -> object:
        return stack.queries.GetNode(q.GetNodeRequest(name=_name(rng.choice(ordinary))), timeout=TIMEOUT)

    def list_edges() -> object:
        resp = stack.queries.ListEdges(q.ListEdgesRequest(
            name=_name(rng.choice(hubs)), edge_type="links", direction=pb.DIRECTION_OUT, page_size=50),
            timeout=TIMEOUT)
        if len(resp.edges) != min(50, cfg.hub_edges, cfg.nodes - 1):
            raise RuntimeError(f"ListEdges returned {len(resp.edges)} edges")
        return resp

    def traverse() -> object:
        resp = stack.queries.Traverse(q.TraverseRequest(
            start=_name(rng.choice(ordinary)),
            steps=[q.TraversalStep(edge_type="follows", direction=pb.DIRECTION_OUT, repeat=True)],
            budget=q.TraversalBudget(max_depth=2, max_nodes=10_000, per_node_fanout=1000)), timeout=TIMEOUT)
        traversed.append(len(resp.nodes))
        return resp

    calls = {"Health/Check (empty)": check_health, "GetNode": get_node, "ListEdges(50)": list_edges,
             "Traverse(depth 2)": traverse}
    result.reads = {name: [] for name in calls}
    for _ in range(cfg.warmup):
        for fn in calls.values():
            fn()
    traversed.clear()
    names = list(calls)
    for i in range(cfg.read_iterations):
        shift = i % len(names)  # rotate the order so no call always follows another
        for name in names[shift:] + names[:shift]:
            elapsed, _ = _timed(calls[name])
            result.reads[name].append(elapsed)
    result.traverse_nodes = sum(traversed) / max(1, len(traversed))


def _workload_writes(stack: Stack, cfg: E2EConfig, rng: random.Random, result: E2EResult) -> None:
    result.writes = {"CreateNode": [], "AddEdge": []}
    result.lag = {"CreateNode": [], "AddEdge": []}
    existing = [f"n{i}" for i in range(cfg.nodes)]
    for i in range(cfg.warmup + cfg.writes):
        record = i >= cfg.warmup
        node_id = f"w{i}"
        time.sleep(rng.uniform(0, cfg.write_gap_ms) / 1000.0)
        elapsed, resp = _timed(lambda: stack.commands.CreateNode(cmd.CreateNodeRequest(
            parent=GRAPH, node_id=node_id, node=_node(node_id), request_id=str(uuid.uuid4())), timeout=TIMEOUT))
        done = time.perf_counter()
        token = resp.consistency_token
        _read_until_consistent(lambda: stack.queries.GetNode(q.GetNodeRequest(
            name=_name(node_id), consistency=pb.ReadConsistency(at_least_token=token)), timeout=TIMEOUT))
        if record:
            result.writes["CreateNode"].append(elapsed)
            result.lag["CreateNode"].append(time.perf_counter() - done)

        target = rng.choice(existing)
        time.sleep(rng.uniform(0, cfg.write_gap_ms) / 1000.0)
        elapsed, resp = _timed(lambda: stack.commands.AddEdge(cmd.AddEdgeRequest(
            parent=GRAPH, edge=pb.Edge(source=_name(node_id), type="follows", target=_name(target)),
            request_id=str(uuid.uuid4())), timeout=TIMEOUT))
        done = time.perf_counter()
        token = resp.consistency_token
        _read_until_consistent(lambda: stack.queries.GetEdge(q.GetEdgeRequest(
            parent=GRAPH, source=_name(node_id), type="follows", target=_name(target),
            consistency=pb.ReadConsistency(at_least_token=token)), timeout=TIMEOUT))
        if record:
            result.writes["AddEdge"].append(elapsed)
            result.lag["AddEdge"].append(time.perf_counter() - done)


def report(r: E2EResult) -> tuple[str, str]:
    empty = median(r.reads["Health/Check (empty)"])
    empty95 = p95(r.reads["Health/Check (empty)"])
    rows = [[name, len(xs), ms(median(xs)), ms(p95(xs)), ratio(median(xs), empty), ratio(p95(xs), empty95)]
            for name, xs in r.reads.items()]
    reads = table(["RPC (query service)", "n", "p50 ms", "p95 ms", "p50 / empty", "p95 / empty"], rows)
    reads += f"\n(Traverse depth 2 returned {r.traverse_nodes:.0f} nodes on average)"
    rows = []
    for name in r.writes:
        w, lag = r.writes[name], r.lag[name]
        rows.append([name, len(w), ms(median(w)), ms(p95(w)), ratio(median(w), empty), ms(median(lag)), ms(p95(lag))])
    writes = table(["write (command service)", "n", "p50 ms", "p95 ms", "p50 / empty",
                    "lag p50 ms", "lag p95 ms"], rows)
    return reads, writes
