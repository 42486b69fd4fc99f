"""Adjacency chunk items vs one Query per frontier node, on moto (ADR 0012).

    python -m bench.dynamo_adjacency [--nodes 2000] [--edges-per-node 5] [--supernodes 3]
                                     [--supernode-degree 5000] [--starts 6] [--repeats 2]

Starts moto's server on 127.0.0.1 (scripts/moto_server.py, dummy credentials, tables with a
fresh prefix), builds a graph through ``DynamoProjectionStore.apply`` (``--nodes`` users
each following ``--edges-per-node`` others, 80% picked in proportion to their followers:
a power law; ``--supernodes`` hubs, each followed by ``--supernode-degree`` fans and
following 50 popular users), then runs 3-hop IN frontier expansions (followers of
followers of followers) from ``--starts`` start nodes (half the most followed users, half
random), both ways, in one run:

(a) chunks: one ``DynamoReadModel.neighbour_ids`` per level — BatchGetItem of the list
    heads, ⌈lists / 100⌉ calls, and the sealed chunks of lists read past their head;
(b) query: one ``Query`` per frontier node on a per-edge layout (the write model's in-edge
    mirror items, ``keys.in_edge_key``: one item per edge under the node's partition),
    ``--parallelism`` (16) at a time.

Both read the same lists: the frontiers of each hop are computed once per start (an
untimed BFS over (a)), then each strategy reads them, timed, in alternating order. Two
scenarios: ``fanout-100`` (100 ids of each list, Traverse's default per-node fan-out: (a)
the newest, (b) the first by sort key) and ``whole`` (whole lists, as FindPath reads them;
both must return the same neighbours). Printed per strategy: storage calls, the capacity moto
reports (BatchGetItem: 1 per key; Query: 1 per call — moto does not price by size),
read capacity units estimated by DynamoDB's rules from the items' sizes (eventually
consistent: 0.5 RCU per 4 KB, per item for BatchGetItem, per Query response otherwise),
and wall time (median expansion, total). moto on loopback is not DynamoDB: calls and RCU
carry over, wall times only in proportion. Not part of make test.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GRAPH = "bench"
EDGE_TYPE = "follows"


@dataclass
class Tally:
    calls: dict[str, int] = field(default_factory=dict)
    moto_units: float = 0.0
    rcu: float = 0.0
    walls: list[float] = field(default_factory=list)
    reached: list[int] = field(default_factory=list)


def build_events(nodes: int, edges_per_node: int, supernodes: int, degree: int, seed: int) -> list[Any]:
    from domain.events import EdgeAdded, NodeCreated, SchemaApplied
    from domain.schema import EdgeType, NodeType, Schema, schema_to_dict

    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(seed)
    counter = iter(range(1, 1 << 62))

    def common(aggregate: str) -> dict[str, Any]:
        k = next(counter)
        return dict(event_id=f"e{k}", graph=GRAPH, aggregate_id=aggregate, aggregate_version=1,
                    occurred_at=t0 + timedelta(microseconds=1000 * k))

    def edge(source: str, target: str) -> EdgeAdded:
        c = common(f"{source}/{EDGE_TYPE}/{target}")
        return EdgeAdded(**c, source=source, edge_type=EDGE_TYPE, target=target, properties={},
                         create_time=c["occurred_at"])

    schema = Schema(graph=GRAPH, version=1, node_types={"user": NodeType("user")},
                    edge_types={EDGE_TYPE: EdgeType(EDGE_TYPE, "user", "user")}, update_time=t0)
    events: list[Any] = [SchemaApplied(**common("schema"), schema=schema_to_dict(schema))]
    followed: list[int] = []  # one entry per follower: sampling it is preferential attachment
    for i in range(nodes):
        events.append(NodeCreated(**common(f"u{i}"), node_type="user", properties={}))
        targets: set[int] = set()
        while i > edges_per_node and len(targets) < edges_per_node:
            targets.add(followed[rng.randrange(len(followed))] if rng.random() < 0.8 else rng.randrange(i))
        for t in sorted(targets):
            events.append(edge(f"u{i}", f"u{t}"))
            followed.append(t)
        followed.append(i)
    popular = sorted(range(nodes), key=lambda n: -followed.count(n))[:50]
    fans = [f"f{i}" for i in range(degree)] if supernodes else []
    events += [NodeCreated(**common(f), node_type="user", properties={}) for f in fans]
    for h in range(supernodes):
        events.append(NodeCreated(**common(f"h{h}"), node_type="user", properties={}))
        events += [edge(f"h{h}", f"u{p}") for p in popular]
        events += [edge(f, f"h{h}") for f in fans]
    return events


async def build(client: Any, events: list[Any]) -> None:
    from domain.ports import LoggedEvent
    from infrastructure.persistence.dynamodb import keys
    from infrastructure.persistence.dynamodb.projection import DynamoProjectionStore
    from query_service.projection.apply import apply_events

    store = DynamoProjectionStore(client)
    shard = keys.shard_id(GRAPH, 0)
    logged = [LoggedEvent(position=i + 1, event=e, shard=shard) for i, e in enumerate(events)]
    started = time.perf_counter()
    for lo in range(0, len(logged), 2000):  # the projector's batch size
        await store.apply("bench", shard, logged[lo:lo + 2000], apply_events)
    elapsed = time.perf_counter() - started
    print(f"projected {len(events):,} events in {elapsed:.1f} s ({len(events) / elapsed:,.0f} events/s on moto)")
    # the per-edge layout (b) reads: one in-edge item per edge under the target's partition
    mirrors = [{**keys.in_edge_key(GRAPH, e.target, e.edge_type, e.source),
                "ct": {"N": str(int(e.create_time.timestamp() * 1e6))}}
               for e in events if hasattr(e, "target")]
    started = time.perf_counter()
    await client.batch_write(client.tables.write, puts=mirrors)
    print(f"wrote {len(mirrors):,} per-edge items for (b) in {time.perf_counter() - started:.1f} s")


async def item_sizes(client: Any, nodes: list[str]) -> dict[tuple[str, str], int]:
    """The full size of every item an expansion can read (the IN heads and their chunks),
    read once, untimed: BatchGetItem charges by the whole item whatever it projects."""
    from domain.edge import Direction
    from infrastructure.persistence.dynamodb import keys
    from infrastructure.persistence.dynamodb.attributes import key_tuple
    from infrastructure.persistence.dynamodb.read_items import SEALED_CHUNKS, item_size, optional_int

    heads = await client.batch_get(client.tables.read,
                                   [keys.adjacency_head_key(GRAPH, n, Direction.IN, EDGE_TYPE) for n in nodes])
    chunks = []
    for head in heads:
        node = head["pk"]["S"].split("#")[2]
        chunks += [keys.adjacency_chunk_key(GRAPH, node, Direction.IN, EDGE_TYPE, c)
                   for c in range(1, optional_int(head, SEALED_CHUNKS) + 1)]
    items = heads + await client.batch_get(client.tables.read, chunks)
    return {key_tuple(item): item_size(item) for item in items}


def meter_rcu(client: Any, sizes: dict[tuple[str, str], int], tally: list[float]) -> None:
    """Estimate what DynamoDB would charge each read the bench makes (eventually consistent)."""
    from infrastructure.persistence.dynamodb.attributes import key_tuple
    from infrastructure.persistence.dynamodb.read_items import item_size

    raw = client._client
    real_batch_get, real_query = raw.batch_get_item, raw.query

    async def batch_get_item(**params: Any) -> Any:
        response = await real_batch_get(**params)
        for request in params["RequestItems"].values():
            unprocessed = {key_tuple(k) for r in (response.get("UnprocessedKeys") or {}).values() for k in r["Keys"]}
            for key in request["Keys"]:
                if key_tuple(key) not in unprocessed:  # the full item's size, whatever was projected
                    tally[0] += 0.5 * max(1, math.ceil(sizes.get(key_tuple(key), 0) / 4096))
        return response

    async def query(**params: Any) -> Any:
        response = await real_query(**params)
        total = sum(item_size(item) for item in response.get("Items", []))
        tally[0] += 0.5 * max(1, math.ceil(total / 4096))
        return response

    raw.batch_get_item, raw.query = batch_get_item, query


async def frontiers(rm: Any, start: str, hops: int, limit: int | None, max_nodes: int) -> list[list[str]]:
    """The frontier of each hop of a BFS from ``start`` (at most ``max_nodes`` nodes met),
    reading each list's newest ``limit`` ids: what both strategies then read, timed."""
    from domain.edge import Direction
    from domain.views import AdjacencyKey

    visited, frontier, levels = {start}, [start], []
    for _ in range(hops):
        levels.append(frontier)
        keys_ = [AdjacencyKey(n, Direction.IN, EDGE_TYPE) for n in frontier]
        lists = await rm.neighbour_ids(GRAPH, keys_, limit)
        frontier = []
        for key in keys_:
            entry = lists.get(key)
            for nb in entry.ids if entry is not None else ():
                if nb not in visited and len(visited) < max_nodes:
                    visited.add(nb)
                    frontier.append(nb)
        if not frontier:
            break
    return levels


async def read_chunks(rm: Any, levels: list[list[str]], limit: int | None) -> dict[str, list[str]]:
    """(a) one neighbour_ids per hop: BatchGetItem of the frontier's heads (and chunks)."""
    from domain.edge import Direction
    from domain.views import AdjacencyKey

    out: dict[str, list[str]] = {}
    for frontier in levels:
        lists = await rm.neighbour_ids(GRAPH, [AdjacencyKey(n, Direction.IN, EDGE_TYPE) for n in frontier], limit)
        out.update({key.node: entry.ids for key, entry in lists.items()})
    return out


async def read_query(client: Any, levels: list[list[str]], limit: int | None, parallelism: int) -> dict[str, list[str]]:
    """(b) one Query per frontier node on the per-edge layout, ``parallelism`` at a time."""
    from domain.edge import Direction
    from infrastructure.persistence.dynamodb import keys
    from infrastructure.persistence.dynamodb.attributes import get_str

    semaphore = asyncio.Semaphore(parallelism)
    prefix = keys.edges_prefix(Direction.IN, EDGE_TYPE)

    async def neighbours(node: str) -> tuple[str, list[str]]:
        async with semaphore:
            items = await client.query_all(client.tables.write, key_condition="#pk = :pk AND begins_with(#sk, :p)",
                                           names={"#pk": "pk", "#sk": "sk"},
                                           values={":pk": {"S": keys.node_partition(GRAPH, node)}, ":p": {"S": prefix}},
                                           max_items=limit, page_size=limit)
        return node, [keys.parse_edge_sk(get_str(item, "sk"))[2] for item in items]

    out: dict[str, list[str]] = {}
    for frontier in levels:
        out.update({node: ids for node, ids in await asyncio.gather(*[neighbours(n) for n in frontier]) if ids})
    return out


async def measure(run: Callable[[], Awaitable[dict[str, list[str]]]], tally: Tally, rcu: list[float],
                  lists: int) -> dict[str, list[str]]:
    from infrastructure.persistence.dynamodb.capacity import capacity_scope

    before = rcu[0]
    with capacity_scope() as usage:
        started = time.perf_counter()
        got = await run()
        tally.walls.append(time.perf_counter() - started)
    for name, op in usage.operations.items():
        tally.calls[name] = tally.calls.get(name, 0) + op.calls
    tally.moto_units += usage.capacity_units
    tally.rcu += rcu[0] - before
    tally.reached.append(lists)
    return got


async def main(args: argparse.Namespace) -> int:
    from infrastructure.persistence.dynamodb.admin import create_tables, delete_tables
    from infrastructure.persistence.dynamodb.read_model import DynamoReadModel
    from scripts.moto_server import MotoServer
    from tests.dynamodb_support import open_test_client, unique_prefix

    events = build_events(args.nodes, args.edges_per_node, args.supernodes, args.supernode_degree, args.seed)
    followers: dict[str, int] = {}
    for e in events:
        if hasattr(e, "target"):
            followers[e.target] = followers.get(e.target, 0) + 1
    with MotoServer() as server:
        client = await open_test_client(server.settings(prefix=unique_prefix()))
        try:
            await create_tables(client)
            await build(client, events)
            names = sorted({e.aggregate_id for e in events if type(e).__name__ == "NodeCreated"})
            sizes = await item_sizes(client, names)
            rcu = [0.0]
            meter_rcu(client, sizes, rcu)
            rm = DynamoReadModel(client)
            rng = random.Random(args.seed)
            users = [f"u{i}" for i in range(args.nodes)]
            top = sorted(users, key=lambda u: -followers.get(u, 0))[:args.starts - args.starts // 2]
            starts = top + rng.sample([u for u in users if u not in top], args.starts // 2)
            print(f"graph: {args.nodes:,} users + {args.supernodes} supernodes of {args.supernode_degree:,} fans; "
                  f"{sum(followers.values()):,} edges; max in-degree {max(followers.values()):,}")
            print(f"{len(starts)} starts x {args.repeats} repeats, 3 hops IN, max 10,000 nodes, "
                  f"query parallelism {args.parallelism}\n")
            header = (f"{'scenario':<11} {'strategy':<7} {'BatchGetItem':>12} {'Query':>7} {'moto CU':>9} "
                      f"{'est. RCU':>9} {'p50 ms':>8} {'total s':>8} {'lists read':>10}")
            print(header)
            print("-" * len(header))
            for scenario, limit in (("fanout-100", 100), ("whole", None)):
                tallies = {"chunks": Tally(), "query": Tally()}
                plans = {start: await frontiers(rm, start, 3, limit, 10_000) for start in starts}  # untimed
                for repeat in range(args.repeats):
                    for start, levels in plans.items():
                        lists = sum(len(level) for level in levels)
                        order = ("chunks", "query") if repeat % 2 == 0 else ("query", "chunks")
                        got: dict[str, dict[str, list[str]]] = {}
                        for strategy in order:
                            if strategy == "chunks":
                                got[strategy] = await measure(lambda: read_chunks(rm, levels, limit),
                                                              tallies[strategy], rcu, lists)
                            else:
                                got[strategy] = await measure(lambda: read_query(client, levels, limit,
                                                                                 args.parallelism),
                                                              tallies[strategy], rcu, lists)
                        same = ({n: sorted(ids) for n, ids in got["chunks"].items()} ==
                                {n: sorted(ids) for n, ids in got["query"].items()})
                        if limit is None and not same:
                            print(f"MISMATCH from {start}: the strategies read different lists")
                            return 1
                for strategy, t in tallies.items():
                    runs = len(t.walls)
                    print(f"{scenario:<11} {strategy:<7} {t.calls.get('BatchGetItem', 0) / runs:>12.1f} "
                          f"{t.calls.get('Query', 0) / runs:>7.1f} {t.moto_units / runs:>9.1f} {t.rcu / runs:>9.1f} "
                          f"{statistics.median(t.walls) * 1000:>8.1f} {sum(t.walls):>8.2f} "
                          f"{statistics.mean(t.reached):>10.0f}")
            print("\n(per expansion, means: calls, moto's capacity, estimated RCU, frontier lists read; "
                  "p50: the median expansion's wall time; total: all expansions)")
            await delete_tables(client)
        finally:
            await client.close()
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dynamo_adjacency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--edges-per-node", type=int, default=5)
    parser.add_argument("--supernodes", type=int, default=3)
    parser.add_argument("--supernode-degree", type=int, default=5000)
    parser.add_argument("--starts", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
