"""Small statistics and table helpers: median and nearest-rank percentiles in milliseconds."""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no samples."""
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def p95(xs: Sequence[float]) -> float:
    return percentile(xs, 95)


def p99(xs: Sequence[float]) -> float:
    return percentile(xs, 99)


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000.0
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def ratio(a: float, b: float) -> str:
    if b <= 0 or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.1f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
