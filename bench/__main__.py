"""``python -m bench`` (``make bench``): Edgewise benchmarks, measured side by side in one run.

1. traverse: batched vs naive Traverse through the query application (in process).
2. e2e:      GetNode / ListEdges / Traverse against an empty RPC (Health/Check), both
             services running as real processes.
3. writes:   CreateNode / AddEdge latency and projection lag (same processes as 2).

BENCH_SCALE (a positive number, default 1) multiplies the sample counts and the
per-case time budget; the flags below change graph sizes. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bench import e2e, traversal

WORKLOADS = ("traverse", "e2e")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _scale() -> float:
    raw = os.environ.get("BENCH_SCALE", "1").strip() or "1"
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"BENCH_SCALE must be a positive number, got {raw!r}") from None
    if not 0 < value <= 100:
        raise SystemExit(f"BENCH_SCALE must be in (0, 100], got {raw!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=WORKLOADS, action="append",
                   help="run only this workload (repeatable); 'e2e' covers workloads 2 and 3")
    p.add_argument("--nodes", type=int, default=2000, help="traverse: nodes in the graph (default 2000)")
    p.add_argument("--fanouts", type=_ints, default=(5, 20, 50), help="traverse: fan-outs (default 5,20,50)")
    p.add_argument("--depths", type=_ints, default=(2, 3), help="traverse: depths (default 2,3)")
    p.add_argument("--e2e-nodes", type=int, default=500, help="e2e: nodes in the served graph (default 500)")
    p.add_argument("--e2e-fanout", type=int, default=10, help="e2e: 'follows' out-edges per node (default 10)")
    p.add_argument("--poll-ms", type=int, default=None,
                   help="e2e: EDGEWISE_PROJECTOR_POLL_INTERVAL_MS for the query service (default: its own, 50)")
    p.add_argument("--write-gap-ms", type=float, default=60.0,
                   help="writes: random pause of 0..N ms before each write (default 60), see docs/benchmarks.md")
    p.add_argument("--seed", type=int, default=20240101)
    args = p.parse_args(argv)
    if args.nodes < 2 or args.e2e_nodes < 2 or args.e2e_fanout < 1:
        p.error("--nodes and --e2e-nodes must be at least 2, --e2e-fanout at least 1")
    if args.write_gap_ms < 0 or (args.poll_ms is not None and args.poll_ms <= 0):
        p.error("--write-gap-ms must not be negative, --poll-ms must be positive")
    if max(args.depths) > 10:
        p.error("--depths: Traverse allows at most 10")
    if max(args.fanouts) >= args.nodes or args.e2e_fanout >= args.e2e_nodes:
        p.error("a fan-out must be smaller than the number of nodes")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = _scale()
    only = set(args.only or WORKLOADS)
    started = time.perf_counter()
    print(f"Edgewise benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}, BENCH_SCALE={scale:g}")
    sections: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="edgewise-bench-") as tmp:
        work = Path(tmp)
        if "traverse" in only:
            cfg = traversal.TraversalConfig(
                nodes=args.nodes, fanouts=args.fanouts, depths=args.depths, seed=args.seed,
                reps=max(1, round(30 * scale)), min_reps=max(1, round(5 * scale)), case_budget_s=2.0 * scale)
            print(f"\n[1] traverse: batched vs naive through the query application ({cfg.nodes} nodes)")
            try:
                results, setup = traversal.run(cfg, _mk(work / "traverse"))
            except traversal.BenchmarkMismatch as exc:
                print(f"\nABORT: the batched and naive engines disagree: {exc}", file=sys.stderr)
                return 3
            sections.append((f"[1] Traverse, batched vs naive, in process ({setup['nodes']} nodes, "
                             f"{setup['edges']} edges; times in ms; n = timed pairs)", traversal.report(results)))
            sections.append(("[1] setup", f"{setup['events']} events projected by the real projector in "
                             f"{setup['projection_s']:.1f}s "
                             f"({setup['events'] / setup['projection_s']:.0f} events/s)"))
        if "e2e" in only:
            cfg2 = e2e.E2EConfig(nodes=args.e2e_nodes, fanout=args.e2e_fanout, poll_interval_ms=args.poll_ms,
                                 read_iterations=max(10, round(300 * scale)), writes=max(5, round(100 * scale)),
                                 write_gap_ms=args.write_gap_ms, seed=args.seed)
            print(f"\n[2+3] end to end: both services as processes ({cfg2.nodes} nodes, fan-out {cfg2.fanout})")
            result = e2e.run(cfg2, _mk(work / "e2e"))
            reads, writes = e2e.report(result)
            poll = f"{cfg2.poll_interval_ms} ms" if cfg2.poll_interval_ms is not None else "service default"
            sections.append(("[2] reads against an empty RPC on the same channel (ms)", reads))
            sections.append((f"[3] writes and projection lag (ms; projector poll interval: {poll})", writes))
            if any(code != 0 for code in result.exit_codes.values()):
                sections.append(("warning", f"services did not exit cleanly on SIGTERM: {result.exit_codes}"))
    print()
    for title, body in sections:
        print(f"{title}\n{body}\n")
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
