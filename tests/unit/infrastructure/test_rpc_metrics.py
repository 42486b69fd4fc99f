"""RPC metrics: a real server with the real chain and the metrics HTTP server on 127.0.0.1:0;
a known sequence of calls, then /metrics scraped over HTTP shows exactly those counts."""

import asyncio
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgewise.graph.v1 import query_service_pb2 as q
from infrastructure.config import RateLimitSettings, Settings
from infrastructure.grpc.chain import build_interceptors, chain_names
from infrastructure.telemetry.metrics import ReadCacheCollector, start_metrics_server
from infrastructure.telemetry.rpc_metrics import (
    HANDLING_SECONDS_BUCKETS,
    KNOWN_METHODS,
    MetricsInterceptor,
    RpcMetrics,
    method_labels,
)
from query_service.bootstrap import metrics_shards
from query_service.cache import ReadCache
from tests.chain_support import PRINCIPAL_METADATA, REFUSE_METADATA, ManualClock, served_fake_queries
from tests.query_support import Events, query_app, write_events

QUERY = "edgewise.graph.v1.GraphQueryService"


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample on /metrics: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def named(samples, name: str) -> dict[frozenset, float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def labels(**kv) -> frozenset:
    return frozenset(kv.items())


def rpc(method: str, code: str | None = None, **extra) -> frozenset:
    kv = {"grpc_service": QUERY if method != "unknown" else "unknown", "grpc_method": method, **extra}
    if code is not None:
        kv["grpc_code"] = code
    return frozenset(kv.items())


async def wait_until(predicate, what: str, timeout: float = 10.0):
    """Poll (the server notices a cancelled stream on its own schedule): the result, never a timing."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(predicate)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def metered():
    rpc_metrics = RpcMetrics()
    server = start_metrics_server(0, metrics=rpc_metrics)
    clock = ManualClock()
    # reads: a burst of 6 and no refill (the clock stands still): the 7th read is refused
    async with served_fake_queries(RateLimitSettings(reads=(1.0, 6)), clock, rpc_metrics) as (stub, channel, _):
        try:
            yield stub, channel, server.port
        finally:
            server.close()


def _raw(channel, method: str):
    return channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)


async def test_scraped_counts_match_a_known_sequence_of_calls(metered):
    stub, channel, port = metered
    alice = [(PRINCIPAL_METADATA, "alice")]
    # 1-2: OK; 3: NOT_FOUND; 4: INVALID_ARGUMENT (validation, inside the rate limit: it takes a token)
    await stub.GetNode(q.GetNodeRequest(name="graphs/g/nodes/a"), metadata=alice, timeout=5)
    await stub.GetNode(q.GetNodeRequest(name="graphs/g/nodes/b"), metadata=alice, timeout=5)
    for name, code in (("graphs/g/nodes/missing", grpc.StatusCode.NOT_FOUND),
                       ("graphs/g/nodes/", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetNode(q.GetNodeRequest(name=name), metadata=alice, timeout=5)
        assert info.value.code() == code
    # 5: a stream the caller cancels (one token at open)
    call = stub.WatchEvents(q.WatchEventsRequest(parent="graphs/g"), metadata=alice)
    got = 0
    async for _ in call:
        got += 1
        if got == 3:
            break
    call.cancel()
    # 6: one more OK read uses the last token; 7: rate limited
    await stub.GetNode(q.GetNodeRequest(name="graphs/g/nodes/c"), metadata=alice, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetNode(q.GetNodeRequest(name="graphs/g/nodes/d"), metadata=alice, timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # refused by authentication (twice) and authorization (once), and a reason outside the fixed set
    for refusal, code in (("unauthenticated:TOKEN_EXPIRED", grpc.StatusCode.UNAUTHENTICATED),
                          ("unauthenticated:TOKEN_EXPIRED", grpc.StatusCode.UNAUTHENTICATED),
                          ("denied:GRAPH_ACCESS_DENIED", grpc.StatusCode.PERMISSION_DENIED),
                          ("denied:SOMETHING_NEW", grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetNode(q.GetNodeRequest(name="graphs/g/nodes/a"), metadata=[(REFUSE_METADATA, refusal)],
                               timeout=5)
        assert info.value.code() == code
    # invented method names: the UNIMPLEMENTED fallback answers them all, under one label
    for i in range(25):
        for method in (f"/made.up.Service{i}/Nope", f"/{QUERY}/Bogus{i}"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _raw(channel, method)(b"", timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED

    # the cancelled stream is over once nothing is in flight
    def settled():
        samples = scrape(port)
        in_flight = named(samples, "edgewise_rpc_in_flight")
        return samples if in_flight and not any(in_flight.values()) else None

    samples = await wait_until(settled, "every call to finish")

    assert named(samples, "edgewise_rpc_handled_total") == {
        rpc("GetNode", "OK"): 3,
        rpc("GetNode", "NOT_FOUND"): 1,
        rpc("GetNode", "INVALID_ARGUMENT"): 1,
        rpc("GetNode", "RESOURCE_EXHAUSTED"): 1,
        rpc("GetNode", "UNAUTHENTICATED"): 2,
        rpc("GetNode", "PERMISSION_DENIED"): 2,
        rpc("WatchEvents", "CANCELLED"): 1,
        rpc("unknown", "UNIMPLEMENTED"): 50,
    }
    counts = named(samples, "edgewise_rpc_handling_seconds_count")
    assert counts == named(samples, "edgewise_rpc_handled_total")  # one observation per call
    infinite = {k - {("le", "+Inf")}: v for k, v in named(samples, "edgewise_rpc_handling_seconds_bucket").items()
                if ("le", "+Inf") in k}
    assert infinite == counts
    buckets = {dict(k)["le"] for k in named(samples, "edgewise_rpc_handling_seconds_bucket")}
    assert buckets == {str(float(b)) for b in HANDLING_SECONDS_BUCKETS} | {"+Inf"}
    assert named(samples, "edgewise_rpc_in_flight") == {
        rpc("GetNode"): 0, rpc("WatchEvents"): 0, rpc("unknown"): 0}
    assert named(samples, "edgewise_rpc_rate_limited_total") == {rpc("GetNode", rate_class="reads"): 1}
    assert named(samples, "edgewise_authentication_failures_total") == {labels(reason="TOKEN_EXPIRED"): 2}
    assert named(samples, "edgewise_authorization_denials_total") == {
        labels(reason="GRAPH_ACCESS_DENIED"): 1, labels(reason="OTHER"): 1}

    # labels stay bounded: 50 invented names added no label value, and no graph or principal is a label
    values = {v for (name, kv) in samples for k, v in kv if name.startswith("edgewise_rpc_") and k == "grpc_method"}
    assert values == {"GetNode", "WatchEvents", "unknown"}
    everything = {v for (_, kv) in samples for _, v in kv}
    assert not {"alice", "g", "graphs/g/nodes/a"} & everything


def test_method_labels_are_known_methods_or_unknown():
    assert method_labels(f"/{QUERY}/GetNode") == (QUERY, "GetNode")
    assert method_labels("/edgewise.graph.v1.GraphCommandService/BatchWrite") == (
        "edgewise.graph.v1.GraphCommandService", "BatchWrite")
    assert method_labels("/grpc.health.v1.Health/Check") == ("grpc.health.v1.Health", "Check")
    assert method_labels("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") == (
        "grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo")
    for invented in (f"/{QUERY}/Nope", "/x.Y/Z", "nonsense", "", f"/{QUERY}/GetNode/extra"):
        assert method_labels(invented) == ("unknown", "unknown")
    assert len(KNOWN_METHODS) < 40  # every Edgewise method, health and reflection: a fixed set


def test_the_metrics_entry_sits_right_after_the_access_log_and_only_with_metrics():
    names = chain_names()
    assert names.index("metrics") == names.index("access_log") + 1
    assert not any(isinstance(i, MetricsInterceptor) for i in build_interceptors(None))
    assert any(isinstance(i, MetricsInterceptor) for i in build_interceptors(None, metrics=RpcMetrics()))


def test_one_port_serves_the_rpc_metrics_and_the_read_cache():
    rpc_metrics = RpcMetrics()
    cache = ReadCache(1 << 20)
    cache.hits["node"] += 4
    server = start_metrics_server(0, [ReadCacheCollector(cache.stats)], metrics=rpc_metrics)
    try:
        samples = scrape(server.port)
    finally:
        server.close()
    assert named(samples, "edgewise_read_cache_hits_total")[labels(kind="node")] == 4
    assert named(samples, "edgewise_rpc_handled_total") == {}  # declared, nothing handled yet
    assert ("edgewise_rpc_handled_total", frozenset()) not in samples


# --- projection gauges ------------------------------------------------------------------------------


def _projection_samples(positions, heads, labelled):
    rpc_metrics = RpcMetrics()
    rpc_metrics.watch_projection(positions=lambda: positions, heads=lambda: heads, labelled=labelled)
    server = start_metrics_server(0, metrics=rpc_metrics)
    try:
        samples = scrape(server.port)
    finally:
        server.close()
    return named(samples, "edgewise_projection_position"), named(samples, "edgewise_projection_lag_events")


def _settings(**kw) -> Settings:
    return Settings(db_path="unused.db", token_secret=b"0123456789abcdef", **kw)


def test_projection_gauges_on_sqlite_name_the_one_shard():
    position, lag = _projection_samples({"0": 40}, {"0": 52}, metrics_shards(_settings()))
    assert position == {labels(shard="0"): 40}
    assert lag == {labels(shard="0"): 12}


def test_projection_gauges_on_dynamodb_name_only_listed_graphs_and_sum_the_rest():
    labelled = metrics_shards(_settings(store="dynamodb", metrics_graphs=("orders",)))
    positions = {"orders.0": 10, "team-a.0": 5, "team-b.0": 7, "idle.0": 3}
    heads = {"orders.0": 11, "team-a.0": 9, "team-b.0": 8, "idle.0": 3}  # what this process projects
    position, lag = _projection_samples(positions, heads, labelled)
    assert position == {labels(shard="orders.0"): 10}  # unlisted positions are not summable: not reported
    assert lag == {labels(shard="orders.0"): 1, labels(shard="_other"): 5}


def test_a_process_that_projects_nothing_reports_positions_and_no_lag():
    position, lag = _projection_samples({"0": 7}, {}, metrics_shards(_settings()))
    assert position == {labels(shard="0"): 7}
    assert lag == {}


async def test_the_projector_keeps_the_heads_it_read(tmp_path):
    path = str(tmp_path / "edgewise.db")
    events = Events()
    async with query_app(path) as app:
        write_events(path, [events.schema(), events.create("a", email="a@x"), events.create("b", email="b@x")])
        await app.projector.catch_up()
        assert app.projector.heads == {"0": 3}
        assert app.progress.positions() == {"0": 3}
        position, lag = _projection_samples(app.progress.positions(), app.projector.heads,
                                            metrics_shards(_settings()))
        assert (position, lag) == ({labels(shard="0"): 3}, {labels(shard="0"): 0})


def test_a_shard_with_nothing_projected_yet_is_at_position_zero():
    position, lag = _projection_samples({}, {"0": 4}, metrics_shards(_settings()))
    assert (position, lag) == ({labels(shard="0"): 0}, {labels(shard="0"): 4})


def test_a_taken_metrics_port_is_a_bind_error_naming_the_setting():
    import socket

    from infrastructure.grpc.server import BindError
    from infrastructure.telemetry.metrics import start_metrics_server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BindError) as info:
            start_metrics_server(port)
    assert "EDGEWISE_METRICS_PORT" in str(info.value) and str(port) in str(info.value)
