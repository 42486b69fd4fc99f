"""Deadlines through the edge. Unary routes have no router timeout; their stream duration is
the caller's ``grpc-timeout`` capped at the service's maximum, or the service's default when
the caller sends none. When it runs out the caller gets DEADLINE_EXCEEDED and Envoy resets
the upstream stream, which the upstream sees as a cancelled call. Streams are exempt.

The slowed upstream is tests/edge/upstreams.Slow (a fake query worker that sleeps, noting
when its caller went away), so no test hook lives in the services.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import uuid

import grpc
import pytest

from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc
from edgewise.graph.v1 import resources_pb2 as pb
from tests.edge.conftest import edge_settings, running
from tests.edge.upstreams import Slow

pytestmark = pytest.mark.e2e

DEFAULT_MS, MAX_MS = 700, 1_500
SLACK = 4.0  # seconds: upper bounds stay far below the 10 s upstream and the caller's 30 s on a busy machine
TICK = 0.01  # grpc-timeout travels in whole units: a few hundred microseconds of rounding


@pytest.fixture(scope="module")
def slow_edge(edge_stack, tmp_path_factory):
    """Queries go to a worker that takes 10 s; query default 0.7 s, maximum 1.5 s."""
    slow = Slow(delay=10).start()
    base = edge_settings([edge_stack.direct.command_addr], [slow.address])
    settings = dataclasses.replace(base, query=dataclasses.replace(
        base.query, default_timeout_ms=DEFAULT_MS, max_timeout_ms=MAX_MS, per_try_timeout_ms=MAX_MS))
    try:
        with running(settings, tmp_path_factory.mktemp("slow")) as gateway:
            with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
                yield gateway, slow, query_service_pb2_grpc.GraphQueryServiceStub(channel)
    finally:
        slow.stop()


def timed_call(stub, timeout: float | None, name: str) -> tuple[grpc.StatusCode, float, str]:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetNode(q.GetNodeRequest(name=f"graphs/t/nodes/{name}"), timeout=timeout)
    return err.value.code(), time.monotonic() - started, err.value.details() or ""


def the_attempt(slow: Slow, name: str):
    """The upstream's record of the call (the first attempt, if Envoy retried it)."""
    key = hashlib.sha256(q.GetNodeRequest(name=f"graphs/t/nodes/{name}").SerializeToString()).hexdigest()
    found = slow.attempts_for(key)
    assert found, f"no attempt for {name}"
    for attempt in found:
        assert attempt.ended.wait(2), "an upstream call was never ended"
    return found[0]


def test_a_deadline_shorter_than_the_call_ends_it_and_cancels_the_upstream(slow_edge):
    gateway, slow, stub = slow_edge
    code, took, _ = timed_call(stub, 0.4, "short")
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert took < SLACK
    attempt = the_attempt(slow, "short")
    # the worker was told the caller's deadline, and its call was cancelled, not left running for 10 s
    assert attempt.time_remaining is not None and attempt.time_remaining <= 0.4 + TICK
    assert attempt.ended_after is not None and attempt.ended_after < SLACK


def test_a_longer_deadline_is_capped_at_the_services_maximum(slow_edge):
    gateway, slow, stub = slow_edge
    code, took, details = timed_call(stub, 30, "capped")
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details  # long before the caller's own 30 s
    assert MAX_MS / 1000 - 0.1 < took < MAX_MS / 1000 + SLACK
    attempt = the_attempt(slow, "capped")
    # Envoy rewrote the upstream's grpc-timeout to the capped one: the worker knows its real deadline
    assert attempt.time_remaining is not None and attempt.time_remaining <= MAX_MS / 1000 + TICK
    assert attempt.metadata.get("x-envoy-expected-rq-timeout-ms") == str(MAX_MS)  # the per-try timeout
    assert attempt.ended_after < MAX_MS / 1000 + SLACK


def test_without_a_deadline_the_services_default_applies(slow_edge):
    gateway, slow, stub = slow_edge
    code, took, _ = timed_call(stub, None, "default")
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert DEFAULT_MS / 1000 - 0.1 < took < DEFAULT_MS / 1000 + SLACK
    attempt = the_attempt(slow, "default")
    # the worker was given the default as its deadline (Envoy ends the stream then too: the
    # first of the two to fire answers, DEADLINE_EXCEEDED either way)
    assert attempt.time_remaining is not None and attempt.time_remaining <= DEFAULT_MS / 1000 + TICK
    assert attempt.ended_after < DEFAULT_MS / 1000 + SLACK


def test_watch_events_outlives_the_unary_maximum(edge_stack, tmp_path_factory):
    """A WatchEvents stream through an edge whose query maximum is 0.5 s stays open for 2 s and
    still delivers an event written after 1.5 s."""
    base = edge_settings([edge_stack.direct.command_addr], [edge_stack.direct.query_addr])
    settings = dataclasses.replace(base, query=dataclasses.replace(
        base.query, default_timeout_ms=300, max_timeout_ms=500, per_try_timeout_ms=500))
    graph = f"graphs/watch-{uuid.uuid4().hex[:6]}"
    from tests.e2e.conftest import GraphClient

    with running(settings, tmp_path_factory.mktemp("watch")) as gateway:
        with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
            client = GraphClient(edge_stack.direct, graph.split("/", 1)[1])
            client.apply_schema()
            stub = query_service_pb2_grpc.GraphQueryServiceStub(channel)
            stream = stub.WatchEvents(q.WatchEventsRequest(parent=graph, after_position=0), timeout=10)
            started = time.monotonic()
            writer = threading.Timer(1.5, lambda: client.create_user("late"))
            writer.start()
            try:
                seen = []
                for resp in stream:
                    seen.append(resp.event)
                    if resp.event.type == "NodeCreated":
                        break
            finally:
                writer.join()
                stream.cancel()
            assert seen[0].type == "SchemaApplied" and seen[-1].aggregate_id == "late"
            assert time.monotonic() - started >= 1.5
            # the unary maximum still holds on the same edge, for a query
            resp = stub.GetNode(q.GetNodeRequest(name=f"{graph}/nodes/late",
                                                 consistency=pb.ReadConsistency(fully_consistent=True)), timeout=30)
            assert resp.node.name == f"{graph}/nodes/late"
