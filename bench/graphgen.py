"""Seeded workload generators for the side-by-side benchmark (pure, no I/O).

* ``power_law_graph``: a preferential-attachment "follows" graph. Nodes 0..m-1 are
  the seed; every node i >= m follows m distinct OLDER nodes, each chosen with
  probability proportional to (its current in-degree + 1). In-degree is therefore
  heavy-tailed (the oldest nodes become hubs followed by a large share of the
  graph) while every out-degree is exactly m. The graph is a DAG (edges point to
  older nodes), which keeps the answers of the different systems easy to check.
* ``ZipfSampler``: ranks drawn with P(rank r) proportional to 1 / r**s; rank r is
  node r-1, so the popular picks are the early, heavy nodes.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Graph:
    nodes: int
    out_degree: int
    edges: list[tuple[int, int]]  # (follower, followed), in creation order (by follower)

    def node_id(self, i: int) -> str:
        return node_id(i)

    def in_degrees(self) -> list[int]:
        deg = [0] * self.nodes
        for _, t in self.edges:
            deg[t] += 1
        return deg


def node_id(i: int) -> str:
    return f"u{i}"


def node_index(ident: str) -> int:
    return int(ident[1:])


def power_law_graph(nodes: int, out_degree: int = 10, seed: int = 1) -> Graph:
    if out_degree < 1 or nodes <= out_degree:
        raise ValueError("need out_degree >= 1 and nodes > out_degree")
    rng = random.Random(seed)
    # pool holds node j (in-degree(j) + 1) times: a uniform pick from it is preferential attachment
    pool: list[int] = list(range(out_degree))
    edges: list[tuple[int, int]] = []
    for i in range(out_degree, nodes):
        chosen: list[int] = []
        seen: set[int] = set()
        while len(chosen) < out_degree:
            t = pool[int(rng.random() * len(pool))]
            if t not in seen:
                seen.add(t)
                chosen.append(t)
        for t in chosen:
            edges.append((i, t))
        pool.extend(chosen)
        pool.append(i)
    return Graph(nodes=nodes, out_degree=out_degree, edges=edges)


class ZipfSampler:
    """Draws node indexes 0..n-1 with P(i) proportional to 1 / (i + 1) ** s."""

    def __init__(self, n: int, s: float = 1.0, seed: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be positive")
        self.n = n
        self._cdf = list(itertools.accumulate(1.0 / (r ** s) for r in range(1, n + 1)))
        self._rng = random.Random(seed)

    def probability(self, i: int) -> float:
        previous = self._cdf[i - 1] if i else 0.0
        return (self._cdf[i] - previous) / self._cdf[-1]

    def sample(self) -> int:
        return min(bisect.bisect_left(self._cdf, self._rng.random() * self._cdf[-1]), self.n - 1)

    def samples(self, k: int) -> list[int]:
        return [self.sample() for _ in range(k)]

    def pairs(self, k: int) -> list[tuple[int, int]]:
        """k (source, target) pairs of distinct nodes, the source the newer of the two, so
        that a path along ``follows`` (towards older nodes) can exist."""
        out: list[tuple[int, int]] = []
        while len(out) < k:
            a, b = self.sample(), self.sample()
            if a != b:
                out.append((max(a, b), min(a, b)))
        return out
