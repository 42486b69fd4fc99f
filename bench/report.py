"""docs/benchmarks.md, regenerated from one run: results, targets, method."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bench import sidebyside as sb
from bench.sidebyside import SideResult
from bench.stats import median, p99


@dataclass
class Target:
    name: str
    rule: str
    value: float | None  # the measured ratio / rate; None = not measured
    shown: str
    met: bool | None
    why: str = ""


def _ms(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    v = seconds * 1000
    return f"{v:.2f}" if v < 10 else (f"{v:.1f}" if v < 100 else f"{v:,.0f}")


def _x(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0 or math.isnan(a) or math.isnan(b):
        return "-"
    r = a / b
    return f"{r:.2f}x" if r < 10 else f"{r:,.0f}x"


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _mib(b: int) -> str:
    return f"{b / 2**20:,.1f} MiB"


def _p50(res_map, key) -> float | None:
    s = res_map.get(key)
    return median(s.latencies) if s and s.latencies else None


def _p99(res_map, key) -> float | None:
    s = res_map.get(key)
    return p99(s.latencies) if s and s.latencies else None


def paired_naive_ratio(res: SideResult) -> tuple[float | None, int]:
    """Naive p50 over batched (NAMES) p50 on the same samples (the naive engine only runs on some)."""
    naive = res.traverse.get(sb.EW_NAIVE)
    names = res.traverse.get(sb.EW_NAMES)
    if not naive or not naive.latencies or not names:
        return None, 0
    wanted = set(naive.index)
    batched = [lat for lat, k in zip(names.latencies, names.index) if k in wanted]
    if not batched:
        return None, 0
    return median(naive.latencies) / median(batched), len(naive.latencies)


def targets(res: SideResult) -> list[Target]:
    t = res.traverse
    out: list[Target] = []
    no_pg = "no PostgreSQL in this run" if res.pg_skipped else "-"

    def ratio_target(name: str, rule: str, a: float | None, b: float | None, limit: float, at_most: bool,
                     why: str = "") -> None:
        if a is None or b is None or b <= 0:
            out.append(Target(name, rule, None, no_pg, None))
            return
        r = a / b
        met = r <= limit if at_most else r >= limit
        out.append(Target(name, rule, r, f"{r:.2f}x" if r < 10 else f"{r:,.1f}x", met, why))

    ratio_target("3-hop NAMES p50 vs PG levels p50", "<= 2x", _p50(t, sb.EW_NAMES), _p50(t, sb.PG_LEVELS), 2, True)
    ratio_target("3-hop NAMES p99 vs PG levels p99", "<= 3x", _p99(t, sb.EW_NAMES), _p99(t, sb.PG_LEVELS), 3, True)
    ratio_target("3-hop FULL p50 vs PG levels p50", "<= 4x", _p50(t, sb.EW_FULL), _p50(t, sb.PG_LEVELS), 4, True)
    cte = t.get(sb.PG_CTE)
    why = (f"{cte.censored} of {len(cte.latencies)} CTE runs hit the timeout (counted at the timeout)"
           if cte and cte.censored else "")
    ratio_target("recursive CTE p50 / 3-hop NAMES p50", ">= 20x", _p50(t, sb.PG_CTE), _p50(t, sb.EW_NAMES), 20,
                 False, why)
    naive, n = paired_naive_ratio(res)
    if naive is None:
        out.append(Target("naive / batched p50 (same starts)", ">= 20x", None, "not measured", None))
    else:
        out.append(Target("naive / batched p50 (same starts)", ">= 20x", naive,
                          f"{naive:.1f}x", naive >= 20, f"{n} naive samples"))
    ratio_target("FindPath p50 vs PG bidirectional p50", "<= 2x", _p50(res.findpath, sb.EW_PATH),
                 _p50(res.findpath, sb.PG_BIDI), 2, True)
    summ = sb.summary(res)
    ew_rate = summ.get("ew_edges_per_s")
    if ew_rate is None:
        out.append(Target("ingest edges/s (BatchWrite)", ">= 10,000/s", None, "not measured", None))
    else:
        out.append(Target("ingest edges/s (BatchWrite)", ">= 10,000/s", ew_rate, f"{ew_rate:,.0f}/s",
                          ew_rate >= 10_000))
    ratio_target("ingest vs PG durable batched INSERT", ">= 1/3 (0.33x)", ew_rate, summ.get("pg_edges_per_s"),
                 1 / 3, False)
    ratio_target("GetNode p50 vs empty RPC p50", "<= 1.3x", _p50(res.reads, "GetNode"), _p50(res.reads, sb.FLOOR),
                 1.3, True)
    if res.cache_hit_ratio is None:
        out.append(Target("cache hit ratio (W4)", ">= 90 %", None, "not exposed by the query service yet", None))
    else:
        out.append(Target("cache hit ratio (W4)", ">= 90 %", res.cache_hit_ratio, f"{100 * res.cache_hit_ratio:.1f} %",
                          res.cache_hit_ratio >= 0.9))
    return out


def _paired_p50(s, naive) -> float | None:
    """p50 of ``s`` on the samples the naive engine also ran (the naive engine runs on a subset)."""
    if not naive or not naive.index:
        return None
    wanted = set(naive.index)
    xs = [lat for lat, k in zip(s.latencies, s.index) if k in wanted]
    return median(xs) if xs else None


def _latency_table(samples: dict, base: str | None, floor, extra_cols: bool, naive=None) -> list[str]:
    """``floor``: the key of the empty RPC in ``samples``, or its Samples from another workload."""
    floor_s = samples.get(floor) if isinstance(floor, str) else floor
    floor_p50 = median(floor_s.latencies) if floor_s and floor_s.latencies else None
    floor_p99 = p99(floor_s.latencies) if floor_s and floor_s.latencies else None
    head = f"| system | n | p50 ms | p99 ms | p50 / {base} | p99 / {base} | p50 / empty RPC |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    if base is None:
        head = "| system | n | p50 ms | p99 ms | p50 / empty RPC | p99 / empty RPC |"
        sep = "|---|---:|---:|---:|---:|---:|"
    if naive is not None:
        head += " naive p50 / this p50 (same starts) |"
        sep += "---:|"
    if extra_cols:
        head += " mean nodes reached | truncated | timed out |"
        sep += "---:|---:|---:|"
    rows = [head, sep]
    for name, s in samples.items():
        p50_, p99_ = median(s.latencies), p99(s.latencies)
        row = f"| {name} | {len(s.latencies)} | {_ms(p50_)} | {_ms(p99_)} |"
        if base is not None:
            row += f" {_x(p50_, _p50(samples, base))} | {_x(p99_, _p99(samples, base))} |"
            row += f" {_x(p50_, floor_p50)} |"
        else:
            row += f" {_x(p50_, floor_p50)} | {_x(p99_, floor_p99)} |"
        if naive is not None:
            row += f" {_x(median(naive.latencies) if naive.latencies else None, _paired_p50(s, naive))} |"
        if extra_cols:
            reached = f"{statistics.mean(s.reached):,.0f}" if s.reached else "-"
            row += f" {reached} | {s.truncated} | {s.censored} |"
        rows.append(row)
    return rows


NOTES_BEGIN = "<!-- notes:begin (hand-written; make bench keeps this block: update it when you regenerate) -->"
NOTES_END = "<!-- notes:end -->"


def existing_notes(text: str) -> str:
    """The hand-written notes block of a previous report, markers excluded ('' if none)."""
    begin = text.find("<!-- notes:begin")
    end = text.find(NOTES_END)
    if begin < 0 or end < begin:
        return ""
    return text[text.index("-->", begin) + 3:end].strip("\n")


def render(res: SideResult, meta: dict, legacy: list[tuple[str, str]], plots: list[str], notes: str = "") -> str:
    cfg = res.config
    g = res.graph
    L: list[str] = []
    add = L.append
    add("# Benchmarks")
    add("")
    add("<!-- Generated by `make bench` (bench/report.py); edit the generator, not this file. -->")
    add("")
    add("`make bench` (`python -m bench`, **not** part of `make test`) compares Edgewise with PostgreSQL 15 "
        "on the same power-law graph, the same start nodes and the same machine, in one session, the systems "
        "interleaved in blocks (issue 5). As DESIGN §10 asks, the numbers that matter are the **ratios** "
        "measured side by side in one run; absolute times only hold for this machine.")
    add("")
    add("## How to run")
    add("")
    add("```sh")
    add("make bench                                            # 10,000 users, ~100,000 follows edges")
    add('make bench BENCH_ARGS="--graph-nodes 100000"          # the report run: ~1,000,000 edges')
    add("BENCH_SCALE=2 make bench                              # 2x the passes and point-read samples")
    add('make bench BENCH_ARGS="--only pg --graph-nodes 2000"  # only the side-by-side, small (a minute)')
    add('make bench BENCH_ARGS="--no-pg"                       # Edgewise only')
    add("make bench BENCH_ARGS=--help                          # every flag")
    add("```")
    add("")
    add("It needs `initdb` and `pg_ctl` (PostgreSQL 15 server binaries) on PATH; without them the PostgreSQL "
        "workloads are skipped with a message and their targets read *not measured*. It binds only to "
        "127.0.0.1, works in temporary directories (the PostgreSQL cluster is stopped and deleted at the end, "
        "also on error), writes this file and the plots in `docs/bench/` (a run with `--only` writes them only "
        "with `--report`), and exits non-zero on any failure -- including answers that disagree between systems "
        "(exit code 4; the report is still written, with the mismatches).")
    add("")
    add("## Last run")
    add("")
    add(f"- **Date:** {meta['date']}")
    add(f"- **Machine:** {meta['machine']}")
    add(f"- **Software:** {meta['software']}")
    add(f"- **Commit:** `{meta['commit']}`")
    add(f"- **Command:** `{meta['command']}` (took {meta['duration']})")
    add(f"- **Load:** {meta['load']}")
    add(f"- **Graph:** {g['nodes']:,} `user` nodes, {g['edges']:,} `follows` edges (seed {cfg.seed}); in-degree: "
        f"max {g['max_in']:,}, top 10 {', '.join(f'{d:,}' for d in g['top10_in'])}, median {g['median_in']}. "
        f"{cfg.starts} Zipf(1.0) start nodes ({g['distinct_starts']} distinct) x {cfg.passes} passes.")
    if res.pg_skipped:
        add(f"- **PostgreSQL:** skipped -- {res.pg_skipped}")
    else:
        add(f"- **PostgreSQL:** {res.pg_version}, started by the harness: " +
            ", ".join(f"{k}={v}" for k, v in sorted(res.pg_ingest.get("settings", {}).items())) +
            ", shared_buffers=256MB; client psycopg 3 over TCP on 127.0.0.1, prepared statements.")
    add("")
    if res.mismatches:
        add(f"**ANSWER MISMATCHES: {len(res.mismatches)}** (the run exited non-zero):")
        add("")
        for m in res.mismatches[:30]:
            add(f"- {m}")
        if len(res.mismatches) > 30:
            add(f"- ... and {len(res.mismatches) - 30} more")
        add("")
    else:
        add(f"**Answers checked:** {res.checked.get('W1', 0)} traversal comparisons and "
            f"{res.checked.get('W2', 0)} path comparisons, no mismatch.")
        add("")

    add("### Notes on this run")
    add("")
    add(NOTES_BEGIN)
    add(notes or "(none yet)")
    add(NOTES_END)
    add("")
    add("### Targets")
    add("")
    add("| target | rule | measured | verdict | note |")
    add("|---|---|---:|---|---|")
    for t in targets(res):
        verdict = "not measured" if t.met is None else ("**met**" if t.met else "**missed**")
        add(f"| {t.name} | {t.rule} | {t.shown} | {verdict} | {t.why} |")
    add("")

    # ingest
    add("### Ingest")
    add("")
    ew, pgi = res.ew_ingest, res.pg_ingest
    if ew:
        add("| system | nodes/s | edges/s | p50 per call | p99 per call | size on disk | projection catch-up |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        add(f"| Edgewise `BatchWrite` (100 ops/call, {cfg.ingest_callers} callers) | "
            f"{_rate(ew['nodes'] / ew['nodes_s'])} | {_rate(ew['edges'] / ew['edges_s'])} | "
            f"{_ms(median(ew['latencies']))} ms | {_ms(p99(ew['latencies']))} ms | "
            f"{_mib(ew['db_bytes'])} file + {_mib(ew['wal_bytes'])} WAL | {ew['catchup_s']:.1f} s |")
        if pgi:
            add(f"| PostgreSQL durable `INSERT` (100 rows/tx, {cfg.ingest_callers} connections) | "
                f"{_rate(pgi['nodes'] / pgi['nodes_s'])} | {_rate(pgi['edges'] / pgi['edges_s'])} | "
                f"{_ms(median(pgi['latencies']))} ms | {_ms(p99(pgi['latencies']))} ms | "
                f"{_mib(pgi['bytes'])} tables + indexes (edges {_mib(pgi['edge_bytes'])}) | - |")
        if res.pg_copy:
            add(f"| PostgreSQL `COPY` (read tables; context only) | - | "
                f"{_rate(g['edges'] / res.pg_copy['copy_s'])} | - | - | {_mib(res.pg_copy['bytes'])} | "
                f"+ {res.pg_copy['index_s']:.1f} s reverse index |")
        add("")
        add("Edgewise's size is the whole SQLite file: write model, event log, idempotency records and the read "
            "model. Catch-up is the time from the last BatchWrite response until a `GetNode` carrying its "
            "consistency token (`at_least_token`) is served; the projector runs during the ingest too.")
        add("")

    add("### W1: 3-hop IN traversal, at most 1,000 nodes")
    add("")
    add(f"\"Followers of followers of followers\": Traverse, one step `follows` IN with `repeat`, budget max_depth "
        f"{cfg.depth}, max_nodes {cfg.max_nodes + 1}, per_node_fanout {cfg.fanout}. Naive: a second query-service "
        f"process on the same file with `EDGEWISE_TRAVERSE_ENGINE=naive`, NAMES, at most {cfg.naive_cap} samples "
        f"(the first few of each block, so spread over the run), deadline {cfg.naive_deadline_s:g} s. PG recursive CTE: statement_timeout "
        f"{cfg.cte_timeout_ms} ms, a timed-out run counts at the timeout. `truncated`: a budget cut the answer "
        "(Edgewise: max_nodes or per_node_fanout; PG: the 1,000-node cap or the LIMIT).")
    add("")
    L.extend(_latency_table(res.traverse, sb.PG_LEVELS if sb.PG_LEVELS in res.traverse else None, sb.FLOOR, True,
                            naive=res.traverse.get(sb.EW_NAIVE)))
    naive, n = paired_naive_ratio(res)
    if naive is not None:
        add("")
        add(f"Naive / batched on the same {n} samples: **{naive:.1f}x** at p50.")
    add("")
    add("### W2: FindPath, max depth 6")
    add("")
    add("Zipf(1.0) pairs of distinct users, the newer one as source, `follows` OUT (towards older users). "
        "PostgreSQL: the same bidirectional BFS in the client, one `= ANY($1)` query per level, always "
        "expanding the smaller frontier.")
    add("")
    L.extend(_latency_table(res.findpath, sb.PG_BIDI if sb.PG_BIDI in res.findpath else None, sb.FLOOR, False))
    add("")
    n_pairs = len(res.findpath[sb.EW_PATH].latencies) if sb.EW_PATH in res.findpath else 0
    add(f"Paths found (of {n_pairs} pairs): " + ", ".join(f"{k} {v}" for k, v in res.path_found.items()) + ".")
    add("")
    add("### W3: GetNode against the empty RPC")
    add("")
    add("Uniformly random users, 1 client, the calls interleaved round robin; the empty RPC is "
        "`grpc.health.v1.Health/Check` on the same channel (same stub, HTTP/2 connection, server, interceptors "
        "and event loop, no work).")
    add("")
    L.extend(_latency_table(res.reads, None, sb.FLOOR, False))
    add("")
    if res.concurrent:
        add(f"{cfg.concurrency} concurrent callers (one asyncio client process, one channel; two alternating "
            f"rounds of {cfg.concurrent_calls:,} calls per call type; the client shares the 2 cores with the "
            "server, so this is a lower bound of the server's capacity):")
        add("")
        add("| call | requests/s | p50 ms | p99 ms |")
        add("|---|---:|---:|---:|")
        for name, v in res.concurrent.items():
            add(f"| {name} | {v['rps']:,.0f} | {_ms(median(v['latencies']))} | {_ms(p99(v['latencies']))} |")
        add("")
    add("### W4: Zipf(1.0) GetNode / ListEdges mix")
    add("")
    add(f"{res.mix_warmup:,} warm-up calls of the same mix ({cfg.mix_warmup_callers} concurrent callers; six per "
        f"user, three per kind: Zipf(1.0) has a long tail), then {cfg.mix_calls:,} timed: half `GetNode`, half `ListEdges` (IN, page "
        "50) of a Zipf-chosen user. The empty-RPC ratios use W3's empty RPC.")
    add("")
    L.extend(_latency_table(res.mix, None, res.reads.get(sb.FLOOR), False))
    add("")
    if res.cache_hit_ratio is None:
        add("Cache hit ratio: **not exposed** -- the query service serves no `edgewise_read_cache_*` counters "
            "(the hook is `bench/sidebyside.py: cache_counters()`).")
    else:
        by_kind = ", ".join(f"{k} {h:,.0f}/{h + m:,.0f}" for k, (h, m) in sorted(res.cache_by_kind.items()))
        add(f"Cache hit ratio: **{100 * res.cache_hit_ratio:.1f} %** over the timed calls, from the query "
            f"service's `/metrics` (hits/lookups by kind: {by_kind}).")
    add("")
    if plots:
        add("### Plots")
        add("")
        for p in plots:
            add(f"![{p}](bench/{p})")
        add("")
    for title, body in legacy:
        add(f"### {title}")
        add("")
        add("```text")
        add(body)
        add("```")
        add("")
    add(METHOD)
    return "\n".join(L) + "\n"


METHOD = """## Method

- **Graph.** `bench/graphgen.py`: nodes `u0`..`u{N-1}`; every node i >= 10 follows 10 distinct older
  nodes, each chosen with probability proportional to (in-degree + 1) -- preferential attachment. Out-degree
  is exactly 10, in-degree is heavy-tailed (the oldest users are hubs), the graph is a DAG. Seeded.
- **Start nodes.** Zipf(1.0) over the node index (rank r = node r-1, so popular starts are the early, heavy
  nodes: hubs with thousands of followers are drawn often). The same list for every system; with
  `--passes 2` every start is measured twice.
- **Interleaving.** The samples are cut into blocks of 10; in each block every system runs the block's
  samples, the systems' order rotating from block to block, so slow drift on the shared machine hits every
  system alike. One client, closed loop; one untimed warm-up round per system.
- **Edgewise.** Both services run as processes (`bench/stack.py`) on a temporary SQLite file with their
  default settings. Everything is written through the public `BatchWrite` (100 operations per call, 4
  concurrent callers, a fresh `request_id` per call; UNAVAILABLE or DEADLINE_EXCEEDED is retried with the
  same request_id). After the catch-up read, the read workloads use the default (latest projected)
  consistency.
- **PostgreSQL.** `bench/pg.py` runs `initdb` + `pg_ctl` into a temporary directory (as the `postgres`
  account when run as root), listening on 127.0.0.1 on a free port, durable defaults (fsync, synchronous
  commit, full-page writes on). Tables `nodes(id, name, joined)` and
  `edges(source, type, target, PRIMARY KEY (source, type, target))` plus an index on `(target, type, source)`.
  The read tables are loaded with COPY and `VACUUM ANALYZE`d; ingest is measured separately, into twin
  tables, with `executemany` of 100 rows per transaction on 4 connections.
- **PG levels** is the client-side BFS a service would write over PostgreSQL: one
  `SELECT source FROM edges WHERE target = ANY($1) AND type = 'follows'` per level, the visited set in the
  client, stopping when 1,000 nodes are reached. It has no per-node fan-out cap, so on hubs it reads every
  follower of the frontier. **PG recursive CTE** is the textbook one-statement form:
  `WITH RECURSIVE walk(node, depth) ... UNION ...` then `min(depth)` per node, `LIMIT 1002`.
- **Answer checks** (`bench/answers.py`, unit-tested): where neither side was truncated, the nodes reached
  at each depth must be the same sets; where exactly one side was truncated, its nodes must be a subset of
  the complete answer; NAMES, FULL and naive must give exactly the same levels. For FindPath the found flag
  and the path length must agree (skipped when Edgewise reports `truncated`).
- **Statistics.** p50 is the median, p99 the nearest-rank 99th percentile (with 200 samples it is the
  second slowest). Ratios divide medians (or p99s) measured in this same run.

### Older workloads (kept: A, B, C)

- **A. Batched vs naive Traverse in process** (`--only traverse`, `bench/traversal.py`). A random graph of
  `--nodes` nodes (default 2,000) with, for each fan-out F of `--fanouts` (default 5, 20, 50), an edge type
  `fF` along which every node has exactly F random out-neighbours. The events go into a temporary SQLite
  event log and the real projector builds the read model. Two query applications over that file (one per
  engine, each with its own 4-connection reader pool) run the same start node one after the other, the
  order alternating; depth `--depths` (default 2, 3), max_nodes 10,000, per_node_fanout 1,000, so no budget
  cuts the walk. Every pair of answers must be identical, else the run aborts with exit code 3. Round trips
  are the delta of `SqliteReadModel.round_trips`, split per BFS level (L0 = schema + start node; then one
  `adjacency_many` and one `get_nodes` per level for the batched engine). This is the workload that shows
  the round-trip ratio (2 + 2d batched, whatever the fan-out); W1 above shows what it buys end to end.
- **B. Reads against the empty RPC** (`--only e2e`, `bench/e2e.py`): both services as processes, 500
  nodes with 10 random `follows` each and 10 hubs with 60 `links`; GetNode, ListEdges (50) and Traverse
  depth 2 interleaved round robin with Health/Check on the same channel, 300 times each after 20 warm-up
  rounds.
- **C. Single writes and projection lag** (same processes as B): 100 CreateNode and 100 AddEdge calls with
  a fresh request_id each, each after a random 0-60 ms pause (`--write-gap-ms`, so writes land at random
  points of the projector's poll cycle); the lag is the time from the write's response until a read carrying
  its token (`at_least_token`) is served.

### The 10^6-edge run

`make bench BENCH_ARGS="--graph-nodes 100000"`. Its time is dominated by the Edgewise ingest (~10^6 edges
through BatchWrite: at the rate in the table above, edges / rate seconds) plus the projection catch-up; the
PostgreSQL load takes well under a minute and the read workloads a few minutes (the CTE is capped at 5 s a
run and the naive engine at 20 runs of at most 10 s). Run it on a quiet machine.
"""
