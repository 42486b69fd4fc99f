"""The benchmark's pure helpers (bench/graphgen.py, bench/answers.py, bench/stats.py):
fast checks so that `make bench` cannot silently measure the wrong thing."""

from __future__ import annotations

import collections

import pytest

from bench.answers import (
    Levels,
    bfs_levels,
    bidirectional_distance,
    compare_levels,
    compare_paths,
    levels_from_names,
    same_levels,
)
from bench.graphgen import ZipfSampler, node_id, node_index, power_law_graph
from bench.stats import percentile


def test_power_law_graph_shape_and_determinism():
    g = power_law_graph(2000, 10, seed=3)
    assert g.edges == power_law_graph(2000, 10, seed=3).edges
    assert g.edges != power_law_graph(2000, 10, seed=4).edges
    assert len(g.edges) == (2000 - 10) * 10
    assert len(set(g.edges)) == len(g.edges)  # distinct targets per node
    out = collections.Counter(s for s, _ in g.edges)
    assert set(out.values()) == {10} and min(out) == 10  # the seed nodes follow nobody
    assert all(t < s for s, t in g.edges)  # only older nodes: a DAG


def test_power_law_graph_in_degree_is_heavy_tailed():
    g = power_law_graph(5000, 10, seed=1)
    deg = sorted(g.in_degrees(), reverse=True)
    mean = sum(deg) / len(deg)
    assert deg[0] > 50 * mean  # hubs
    assert deg[len(deg) // 2] < mean  # most nodes below the mean
    assert sum(deg[:50]) > 0.2 * len(g.edges)  # 1% of the nodes hold over 20% of the in-edges


def test_node_ids_round_trip():
    assert node_index(node_id(1234)) == 1234


def test_zipf_sampler_is_seeded_and_skewed():
    a, b = ZipfSampler(1000, 1.0, seed=5), ZipfSampler(1000, 1.0, seed=5)
    xs = a.samples(20_000)
    assert xs == b.samples(20_000)
    assert all(0 <= x < 1000 for x in xs)
    counts = collections.Counter(xs)
    assert counts[0] > counts[1] > counts[9] > counts[99]
    assert counts[0] / len(xs) == pytest.approx(a.probability(0), abs=0.01)
    assert a.probability(0) == pytest.approx(2 * a.probability(1))
    assert sum(a.probability(i) for i in range(1000)) == pytest.approx(1.0)
    pairs = a.pairs(200)
    assert all(s > t for s, t in pairs)


GRAPH = {"a": ["b", "c"], "b": ["d"], "c": ["d", "e"], "d": ["f"], "e": [], "f": ["a"]}


def expand_over(adj):
    return lambda frontier: [nb for n in frontier for nb in adj.get(n, [])]


def reverse(adj):
    rev: dict[str, list[str]] = {}
    for s, ts in adj.items():
        for t in ts:
            rev.setdefault(t, []).append(s)
    return rev


def test_bfs_levels_depth_visited_and_cap():
    full = bfs_levels(expand_over(GRAPH), "a", max_depth=10, max_nodes=100)
    assert [sorted(x) for x in full.levels] == [["a"], ["b", "c"], ["d", "e"], ["f"]] and not full.truncated
    two = bfs_levels(expand_over(GRAPH), "a", max_depth=2, max_nodes=100)
    assert two.count() == 5 and not two.truncated
    capped = bfs_levels(expand_over(GRAPH), "a", max_depth=10, max_nodes=4)
    assert capped.count() == 4 and capped.truncated
    exact = bfs_levels(expand_over(GRAPH), "a", max_depth=10, max_nodes=6)
    assert exact.count() == 6 and not exact.truncated  # the cap is only hit when a node does not fit


def test_compare_levels():
    full = Levels([["a"], ["b", "c"], ["d"]])
    assert compare_levels(full, Levels([["a"], ["c", "b"], ["d"]])) is None
    assert "depth 2" in compare_levels(full, Levels([["a"], ["b", "c"], ["e"]]))
    assert compare_levels(Levels([["a"], ["b"]], truncated=True), full) is None
    assert "did not" in compare_levels(Levels([["a"], ["x"]], truncated=True), full, "ew", "pg")
    assert compare_levels(Levels([["a"], ["x"]], truncated=True), Levels([["a"], ["y"]], truncated=True)) is None
    assert same_levels(full, Levels([["a"], ["c", "b"], ["d"]]))
    assert not same_levels(full, Levels([["a"], ["c", "b"], ["d"]], truncated=True))
    assert levels_from_names([["g/n/a"], ["g/n/b"]], False, "g/n/").levels == [["a"], ["b"]]


def test_bidirectional_distance_matches_plain_bfs():
    fwd, bwd = expand_over(GRAPH), expand_over(reverse(GRAPH))
    for s in GRAPH:
        dist = {lvl_node: d for d, level in enumerate(bfs_levels(fwd, s, 12, 100).levels) for lvl_node in level}
        for t in GRAPH:
            want = dist.get(t)
            assert bidirectional_distance(fwd, bwd, s, t, 12) == want, (s, t)
    assert bidirectional_distance(fwd, bwd, "a", "f", 2) is None  # needs 3 edges
    assert bidirectional_distance(fwd, bwd, "e", "a", 12) is None  # e is a sink


def test_bidirectional_distance_on_a_power_law_graph():
    g = power_law_graph(400, 3, seed=2)
    adj: dict[str, list[str]] = {}
    for s, t in g.edges:
        adj.setdefault(node_id(s), []).append(node_id(t))
    fwd, bwd = expand_over(adj), expand_over(reverse(adj))
    for s, t in ZipfSampler(400, 1.0, seed=9).pairs(50):
        levels = bfs_levels(fwd, node_id(s), 6, 10_000).levels
        want = next((d for d, level in enumerate(levels) if node_id(t) in level), None)
        assert bidirectional_distance(fwd, bwd, node_id(s), node_id(t), 6) == want


def test_compare_paths_and_percentile():
    assert compare_paths(3, 3) is None and compare_paths(None, None) is None
    assert compare_paths(3, None, "ew", "pg") == "ew length 3 vs pg not found"
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50.0 and percentile(xs, 99) == 99.0 and percentile(xs, 100) == 100.0
    assert percentile([], 50) != percentile([], 50)  # nan


def test_compare_levels_rejects_a_cut_walk_that_is_early():
    full = Levels([["a"], ["b"], ["c"]])
    assert compare_levels(Levels([["a"], ["c"]], truncated=True), full, "ew", "truth").startswith(
        "ew (truncated) reached 1 nodes before")
    assert compare_levels(Levels([["a"], [], ["b"]], truncated=True), full) is None  # later is possible


def test_oracle_levels_and_distances():
    from bench.answers import Oracle
    g = power_law_graph(300, 3, seed=4)
    oracle = Oracle(g.nodes, g.edges, node_id, node_index)
    rev: dict[str, list[str]] = {}
    for s, t in g.edges:
        rev.setdefault(node_id(t), []).append(node_id(s))
    for start in ("u0", "u5", "u150", "u299"):
        want = bfs_levels(expand_over(rev), start, 3, 10_000)
        assert same_levels(oracle.levels_in(start, 3), want)
    assert oracle.distance("u299", "u299", 6) == 0
    s, t = g.edges[-1]
    assert oracle.distance(node_id(s), node_id(t), 6) == 1
    assert oracle.distance(node_id(t), node_id(s), 6) is None  # edges only point to older nodes


def test_report_keeps_the_hand_written_notes():
    from bench.report import NOTES_BEGIN, NOTES_END, existing_notes
    text = f"# x\n\n{NOTES_BEGIN}\nline 1\n\nline 2\n{NOTES_END}\nrest\n"
    assert existing_notes(text) == "line 1\n\nline 2"
    assert existing_notes("# no notes here\n") == ""


def test_parse_cache_counters():
    from bench.sidebyside import parse_cache_counters
    text = """# HELP edgewise_read_cache_hits_total Read cache lookups served from the cache
# TYPE edgewise_read_cache_hits_total counter
edgewise_read_cache_hits_total{kind="node"} 90.0
edgewise_read_cache_hits_total{kind="adjacency"} 3.0
edgewise_read_cache_misses_total{kind="node"} 10.0
edgewise_read_cache_evictions_total 0.0
"""
    assert parse_cache_counters(text) == {"node": (90.0, 10.0), "adjacency": (3.0, 0.0)}
    assert parse_cache_counters("# nothing\nother_metric 1.0\n") is None


def _fake_result():
    from bench import sidebyside as sb
    S = sb.Samples
    res = sb.SideResult(config=sb.SideConfig(graph_nodes=100))
    res.graph = {"nodes": 100, "edges": 900, "max_in": 50, "top10_in": [50] * 10, "median_in": 0,
                 "distinct_starts": 3}
    ms = lambda *xs: [x / 1000 for x in xs]  # noqa: E731
    res.traverse = {
        sb.EW_NAMES: S(latencies=ms(3, 3, 3, 3), index=[0, 1, 2, 3], reached=[5] * 4),
        sb.EW_FULL: S(latencies=ms(5, 5, 5, 5), index=[0, 1, 2, 3], reached=[5] * 4),
        sb.EW_NAIVE: S(latencies=ms(90, 90), index=[0, 1], reached=[5] * 2),
        sb.FLOOR: S(latencies=ms(1, 1, 1, 1), index=[0, 1, 2, 3]),
        sb.PG_LEVELS: S(latencies=ms(2, 2, 2, 2), index=[0, 1, 2, 3], reached=[5] * 4),
        sb.PG_CTE: S(latencies=ms(70, 70, 70, 5000), index=[0, 1, 2, 3], censored=1, reached=[5] * 3),
    }
    res.findpath = {sb.EW_PATH: S(latencies=ms(3, 3), index=[0, 1]), sb.FLOOR: S(latencies=ms(1, 1), index=[0, 1]),
                    sb.PG_BIDI: S(latencies=ms(1, 1), index=[0, 1])}
    res.reads = {"GetNode": S(latencies=ms(1.2, 1.2)), sb.FLOOR: S(latencies=ms(1, 1))}
    res.mix = {"GetNode": S(latencies=ms(1, 1))}
    res.ew_ingest = {"nodes": 100, "edges": 900, "nodes_s": 0.1, "edges_s": 0.06, "latencies": [0.01],
                     "catchup_s": 0.1, "db_bytes": 1, "wal_bytes": 0}
    res.pg_ingest = {"nodes": 100, "edges": 900, "nodes_s": 0.01, "edges_s": 0.03, "latencies": [0.01],
                     "bytes": 1, "edge_bytes": 1, "settings": {"fsync": "on"}}
    res.cache_hit_ratio = 0.95
    res.cache_by_kind = {"node": (95.0, 5.0)}
    return res


def test_targets_are_judged_on_the_measured_ratios():
    from bench.report import targets
    res = _fake_result()
    verdicts = {t.name: (t.met, round(t.value, 2) if t.value is not None else None) for t in targets(res)}
    assert verdicts["3-hop NAMES p50 vs PG levels p50"] == (True, 1.5)
    assert verdicts["3-hop FULL p50 vs PG levels p50"] == (True, 2.5)
    assert verdicts["recursive CTE p50 / 3-hop NAMES p50"] == (True, 23.33)
    assert verdicts["naive / batched p50 (same starts)"] == (True, 30.0)
    assert verdicts["FindPath p50 vs PG bidirectional p50"] == (False, 3.0)
    assert verdicts["ingest edges/s (BatchWrite)"] == (True, 15000.0)
    assert verdicts["ingest vs PG durable batched INSERT"] == (True, 0.5)
    assert verdicts["GetNode p50 vs empty RPC p50"] == (True, 1.2)
    assert verdicts["cache hit ratio (W4)"] == (True, 0.95)
    res.pg_skipped, res.cache_hit_ratio = "no initdb", None
    res.traverse.pop("PG levels"), res.findpath.pop("PG bidirectional")
    res.pg_ingest = {}
    skipped = {t.name: t.met for t in targets(res)}
    assert skipped["3-hop NAMES p50 vs PG levels p50"] is None and skipped["cache hit ratio (W4)"] is None


def test_report_renders():
    from bench.report import render
    text = render(_fake_result(), {"date": "d", "machine": "m", "software": "s", "commit": "c", "command": "x",
                                   "duration": "1 min", "load": "l"}, [("A. old", "table")], ["p.png"], "my notes")
    assert "my notes" in text and "| 3-hop NAMES p50 vs PG levels p50 | <= 2x | 1.50x | **met** |" in text
    assert "naive p50 / this p50" in text and "95.0 %" in text
