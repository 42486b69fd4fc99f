"""``python -m bench`` (``make bench``): Edgewise benchmarks, measured side by side in one run.

pg:       Edgewise vs PostgreSQL 15 on one power-law graph written through the public
          BatchWrite: ingest, 3-hop traversal, FindPath, GetNode, a Zipf read mix
          (bench/sidebyside.py; PostgreSQL is skipped with a message if initdb/pg_ctl
          are not on PATH).
traverse: batched vs naive Traverse through the query application (in process).
e2e:      GetNode / ListEdges / Traverse against an empty RPC (Health/Check), and
          CreateNode / AddEdge latency and projection lag, both services as processes.

A full run (no --only) regenerates docs/benchmarks.md and the plots in docs/bench/.
BENCH_SCALE (a positive number, default 1) multiplies the sample counts and the
per-case time budget; the flags below change graph sizes. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import e2e, sidebyside, traversal

WORKLOADS = ("pg", "traverse", "e2e")
ROOT = Path(__file__).resolve().parents[1]
EXIT_MISMATCH = 4


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
                   help="run only this workload (repeatable); 'e2e' covers the reads and the writes")
    p.add_argument("--graph-nodes", type=int, default=10_000,
                   help="pg: users in the power-law graph, 10 follows each (default 10000; the report run: 100000)")
    p.add_argument("--starts", type=int, default=100, help="pg: Zipf start nodes / pairs (default 100)")
    p.add_argument("--passes", type=int, default=2, help="pg: passes over the starts (default 2, x BENCH_SCALE)")
    p.add_argument("--naive-cap", type=int, default=20, help="pg: at most this many naive traversals (default 20)")
    p.add_argument("--naive-deadline", type=float, default=10.0,
                   help="pg: deadline of a naive traversal in seconds (default 10)")
    p.add_argument("--cte-timeout-ms", type=int, default=5000,
                   help="pg: statement_timeout of the recursive CTE (default 5000)")
    p.add_argument("--no-pg", action="store_true", help="pg: skip PostgreSQL, run the Edgewise side only")
    p.add_argument("--report", type=Path, default=None,
                   help="write the markdown report here (default: docs/benchmarks.md on a full run, none with --only)")
    p.add_argument("--plots", type=Path, default=None,
                   help="write the PNG plots here (default: docs/bench/ next to the report)")
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
    if args.graph_nodes < 100 or args.starts < 1 or args.passes < 1 or args.naive_cap < 0:
        p.error("--graph-nodes must be at least 100, --starts and --passes at least 1, --naive-cap >= 0")
    if args.nodes < 2 or args.e2e_nodes < 2 or args.e2e_fanout < 1:
        p.error("--nodes and --e2e-nodes must be at least 2, --e2e-fanout at least 1")
    if args.write_gap_ms < 0 or (args.poll_ms is not None and args.poll_ms <= 0):
        p.error("--write-gap-ms must not be negative, --poll-ms must be positive")
    if max(args.depths) > 10:
        p.error("--depths: Traverse allows at most 10")
    if max(args.fanouts) >= args.nodes or args.e2e_fanout >= args.e2e_nodes:
        p.error("a fan-out must be smaller than the number of nodes")
    return args


def _terminate(signum, frame):  # SIGTERM: unwind, so the services and PostgreSQL are stopped
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    scale = _scale()
    only = set(args.only or WORKLOADS)
    report_path = args.report if args.report is not None else (None if args.only else ROOT / "docs" / "benchmarks.md")
    plots_dir = args.plots if args.plots is not None else (report_path.parent / "bench" if report_path else None)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"Edgewise benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}, BENCH_SCALE={scale:g}")
    sections: list[tuple[str, str]] = []
    side: sidebyside.SideResult | None = None
    with tempfile.TemporaryDirectory(prefix="edgewise-bench-") as tmp:
        work = Path(tmp)
        if "pg" in only:
            cfg0 = sidebyside.SideConfig(
                graph_nodes=args.graph_nodes, seed=args.seed, starts=args.starts,
                passes=max(1, round(args.passes * scale)), naive_cap=args.naive_cap,
                naive_deadline_s=args.naive_deadline, cte_timeout_ms=args.cte_timeout_ms,
                getnode_iterations=max(10, round(300 * scale)), concurrent_calls=max(100, round(2000 * scale)),
                mix_calls=max(100, round(2000 * scale)), poll_ms=args.poll_ms, with_pg=not args.no_pg)
            print(f"\n[pg] Edgewise vs PostgreSQL on a power-law graph ({cfg0.graph_nodes} users)")
            side = sidebyside.run(cfg0, _mk(work / "pg"))
            side.timings["total"] = time.perf_counter() - started
        if "traverse" in only:
            cfg = traversal.TraversalConfig(
                nodes=args.nodes, fanouts=args.fanouts, depths=args.depths, seed=args.seed,
                reps=max(1, round(30 * scale)), min_reps=max(1, round(5 * scale)), case_budget_s=2.0 * scale)
            print(f"\n[A] traverse: batched vs naive through the query application ({cfg.nodes} nodes)")
            try:
                results, setup = traversal.run(cfg, _mk(work / "traverse"))
            except traversal.BenchmarkMismatch as exc:
                print(f"\nABORT: the batched and naive engines disagree: {exc}", file=sys.stderr)
                return 3
            sections.append((f"A. Traverse, batched vs naive, in process ({setup['nodes']} nodes, "
                             f"{setup['edges']} edges; times in ms; n = timed pairs)", traversal.report(results)
                             + f"\n\nsetup: {setup['events']} events projected by the real projector in "
                             f"{setup['projection_s']:.1f}s ({setup['events'] / setup['projection_s']:.0f} events/s)"))
        if "e2e" in only:
            cfg2 = e2e.E2EConfig(nodes=args.e2e_nodes, fanout=args.e2e_fanout, poll_interval_ms=args.poll_ms,
                                 read_iterations=max(10, round(300 * scale)), writes=max(5, round(100 * scale)),
                                 write_gap_ms=args.write_gap_ms, seed=args.seed)
            print(f"\n[B+C] end to end: both services as processes ({cfg2.nodes} nodes, fan-out {cfg2.fanout})")
            result = e2e.run(cfg2, _mk(work / "e2e"))
            reads, writes = e2e.report(result)
            poll = f"{cfg2.poll_interval_ms} ms" if cfg2.poll_interval_ms is not None else "service default"
            sections.append((f"B. Reads against an empty RPC on the same channel ({cfg2.nodes} nodes; ms)", reads))
            sections.append((f"C. Single writes and projection lag (ms; projector poll interval: {poll})", writes))
            if any(code != 0 for code in result.exit_codes.values()):
                sections.append(("warning", f"services did not exit cleanly on SIGTERM: {result.exit_codes}"))
    elapsed = time.perf_counter() - started
    print()
    if side is not None:
        _print_side(side)
    for title, body in sections:
        print(f"{title}\n{body}\n")
    print(f"total {elapsed:.0f}s")
    if report_path is not None and side is not None:
        from bench import plots, report  # matplotlib only when a report is written
        written = plots.write(side, plots_dir) if plots_dir is not None else []
        rel = [p.relative_to(report_path.parent / "bench").as_posix() if plots_dir == report_path.parent / "bench"
               else str(p) for p in written]
        meta = _meta(argv, scale, elapsed, load_before)
        notes = report.existing_notes(report_path.read_text()) if report_path.exists() else ""
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.render(side, meta, sections, rel, notes))
        print(f"wrote {report_path} and {len(written)} plots in {plots_dir}")
    if side is not None and side.mismatches:
        print(f"FAILED: {len(side.mismatches)} answer mismatches between systems", file=sys.stderr)
        return EXIT_MISMATCH
    if side is not None and any(code != 0 for code in side.exit_codes.values()):
        print(f"warning: services did not exit cleanly on SIGTERM: {side.exit_codes}", file=sys.stderr)
    return 0


def _print_side(side: "sidebyside.SideResult") -> None:
    from bench import report
    print("side-by-side targets:")
    for t in report.targets(side):
        verdict = "not measured" if t.met is None else ("met" if t.met else "MISSED")
        print(f"  {t.name:45s} {t.rule:16s} {t.shown:>16s}  {verdict}  {t.why}")
    for title, samples in (("W1 traverse", side.traverse), ("W2 FindPath", side.findpath),
                           ("W3 GetNode", side.reads), ("W4 mix", side.mix)):
        print(f"{title}:")
        for name, s in samples.items():
            from bench.stats import median, ms, p99
            print(f"  {name:28s} n={len(s.latencies):4d} p50={ms(median(s.latencies)):>8s} ms "
                  f"p99={ms(p99(s.latencies)):>8s} ms truncated={s.truncated} timed_out={s.censored}")
    for m in side.mismatches[:20]:
        print(f"  MISMATCH {m}")
    print()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip("\n")
    except (OSError, subprocess.SubprocessError):
        return ""


def _meta(argv: list[str], scale: float, elapsed: float, load_before: tuple[float, ...]) -> dict:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    # the report and plots themselves do not make the measured code "dirty"
    dirty = [line for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()
             if not line[3:].startswith("docs/")]
    load_after = os.getloadavg()
    env = f"BENCH_SCALE={scale:g} " if scale != 1 else ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {sidebyside.cpu_model()}, {sidebyside.ram_gib():.0f} GiB RAM, "
                   f"{platform.system()} {platform.machine()}",
        "software": f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "command": f"{env}python -m bench {shlex.join(argv)}".strip(),
        "duration": f"{elapsed / 60:.1f} min",
        "load": f"1-minute load average {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end "
                f"(the machine is shared; other engineers' jobs may have run)",
    }


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
