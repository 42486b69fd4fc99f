"""GetNode against the floor: ``python -m bench.getnode_floor [--help]``.

Starts both services as real processes (bench/stack.py), loads a small graph, then
measures on ONE channel to the query service, side by side in one run:

1. latency, one caller: GetNode and grpc.health.v1 Health/Check interleaved (the order
   rotates), p50/p99 of each and their ratio;
2. throughput, 16 concurrent callers (grpc.aio, one loop): GetNode and Health/Check
   calls per second and p50/p99;
3. with ``--zipf``: a Zipf(1.0) GetNode/ListEdges mix, and the read cache's hit ratio
   scraped from the query service's /metrics.

``--root DIR`` starts the services from another source tree (e.g. an exported older
commit with its generated ``edgewise/``) to compare before and after on the same
machine; ``--cache-mb`` sets EDGEWISE_READ_CACHE_MB (0 = off). Timings on a shared
machine are noisy: compare numbers from one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import bench.stack as stack_module
from bench.stack import Stack, free_port
from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc
from edgewise.graph.v1 import resources_pb2 as pb

GRAPH = "graphs/floor"
TIMEOUT = 10.0
HEALTH = health_pb2.HealthCheckRequest(service="edgewise.graph.v1.GraphQueryService")


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000 if s else float("nan")


def _populate(stack: Stack, nodes: int, fanout: int, rng: random.Random) -> str:
    P = pb.PropertyDefinition
    schema = pb.Schema(
        node_types=[pb.NodeType(name="Node", properties=[P(name="name", kind=pb.PROPERTY_KIND_STRING),
                                                         P(name="rank", kind=pb.PROPERTY_KIND_INT)])],
        edge_types=[pb.EdgeType(name="follows", source_type="Node", target_type="Node",
                                cardinality=pb.CARDINALITY_MANY_TO_MANY, on_delete=pb.ON_DELETE_CASCADE)])
    stack.commands.ApplySchema(cmd.ApplySchemaRequest(graph=GRAPH, schema=schema, request_id=str(uuid.uuid4())),
                               timeout=TIMEOUT)
    ops = []
    for i in range(nodes):
        node = pb.Node(type="Node")
        node.properties["name"].CopyFrom(pb.PropertyValue(string_value=f"node {i}"))
        node.properties["rank"].CopyFrom(pb.PropertyValue(int_value=i % 1000))
        ops.append(cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=f"n{i}", node=node)))
    for i in range(nodes):
        for t in rng.sample(range(nodes), fanout):
            if t != i:
                ops.append(cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(
                    source=f"{GRAPH}/nodes/n{i}", type="follows", target=f"{GRAPH}/nodes/n{t}"))))
    token = ""
    for i in range(0, len(ops), 100):
        token = stack.commands.BatchWrite(cmd.BatchWriteRequest(parent=GRAPH, operations=ops[i:i + 100],
                                                                request_id=str(uuid.uuid4())),
                                          timeout=TIMEOUT).consistency_token
    for _ in range(200):  # wait until projected
        try:
            stack.queries.GetNode(q.GetNodeRequest(name=f"{GRAPH}/nodes/n0", consistency=pb.ReadConsistency(
                at_least_token=token)), timeout=TIMEOUT)
            return token
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
    raise RuntimeError("the graph was never projected")


def latency(stack: Stack, nodes: int, iterations: int, rng: random.Random) -> dict[str, list[float]]:
    calls = {
        "Health/Check": lambda: stack.query_health.Check(HEALTH, timeout=TIMEOUT),
        "GetNode": lambda: stack.queries.GetNode(q.GetNodeRequest(name=f"{GRAPH}/nodes/n{rng.randrange(nodes)}"),
                                                 timeout=TIMEOUT),
    }
    for _ in range(50):
        for fn in calls.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(iterations):
        for name in (names if i % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            calls[name]()
            out[name].append(time.perf_counter() - t0)
    return out


async def _concurrent(address: str, nodes: int, callers: int, seconds: float, which: str) -> tuple[int, list[float]]:
    async with grpc.aio.insecure_channel(address) as channel:
        queries = query_service_pb2_grpc.GraphQueryServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        rng = random.Random(1)

        async def one() -> None:
            if which == "GetNode":
                await queries.GetNode(q.GetNodeRequest(name=f"{GRAPH}/nodes/n{rng.randrange(nodes)}"), timeout=TIMEOUT)
            else:
                await health.Check(HEALTH, timeout=TIMEOUT)

        for _ in range(100):
            await one()
        times: list[float] = []
        stop = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                await one()
                times.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return int(len(times) / (time.perf_counter() - started)), times


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in r.read().decode().splitlines()
                if line.startswith("edgewise_read_cache")}


def zipf_mix(stack: Stack, nodes: int, calls: int, port: int, rng: random.Random) -> float:
    weights = [1.0 / (k + 1) for k in range(nodes)]  # Zipf(1.0) over node ranks
    ranks = list(range(nodes))
    rng.shuffle(ranks)
    warm = calls // 5
    before: dict[str, float] = {}
    for i in range(calls):
        if i == warm:
            before = _scrape(port)
        node = f"{GRAPH}/nodes/n{ranks[rng.choices(range(nodes), weights)[0]]}"
        if rng.random() < 0.5:
            stack.queries.GetNode(q.GetNodeRequest(name=node), timeout=TIMEOUT)
        else:
            stack.queries.ListEdges(q.ListEdgesRequest(name=node, edge_type="follows", direction=pb.DIRECTION_OUT,
                                                       page_size=50), timeout=TIMEOUT)
    after = _scrape(port)

    def total(prefix: str, d: dict[str, float]) -> float:
        return sum(v for k, v in d.items() if k.startswith(prefix))

    hits = total("edgewise_read_cache_hits_total", after) - total("edgewise_read_cache_hits_total", before)
    misses = total("edgewise_read_cache_misses_total", after) - total("edgewise_read_cache_misses_total", before)
    return hits / (hits + misses) if hits + misses else 0.0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.getnode_floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=None, help="source tree to start the services from")
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--fanout", type=int, default=10)
    p.add_argument("--iterations", type=int, default=1000, help="latency samples per RPC (default 1000)")
    p.add_argument("--callers", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0, help="per throughput case (default 5)")
    p.add_argument("--cache-mb", type=int, default=None, help="EDGEWISE_READ_CACHE_MB (default: the service's)")
    p.add_argument("--zipf", type=int, default=0, help="calls of the Zipf(1.0) GetNode/ListEdges mix (0 = skip)")
    args = p.parse_args(argv)
    if args.root is not None:
        stack_module.ROOT = args.root.resolve()
    rng = random.Random(7)
    metrics_port = free_port()
    extra = {"EDGEWISE_METRICS_PORT": str(metrics_port), "EDGEWISE_LOG_LEVEL": "WARNING"}
    if args.cache_mb is not None:
        extra["EDGEWISE_READ_CACHE_MB"] = str(args.cache_mb)
    with tempfile.TemporaryDirectory(prefix="edgewise-floor-") as tmp:
        with Stack(Path(tmp), extra) as stack:
            _populate(stack, args.nodes, args.fanout, rng)
            print(f"root {stack_module.ROOT}; {args.nodes} nodes; cache_mb={'default' if args.cache_mb is None else args.cache_mb}")
            lat = latency(stack, args.nodes, args.iterations, rng)
            h50, g50 = _pct(lat["Health/Check"], 0.5), _pct(lat["GetNode"], 0.5)
            print("one caller:            p50 ms   p99 ms")
            for name, values in lat.items():
                print(f"  {name:<18} {_pct(values, 0.5):8.3f} {_pct(values, 0.99):8.3f}")
            print(f"  GetNode / Health p50 = {g50 / h50:.2f}x")
            print(f"{args.callers} callers:            calls/s   p50 ms   p99 ms")
            for which in ("Health/Check", "GetNode"):
                rate, times = asyncio.run(_concurrent(stack.addresses["query_service"], args.nodes, args.callers,
                                                      args.seconds, which))
                print(f"  {which:<18} {rate:9d} {_pct(times, 0.5):8.3f} {_pct(times, 0.99):8.3f}")
            if args.zipf:
                try:
                    ratio = zipf_mix(stack, args.nodes, args.zipf, metrics_port, rng)
                    print(f"Zipf(1.0) GetNode/ListEdges mix, {args.zipf} calls: hit ratio after warm-up {ratio:.1%}")
                except OSError as exc:
                    print(f"Zipf mix: no /metrics ({exc})")


if __name__ == "__main__":
    main()
