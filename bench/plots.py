"""PNG plots of a side-by-side run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.sidebyside import SideResult  # noqa: E402


def _cdf(ax, series: dict[str, list[float]], title: str) -> None:
    for name, xs in series.items():
        if not xs:
            continue
        ordered = sorted(x * 1000 for x in xs)
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(ordered, ys, where="post", label=f"{name} (n={len(ordered)})")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("fraction of calls")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def write(res: SideResult, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    n = res.graph.get("nodes", 0)

    def save(fig, name: str) -> None:
        path = directory / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if res.traverse:
        fig, ax = plt.subplots(figsize=(8, 5))
        _cdf(ax, {k: v.latencies for k, v in res.traverse.items()},
             f"W1: 3-hop IN traversal, at most 1000 nodes ({n} users)")
        save(fig, "w1_traverse_cdf.png")
    if res.findpath:
        fig, ax = plt.subplots(figsize=(8, 5))
        _cdf(ax, {k: v.latencies for k, v in res.findpath.items()}, f"W2: FindPath, max depth 6 ({n} users)")
        save(fig, "w2_findpath_cdf.png")
    if res.reads or res.mix:
        fig, ax = plt.subplots(figsize=(8, 5))
        series = {f"W3 {k}": v.latencies for k, v in res.reads.items()}
        series.update({f"W4 {k}": v.latencies for k, v in res.mix.items()})
        series.update({f"W3 x{res.config.concurrency} {k}": v["latencies"] for k, v in res.concurrent.items()})
        names = [k for k, v in series.items() if v]
        ax.boxplot([[x * 1000 for x in series[k]] for k in names], vert=False, whis=(1, 99), showfliers=False)
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log scale); box = p25..p75, whiskers = p1..p99")
        ax.set_title("W3/W4: point reads")
        ax.grid(True, axis="x", which="both", alpha=0.3)
        save(fig, "w3_w4_reads_box.png")
    if res.ew_ingest:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        labels, values = ["Edgewise\nBatchWrite"], [res.ew_ingest["edges"] / res.ew_ingest["edges_s"]]
        if res.pg_ingest:
            labels.append("PostgreSQL\nINSERT (durable)")
            values.append(res.pg_ingest["edges"] / res.pg_ingest["edges_s"])
        if res.pg_copy:
            labels.append("PostgreSQL\nCOPY")
            values.append(res.graph["edges"] / res.pg_copy["copy_s"])
        bars = left.bar(labels, values, color=["tab:blue", "tab:orange", "tab:gray"][:len(values)])
        left.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
        left.axhline(10_000, color="red", linestyle="--", linewidth=1, label="target 10,000 edges/s")
        left.set_yscale("log")
        left.set_ylabel("edges per second (log scale)")
        left.set_title(f"ingest, 100 rows per call/transaction, {res.config.ingest_callers} callers")
        left.legend(fontsize=8)
        series = {"Edgewise BatchWrite (100 ops)": res.ew_ingest["latencies"]}
        if res.pg_ingest:
            series["PostgreSQL INSERT tx (100 rows)"] = res.pg_ingest["latencies"]
        _cdf(right, series, "per call / transaction latency")
        save(fig, "ingest.png")
    return written
