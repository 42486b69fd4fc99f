"""Rate limiting: the token bucket's arithmetic, the bounded table, and the interceptor on a
real in-process server (RESOURCE_EXHAUSTED with ErrorInfo, RetryInfo and QuotaFailure), all
on an injected clock."""

import grpc
import pytest

from domain.errors import RateLimited, Reason
from edgewise.graph.v1 import query_service_pb2 as q
from infrastructure.config import RateLimitSettings
from infrastructure.grpc.chain import build_interceptors, chain_names
from infrastructure.grpc.context import CallFacts, RequestContext, request_scope
from infrastructure.grpc.ratelimit import BucketTable, RateLimitInterceptor, TokenBucket
from infrastructure.security.principal import Principal
from tests.chain_support import PRINCIPAL_METADATA, ManualClock, details, served_fake_queries

GET_NODE = "/edgewise.graph.v1.GraphQueryService/GetNode"
CREATE_NODE = "/edgewise.graph.v1.GraphCommandService/CreateNode"
APPLY_SCHEMA = "/edgewise.graph.v1.GraphCommandService/ApplySchema"
HEALTH = "/grpc.health.v1.Health/Check"


# --- TokenBucket ------------------------------------------------------------------------------


def test_a_bucket_starts_full_and_allows_its_burst_then_refuses():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token at 2/s: half a second away


def test_the_retry_delay_is_the_time_to_the_next_whole_token():
    bucket = TokenBucket(rate=4.0, burst=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(10.1) == pytest.approx(0.15)  # 0.4 of a token refilled, 0.6 to go at 4/s
    assert bucket.take(10.2) == pytest.approx(0.05)
    assert bucket.take(10.25) == 0.0  # exactly one token by now


def test_refill_is_capped_at_the_burst():
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert bucket.take(0.0) == bucket.take(0.0) == 0.0
    assert bucket.tokens(3600.0) == 2.0  # an hour idle refills only to the burst
    assert [bucket.take(3600.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert bucket.take(3600.0) > 0


def test_a_refused_take_takes_nothing():
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert bucket.take(0.0) == 0.0
    for _ in range(5):  # hammering an empty bucket does not push the next token further away
        assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0


def test_a_clock_going_backwards_refills_nothing():
    bucket = TokenBucket(rate=1.0, burst=1, now=100.0)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(50.0) == pytest.approx(1.0)
    assert bucket.take(100.5) == pytest.approx(0.5)


def test_rate_zero_is_no_limit():
    bucket = TokenBucket(rate=0.0, burst=1, now=0.0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(10_000))


# --- BucketTable ------------------------------------------------------------------------------


def test_the_table_stays_bounded_dropping_the_least_recently_used():
    table = BucketTable(3)
    made = []

    def make():
        made.append(TokenBucket(1.0, 1, 0.0))
        return made[-1]

    a = table.get(("a", "g", "reads"), make)
    table.get(("b", "g", "reads"), make)
    table.get(("c", "g", "reads"), make)
    assert table.get(("a", "g", "reads"), make) is a  # a is now the most recently used
    table.get(("d", "g", "reads"), make)  # evicts b, the least recently used
    assert len(table) == 3 and table.evictions == 1
    assert ("b", "g", "reads") not in table
    assert all(k in table for k in (("a", "g", "reads"), ("c", "g", "reads"), ("d", "g", "reads")))
    for i in range(1000):
        table.get((f"p{i}", "g", "reads"), make)
    assert len(table) == 3 and table.evictions == 1001


def test_the_table_needs_a_positive_bound():
    with pytest.raises(ValueError):
        BucketTable(0)


# --- RateLimitInterceptor.check (no server) ---------------------------------------------------


def _limiter(clock, **limits):
    return RateLimitInterceptor(RateLimitSettings(**limits), clock=clock)


def _as(principal_name: str, graph: str):
    """A call by ``principal_name`` ("" = none) about ``graph``, as authentication and authorization leave it."""
    principal = Principal(subject=principal_name, graphs=("*",), scopes=frozenset()) if principal_name else None
    return request_scope(RequestContext(method="x", facts=CallFacts(principal=principal, graph=graph)))


def test_classes_have_independent_buckets():
    clock = ManualClock()
    limiter = _limiter(clock, reads=(1.0, 1), writes=(1.0, 1), schema=(1.0, 1))
    with _as("alice", "g"):
        for method in (GET_NODE, CREATE_NODE, APPLY_SCHEMA):
            limiter.check(method)  # each class's own bucket: one token each
        for method in (GET_NODE, CREATE_NODE, APPLY_SCHEMA):
            with pytest.raises(RateLimited):
                limiter.check(method)
    assert len(limiter.buckets) == 6  # per class: alice on g, and alice on all her graphs


def test_buckets_are_per_principal_and_graph():
    clock = ManualClock()
    limiter = _limiter(clock, reads=(1.0, 1))
    for who, graph in (("alice", "g"), ("alice", "h"), ("bob", "g"), ("", "g"), ("alice", "")):
        with _as(who, graph):
            limiter.check(GET_NODE)
    with _as("alice", "g"), pytest.raises(RateLimited):
        limiter.check(GET_NODE)


def test_naming_more_graphs_does_not_buy_more_calls():
    """A principal allowed ``team-*`` (or ``*``) could otherwise get a full bucket per graph
    name it invents: its calls over all graphs share a bucket ``principal_factor`` times one
    graph's, and a refusal from it names the principal, not a graph."""
    clock = ManualClock()
    limiter = _limiter(clock, reads=(1.0, 2), principal_factor=3)  # all graphs together: 3/s, burst 6
    for i in range(6):
        with _as("mallory", f"team-{i}"):
            limiter.check(GET_NODE)
    with _as("mallory", "team-99"), pytest.raises(RateLimited) as info:
        limiter.check(GET_NODE)  # a fresh graph's bucket is full, the principal's is empty
    err = info.value
    assert err.metadata["scope"] == "principal" and err.metadata["limit_per_second"] == "3"
    assert [(v.subject, v.description) for v in err.violations] == [
        ("principal:mallory", "reads: 3 calls per second, burst 6 across all graphs")]
    assert err.retry_after_seconds == pytest.approx(1 / 3)
    with _as("bob", "team-0"):
        limiter.check(GET_NODE)  # another principal has its own
    clock.advance(1 / 3)
    with _as("mallory", "team-99"):
        limiter.check(GET_NODE)  # refilled


def test_a_refusal_by_one_bucket_takes_nothing_from_the_other():
    clock = ManualClock()
    limiter = _limiter(clock, reads=(1.0, 1), principal_factor=2)
    with _as("alice", "g"):
        limiter.check(GET_NODE)
        for _ in range(5):  # g's bucket is empty: the refusals must not drain alice's overall one
            with pytest.raises(RateLimited):
                limiter.check(GET_NODE)
    with _as("alice", "h"):
        limiter.check(GET_NODE)  # the overall bucket still had its second token


def test_principal_factor_zero_is_no_overall_cap():
    clock = ManualClock()
    limiter = _limiter(clock, reads=(1.0, 1), principal_factor=0)
    for i in range(50):
        with _as("alice", f"g{i}"):
            limiter.check(GET_NODE)
    assert len(limiter.buckets) == 50


def test_open_and_unknown_methods_and_unlimited_classes_are_never_limited():
    clock = ManualClock()
    limiter = _limiter(clock, reads=(0.0, 1), writes=(1.0, 1))
    with _as("alice", "g"):
        for _ in range(100):
            limiter.check(HEALTH)
            limiter.check("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
            limiter.check("/made.Up/Name")
            limiter.check(GET_NODE)  # reads: rate 0 = off
    assert len(limiter.buckets) == 0  # nothing limited, nothing remembered


def test_the_refusal_says_which_quota_and_when_to_retry():
    clock = ManualClock()
    limiter = _limiter(clock, writes=(0.5, 2))
    with _as("alice", "g"):
        limiter.check(CREATE_NODE)
        limiter.check(CREATE_NODE)
        with pytest.raises(RateLimited) as info:
            limiter.check(CREATE_NODE)
    err = info.value
    assert err.reason == Reason.RATE_LIMITED
    assert err.retry_after_seconds == pytest.approx(2.0)
    assert err.metadata == {"rate_class": "writes", "limit_per_second": "0.5", "burst": "2",
                            "principal": "alice", "graph": "g", "scope": "graph"}
    assert [(v.subject, v.description) for v in err.violations] == [
        ("principal:alice/graph:g", "writes: 0.5 calls per second, burst 2")]


def test_the_retry_delay_is_at_least_a_millisecond():
    clock = ManualClock()
    limiter = _limiter(clock, reads=(1000.0, 1))
    with _as("alice", "g"):
        limiter.check(GET_NODE)
        clock.advance(0.0009999)  # a hair short of the next token
        with pytest.raises(RateLimited) as info:
            limiter.check(GET_NODE)
    assert info.value.retry_after_seconds == pytest.approx(0.001)


def test_the_chain_has_the_rate_limit_right_before_validation():
    names = chain_names()
    assert names.index("rate_limit") + 1 == names.index("validation")
    assert any(isinstance(i, RateLimitInterceptor) for i in build_interceptors(None))


# --- through a real server ----------------------------------------------------------------------


def _node(graph: str = "g", node: str = "a") -> q.GetNodeRequest:
    return q.GetNodeRequest(name=f"graphs/{graph}/nodes/{node}")


def _who(name: str):
    return [(PRINCIPAL_METADATA, name)]


async def test_a_burst_past_the_bucket_is_resource_exhausted_with_retry_and_quota_details():
    clock = ManualClock()
    async with served_fake_queries(RateLimitSettings(reads=(2.0, 3)), clock) as (stub, _, servicer):
        for _ in range(3):
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        assert servicer.calls == 3  # the refused call never reached the handler
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    found = details(err)
    (error_info,) = found["ErrorInfo"]
    assert error_info.reason == "RATE_LIMITED"
    assert error_info.domain == "edgewise.graph.v1"
    assert {k: error_info.metadata[k] for k in ("rate_class", "limit_per_second", "burst", "principal", "graph")} \
        == {"rate_class": "reads", "limit_per_second": "2", "burst": "3", "principal": "alice", "graph": "g"}
    (retry,) = found["RetryInfo"]
    assert retry.retry_delay.seconds == 0 and retry.retry_delay.nanos == 500_000_000
    (quota,) = found["QuotaFailure"]
    assert [(v.subject, v.description) for v in quota.violations] == [
        ("principal:alice/graph:g", "reads: 2 calls per second, burst 3")]


async def test_another_principal_and_another_graph_are_unaffected_and_the_clock_refills():
    clock = ManualClock()
    async with served_fake_queries(RateLimitSettings(reads=(1.0, 2)), clock) as (stub, _, _servicer):
        for _ in range(2):
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for _ in range(2):  # bob's bucket, and alice's bucket of another graph, are full
            await stub.GetNode(_node(), metadata=_who("bob"), timeout=5)
            await stub.GetNode(_node(graph="h"), metadata=_who("alice"), timeout=5)
        clock.advance(0.999)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        clock.advance(0.001)  # one token at 1/s
        await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        clock.advance(60)  # refills to the burst, no further
        for _ in range(2):
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetNode(_node(), metadata=_who("alice"), timeout=5)


async def test_a_stream_takes_one_token_at_open():
    clock = ManualClock()
    async with served_fake_queries(RateLimitSettings(reads=(1.0, 1)), clock) as (stub, _, _servicer):
        call = stub.WatchEvents(q.WatchEventsRequest(parent="graphs/g"), metadata=_who("alice"), timeout=5)
        got = 0
        async for _ in call:  # many messages, one token
            got += 1
            if got == 5:
                break
        call.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.WatchEvents(q.WatchEventsRequest(parent="graphs/g"), metadata=_who("alice"),
                                            timeout=5):
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details(info.value)["ErrorInfo"][0].reason == "RATE_LIMITED"
