"""Projection throughput (ADR 0008): ``python -m bench.projection_profile --help``.

Builds an event log (cached in ``--log``, rebuilt when missing): ``--nodes`` users, each
created and then following 10 others (80% picked in proportion to their followers: a
power law), so ~10 ``EdgeAdded`` per ``NodeCreated``; ``--nodes-only`` writes just the
``NodeCreated`` events. Then projects a fresh copy of it with ``Projector.catch_up`` (the
projector, store and connection the query service uses) and prints events/s and CPU
time per event (steadier than wall rates on a shared machine). ``--profile`` prints the
top cProfile entries of the store's thread. Writes only to a temporary directory.
Not part of make test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRAPH = "bench"


def build_log(path: str, nodes: int, *, edges_per_node: int = 10, nodes_only: bool = False, seed: int = 7) -> int:
    from domain.events import EdgeAdded, NodeCreated, SchemaApplied
    from domain.schema import EdgeType, NodeType, PropertyDef, Schema, schema_to_dict
    from domain.values import PropertyKind
    from infrastructure.persistence.sqlite.event_log import EVENT_LOG_DDL, append_events

    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(seed)
    counter = iter(range(1, 1 << 62))

    def common(aggregate: str) -> dict:
        k = next(counter)
        return dict(event_id=f"e{k}", graph=GRAPH, aggregate_id=aggregate, aggregate_version=1,
                    occurred_at=t0 + timedelta(microseconds=1000 * k))

    user = NodeType("user", (PropertyDef("name", PropertyKind.STRING), PropertyDef("rank", PropertyKind.INT)))
    schema = Schema(graph=GRAPH, version=1, node_types={"user": user},
                    edge_types={"follows": EdgeType("follows", "user", "user")}, update_time=t0)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(EVENT_LOG_DDL)
    conn.execute("BEGIN")
    append_events(conn, [SchemaApplied(**common("schema"), schema=schema_to_dict(schema))])
    followed: list[int] = []  # one entry per follower: sampling it is preferential attachment
    batch: list = []
    total = 1
    for i in range(nodes):
        batch.append(NodeCreated(**common(f"u{i}"), node_type="user", properties={"name": f"user {i}", "rank": i}))
        if not nodes_only and i > edges_per_node:
            targets: set[int] = set()
            while len(targets) < edges_per_node:
                targets.add(followed[rng.randrange(len(followed))] if rng.random() < 0.8 else rng.randrange(i))
            for t in targets:
                c = common(f"u{i}/follows/u{t}")
                batch.append(EdgeAdded(**c, source=f"u{i}", edge_type="follows", target=f"u{t}", properties={},
                                       create_time=c["occurred_at"]))
                followed.append(t)
        followed.append(i)
        if len(batch) >= 20_000:
            append_events(conn, batch)
            total += len(batch)
            batch = []
    append_events(conn, batch)
    total += len(batch)
    conn.execute("COMMIT")
    conn.close()
    return total


async def project(log: str, workdir: str, *, batch_size: int | None, profile: bool) -> dict:
    from infrastructure.persistence.sqlite.connection import SqliteConnection, SqliteReaderPool
    from infrastructure.persistence.sqlite.event_log import SqliteEventLog
    from infrastructure.persistence.sqlite.read_model import (
        SqliteProjectionStore, SqliteReadModel, prepare_read_model, relax_projection_durability,
    )
    from infrastructure.tokens import TokenSigner
    from query_service.bootstrap import build_application

    db = os.path.join(workdir, "projected.db")
    shutil.copy(log, db)
    writer = await SqliteConnection(db, name="sqlite-read-model-writer").open()
    await writer.run(prepare_read_model)
    await writer.run(relax_projection_durability)  # as query_service.bootstrap does
    readers = await SqliteReaderPool(db, size=1).open()
    app = build_application(read_model=SqliteReadModel(readers), store=SqliteProjectionStore(writer),
                            event_log=SqliteEventLog(readers), signer=TokenSigner(b"b" * 32), projector_enabled=True)
    projector = app.projector
    assert projector is not None  # projector_enabled
    if batch_size:
        projector._batch_size = batch_size
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:  # the store's work runs on the writer's thread
        await writer.run(lambda c: profiler.enable())
    cpu, wall = time.process_time(), time.perf_counter()
    events = await projector.catch_up()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profiler is not None:
        await writer.run(lambda c: profiler.disable())
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    await readers.close()
    await writer.close()
    return {"events": events, "wall": wall, "cpu": cpu, "batches": projector.batches_applied,
            "mib": os.path.getsize(db) / 2**20}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000, help="users (edges: ~10 per user)")
    parser.add_argument("--nodes-only", action="store_true", help="a log of NodeCreated events only")
    parser.add_argument("--log", default=None, help="event log file to build or reuse")
    parser.add_argument("--batch", type=int, default=None, help="projector batch size (default: the projector's)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="edgewise-projection-") as tmp:
        log = args.log or os.path.join(tmp, "log.db")
        if not os.path.exists(log):
            started = time.perf_counter()
            n = build_log(log, args.nodes, nodes_only=args.nodes_only)
            print(f"built {log}: {n} events in {time.perf_counter() - started:.1f}s")
        for _ in range(args.runs):
            r = asyncio.run(project(log, tmp, batch_size=args.batch, profile=args.profile))
            print(f"{r['events']} events in {r['wall']:.1f}s = {r['events'] / r['wall']:.0f} events/s; "
                  f"CPU {r['cpu']:.1f}s = {1e6 * r['cpu'] / r['events']:.0f} us/event; "
                  f"{r['batches']} batches; file {r['mib']:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
