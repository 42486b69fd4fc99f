import urllib.request

from infrastructure.telemetry.metrics import ReadCacheCollector, start_metrics_server
from query_service.cache import ReadCache


def test_read_cache_metrics_are_served_on_loopback():
    cache = ReadCache(1 << 20)
    gen = cache.generation("g")
    cache.put(("g", "n", "a"), object(), 500, gen)
    cache.hits["node"] += 9
    cache.misses["node"] += 1
    server = start_metrics_server(0, [ReadCacheCollector(cache.stats)])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.close()
    lines = set(text.splitlines())
    assert 'edgewise_read_cache_hits_total{kind="node"} 9.0' in lines
    assert 'edgewise_read_cache_misses_total{kind="node"} 1.0' in lines
    assert 'edgewise_read_cache_misses_total{kind="adjacency"} 0.0' in lines
    assert "edgewise_read_cache_evictions_total 0.0" in lines
    assert "edgewise_read_cache_bytes 500.0" in lines
    assert "edgewise_read_cache_entries 1.0" in lines
    assert "graph" not in text  # labels are bounded: kinds only, never graph ids
