"""Ingest throughput of BatchWrite (ADR 0006): ``python -m bench.ingest_profile --help``.

Creates ``--nodes`` nodes then adds ``--edges`` random distinct ``follows`` edges,
``--batch`` operations per BatchWrite (each with a request id), ``--callers``
concurrent callers, and prints nodes/s, edges/s, the server's CPU time per node and per
edge (steadier than wall rates on a shared machine) and the data file's size
(``--tables``: per table and index, from dbstat; ``--threads``: the server's CPU per
item by thread, the event loop apart from the SQLite writer thread).

``--mode inproc`` drives the command application in this process (with ``--profile``
it prints the top cProfile entries of the edge phase); ``--mode grpc`` starts
``python -m command_service`` and calls it through gRPC, which is what callers see.
Writes only to a temporary directory; binds only to 127.0.0.1. Not part of make test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

from bench.stack import BENCH_LIMITS

GRAPH = "bench"
ROOT = Path(__file__).resolve().parents[1]


def _schema() -> Any:
    from domain.schema import EdgeType, NodeType, PropertyDef
    from domain.values import PropertyKind
    user = NodeType("User", (PropertyDef("name", PropertyKind.STRING, required=True),
                             PropertyDef("handle", PropertyKind.STRING, unique=True)))
    return (user,), (EdgeType("follows", "User", "User"),)


def _edges(nodes: int, count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    while len(seen) < count:
        a, b = rng.randrange(nodes), rng.randrange(nodes)
        if a != b:
            seen.add((f"n{a}", f"n{b}"))
    out = sorted(seen)
    rng.shuffle(out)
    return out


def _cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system, all threads) of this process or of ``pid``: on a busy
    2-core box it moves much less than the wall clock does."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu(pid: int | None) -> dict[str, float]:
    """CPU seconds (user + system) per thread of this process or of ``pid``: the event
    loop (the main thread) and every other thread that ran (the SQLite writer above all)."""
    pid = pid or os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out["event loop" if int(tid) == pid else f"thread {tid}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


async def _drive(batches: list[Any], callers: int, send: Callable[[Any], Awaitable[None]],
                 pid: int | None = None) -> tuple[float, float, dict[str, float]]:
    """(wall seconds, CPU seconds of the process doing the writes, CPU seconds per thread)."""
    queue = list(reversed(batches))

    async def caller() -> None:
        while queue:
            await send(queue.pop())

    started, cpu, threads = time.perf_counter(), _cpu_seconds(pid), _thread_cpu(pid)
    await asyncio.gather(*(caller() for _ in range(callers)))
    after = _thread_cpu(pid)
    per_thread = {name: seconds - threads.get(name, 0.0) for name, seconds in after.items()}
    return time.perf_counter() - started, _cpu_seconds(pid) - cpu, per_thread


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def run_inproc(args: argparse.Namespace, db: Path) -> dict[str, float]:
    from command_service.app.commands.add_edge import AddEdge
    from command_service.app.commands.apply_schema import ApplySchema
    from command_service.app.commands.batch_write import BatchWrite
    from command_service.app.commands.create_node import CreateNode
    from command_service.bootstrap import build_application
    from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
    from infrastructure.system import SystemClock, Uuid4Ids
    from infrastructure.tokens import TokenSigner

    from command_service.__main__ import GC_THRESHOLDS
    gc.set_threshold(*GC_THRESHOLDS)  # as the command process runs
    store = await SqliteWriteStore.open(str(db))
    app = build_application(store=store, clock=SystemClock(), ids=Uuid4Ids(),
                            signer=TokenSigner(b"bench-only-secret-0123456789abcdef0123"))
    try:
        node_types, edge_types = _schema()
        await app.dispatch(ApplySchema(graph=GRAPH, node_types=node_types, edge_types=edge_types,
                                       expected_version=0))
        node_batches = [BatchWrite(graph=GRAPH, request_id=str(uuid.uuid4()), operations=tuple(
            CreateNode(graph=GRAPH, type="User", node_id=f"n{i}", properties={"name": f"user {i}", "handle": f"h{i}"})
            for i in chunk)) for chunk in _chunks(list(range(args.nodes)), args.batch)]
        edge_batches = [BatchWrite(graph=GRAPH, request_id=str(uuid.uuid4()), operations=tuple(
            AddEdge(graph=GRAPH, source=s, type="follows", target=t) for s, t in chunk))
            for chunk in _chunks(_edges(args.nodes, args.edges, args.seed), args.batch)]

        async def send(cmd: Any) -> None:
            await app.dispatch(cmd)

        nodes = await _drive(node_batches, args.callers, send)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        edges = await _drive(edge_batches, args.callers, send)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    finally:
        await app.close()
    return {"nodes": nodes, "edges": edges}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_grpc(args: argparse.Namespace, db: Path) -> dict[str, float]:
    import grpc

    from domain.schema import Schema
    from edgewise.graph.v1 import command_service_pb2 as cpb
    from edgewise.graph.v1 import command_service_pb2_grpc as cpb_grpc
    from edgewise.graph.v1 import resources_pb2 as pb
    from infrastructure.grpc.convert import schema_to_proto

    addr = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEWISE_DB_PATH": str(db), "EDGEWISE_LOG_LEVEL": "WARNING",
           "EDGEWISE_TOKEN_SECRET": "bench-only-secret-0123456789abcdef0123", "EDGEWISE_AUTH_MODE": "dev", **BENCH_LIMITS, "EDGEWISE_COMMAND_ADDR": addr,
           "EDGEWISE_QUERY_ADDR": f"127.0.0.1:{_free_port()}"}
    log = (db.parent / "command_service.log").open("wb")
    profile = ["-m", "cProfile", "-o", args.server_profile] if args.server_profile else []
    proc = subprocess.Popen([sys.executable, *profile, "-m", "command_service"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        async with grpc.aio.insecure_channel(addr) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = cpb_grpc.GraphCommandServiceStub(channel)
            node_types, edge_types = _schema()
            schema = schema_to_proto(Schema(GRAPH, node_types={t.name: t for t in node_types},
                                            edge_types={t.name: t for t in edge_types}))
            await stub.ApplySchema(cpb.ApplySchemaRequest(graph=f"graphs/{GRAPH}", schema=schema), timeout=30)

            def node_op(i: int) -> Any:
                node = pb.Node(type="User")
                node.properties["name"].string_value = f"user {i}"
                node.properties["handle"].string_value = f"h{i}"
                return cpb.BatchWriteOperation(create_node=cpb.CreateNodeOperation(node_id=f"n{i}", node=node))

            def edge_op(s: str, t: str) -> Any:
                return cpb.BatchWriteOperation(add_edge=cpb.AddEdgeOperation(edge=pb.Edge(
                    source=f"graphs/{GRAPH}/nodes/{s}", type="follows", target=f"graphs/{GRAPH}/nodes/{t}")))

            parent = f"graphs/{GRAPH}"
            node_batches = [cpb.BatchWriteRequest(parent=parent, request_id=str(uuid.uuid4()),
                                                  operations=[node_op(i) for i in chunk])
                            for chunk in _chunks(list(range(args.nodes)), args.batch)]
            edge_batches = [cpb.BatchWriteRequest(parent=parent, request_id=str(uuid.uuid4()),
                                                  operations=[edge_op(s, t) for s, t in chunk])
                            for chunk in _chunks(_edges(args.nodes, args.edges, args.seed), args.batch)]

            async def send(request: Any) -> None:
                await stub.BatchWrite(request, timeout=60)

            nodes = await _drive(node_batches, args.callers, send, proc.pid)
            edges = await _drive(edge_batches, args.callers, send, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    return {"nodes": nodes, "edges": edges}


def _db_bytes(db: Path) -> tuple[int, dict[str, int]]:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            tables = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        except sqlite3.OperationalError:  # dbstat not compiled in
            tables = {}
    return db.stat().st_size, tables


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("inproc", "grpc"), default="inproc")
    p.add_argument("--nodes", type=int, default=20_000)
    p.add_argument("--edges", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--callers", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--profile", action="store_true", help="inproc: cProfile the edge phase")
    p.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--server-profile", metavar="PATH", help="grpc: run the server under cProfile, stats to PATH")
    p.add_argument("--tables", action="store_true", help="print bytes per table (dbstat)")
    p.add_argument("--threads", action="store_true",
                   help="print the server's CPU per item by thread (event loop, SQLite writer, ...)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgewise-ingest-") as tmp:
        db = Path(tmp) / "edgewise.db"
        runner = run_inproc if args.mode == "inproc" else run_grpc
        times = asyncio.run(runner(args, db))
        size, tables = _db_bytes(db)
    print(f"mode={args.mode} nodes={args.nodes} edges={args.edges} batch={args.batch} callers={args.callers}")
    for label, count, unit in (("CreateNode", args.nodes, "nodes"), ("AddEdge", args.edges, "edges")):
        wall, cpu, threads = times[unit]
        print(f"  {label + ' batches:':20s}{count / wall:9.0f} {unit}/s  "
              f"(server CPU {cpu / count * 1e6:6.0f} us per {unit[:-1]})")
        if args.threads:
            busy = sorted(((s, n) for n, s in threads.items() if s / count * 1e6 >= 1), reverse=True)
            print("      by thread: " + ", ".join(f"{n} {s / count * 1e6:.0f} us" for s, n in busy))
    print(f"  data file: {size / 2**20:.1f} MiB, {size / (args.nodes + args.edges):.0f} bytes per node+edge")
    if args.tables:
        for name, nbytes in sorted(tables.items(), key=lambda kv: -kv[1]):
            print(f"    {name:28s} {nbytes / 2**20:8.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
