"""The order of the chain (authentication → authorization → rate limit → validation), rate limiting
over the wire, a cancelled stream, and /metrics after a known sequence of calls.

One stack: reads are limited to a burst of 3 that refills at 0.01/s (so no refill happens during
the test: the refill itself is a unit test with an injected clock); each process serves /metrics on
its own port. Every test uses principals of its own, so no test drains another's bucket."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

import grpc
import pytest

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from tests.security.support import (
    SecureStack,
    Samples,
    assert_refused,
    call,
    everything_visible,
    marker,
    metrics_env,
    mint,
    node,
    ok,
    open_watch,
    record_stream,
    request_id,
    samples,
    schema,
    scrape,
    start_stack,
    stop_stack,
    wait_for_access_line,
)

pytestmark = [pytest.mark.security, pytest.mark.e2e]

SUFFIX = secrets.token_hex(4)
GRAPH = f"secl-{SUFFIX}"
OTHER = f"secm-{SUFFIX}"
BURST = 3
PD = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def stack(tmp_path_factory, suite_keys):
    s = start_stack(tmp_path_factory, "limits", suite_keys.env(EDGEWISE_RATE_LIMIT_READS=f"0.01,{BURST}"),
                    metrics_env())
    admin = mint(suite_keys, "sec-limits-admin", ["*"])
    try:
        for graph in (GRAPH, OTHER):
            ok(call(s, "ApplySchema", cmd.ApplySchemaRequest(graph=f"graphs/{graph}", schema=schema(),
                                                             request_id=request_id()),
                    token=admin, principal="sec-limits-admin", graph=graph))
            ok(call(s, "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{graph}", node_id="n1",
                                                           node=node("User", name=marker("lim")),
                                                           request_id=request_id()),
                    token=admin, principal="sec-limits-admin", graph=graph))
        yield s
    finally:
        stop_stack(s)


def principal(keys: Any, label: str, graphs: tuple[str, ...] = (GRAPH,),
              scope: str = "graph.read graph.write schema.admin", **kw: Any) -> tuple[str, str]:
    subject = f"sec-{label}-{secrets.token_hex(3)}"
    return subject, mint(keys, subject, list(graphs), scope, **kw)


def get_schema(stack: SecureStack, token: str | None, subject: str = "", graph: str = GRAPH, **kw: Any) -> Any:
    return call(stack, "GetSchema", q.GetSchemaRequest(graph=f"graphs/{graph}"), token=token, principal=subject,
                graph=graph, **kw)


def drain(stack: SecureStack, token: str, subject: str, graph: str = GRAPH) -> None:
    """Spend a principal's whole read burst on ``graph`` and see the next call refused."""
    for _ in range(BURST):
        ok(get_schema(stack, token, subject, graph))
    assert_refused(get_schema(stack, token, subject, graph), EXHAUSTED, "RATE_LIMITED")


# ---------------------------------------------------------------------------------------------
# Rate limiting


def test_a_burst_past_the_bucket_is_resource_exhausted(stack, suite_keys):
    subject, token = principal(suite_keys, "burst")
    outcomes = [get_schema(stack, token, subject) for _ in range(BURST + 3)]
    assert [o.code for o in outcomes] == [grpc.StatusCode.OK] * BURST + [EXHAUSTED] * 3
    for refused in outcomes[BURST:]:
        status = assert_refused(refused, EXHAUSTED, "RATE_LIMITED")
        assert status.retry_delay is not None and status.retry_delay > 0, "RetryInfo says when to come back"
        assert status.quota_violations, "QuotaFailure names the exhausted quota"
        assert token not in everything_visible(refused)
        assert token.rsplit(".", 1)[1] not in everything_visible(refused)


def test_another_principal_and_another_graph_are_unaffected(stack, suite_keys):
    subject, token = principal(suite_keys, "noisy", graphs=(GRAPH, OTHER))
    drain(stack, token, subject)
    quiet, quiet_token = principal(suite_keys, "quiet")
    for _ in range(BURST):
        ok(get_schema(stack, quiet_token, quiet))
    # the bucket is per (principal, graph) and per class: the noisy principal's other graph, and its
    # writes, still have theirs
    ok(get_schema(stack, token, subject, OTHER))
    ok(call(stack, "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{GRAPH}", node_id=f"w-{secrets.token_hex(4)}",
                                                       node=node("User", name=marker("lw")), request_id=request_id()),
            token=token, principal=subject, graph=GRAPH))


# ---------------------------------------------------------------------------------------------
# The order of the chain


def test_unauthenticated_comes_before_rate_limited(stack, suite_keys):
    subject, token = principal(suite_keys, "spent")
    drain(stack, token, subject)
    # the same subject, but a token that does not authenticate: UNAUTHENTICATED, never RESOURCE_EXHAUSTED
    expired = mint(suite_keys, subject, [GRAPH], exp_in=-3600)
    assert_refused(get_schema(stack, expired), UNAUTH, "TOKEN_EXPIRED")
    forged = expired.rsplit(".", 1)[0] + "." + "A" * 43
    assert_refused(get_schema(stack, forged), UNAUTH, "TOKEN_SIGNATURE_INVALID")
    assert_refused(get_schema(stack, None), UNAUTH, "TOKEN_MISSING")
    # and the spent principal with its good token is still limited
    assert_refused(get_schema(stack, token, subject), EXHAUSTED, "RATE_LIMITED")


def test_permission_denied_comes_before_rate_limited(stack, suite_keys):
    stranger, stranger_token = principal(suite_keys, "stranger", graphs=(OTHER,))
    # a stranger hammering GRAPH is refused every time, and spends nobody's bucket
    for _ in range(BURST * 2):
        assert_refused(get_schema(stack, stranger_token, stranger), PD, "GRAPH_ACCESS_DENIED")
    owner, owner_token = principal(suite_keys, "owner")
    for _ in range(BURST):
        ok(get_schema(stack, owner_token, owner))
    # a principal without the scope is refused for the scope, before its bucket is looked at
    reader, reader_token = principal(suite_keys, "reader", scope="graph.read")
    drain(stack, reader_token, reader)
    assert_refused(call(stack, "ApplySchema", cmd.ApplySchemaRequest(
        graph=f"graphs/{GRAPH}", schema=schema(), expected_version=2, request_id=request_id()),
        token=reader_token, principal=reader), PD, "SCOPE_MISSING")


def test_invalid_request_about_a_forbidden_graph_is_permission_denied(stack, suite_keys):
    subject, token = principal(suite_keys, "invalid")
    invalid_requests: list[tuple[str, Any]] = [
        ("ListNodes", q.ListNodesRequest(parent=f"graphs/{OTHER}", type="User", filter="((( nonsense",
                                         page_size=-1)),
        ("CountEdges", q.CountEdgesRequest(name=f"graphs/{OTHER}/nodes/n1")),  # no edge_type, no direction
        ("CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{OTHER}", node_id="bad id!",
                                             node=node("Unicorn"), request_id=request_id())),
        ("BatchWrite", cmd.BatchWriteRequest(parent=f"graphs/{OTHER}", request_id=request_id())),  # no operations
        ("AddEdge", cmd.AddEdgeRequest(parent=f"graphs/{GRAPH}", request_id=request_id(), edge=pb.Edge(
            source=f"graphs/{OTHER}/nodes/n1", type="follows", target=f"graphs/{GRAPH}/nodes/n1"))),
    ]
    for rpc, request in invalid_requests:
        assert_refused(call(stack, rpc, request, token=token, principal=subject), PD, "GRAPH_ACCESS_DENIED")
    # the same invalid requests on the principal's own graph are INVALID_ARGUMENT (validation does run)
    own = call(stack, "CountEdges", q.CountEdgesRequest(name=f"graphs/{GRAPH}/nodes/n1"), token=token,
               principal=subject)
    assert own.code == grpc.StatusCode.INVALID_ARGUMENT, own.error
    # a principal missing the scope is refused for the scope even when its request is also invalid
    reader, reader_token = principal(suite_keys, "reader2", scope="graph.read")
    assert_refused(call(stack, "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{GRAPH}", node_id="bad id!",
                                                                   node=node("Unicorn"), request_id=request_id()),
                        token=reader_token, principal=reader), PD, "SCOPE_MISSING")


def test_rate_limited_comes_before_validation(stack, suite_keys):
    subject, token = principal(suite_keys, "spent2")
    drain(stack, token, subject)
    assert_refused(call(stack, "CountEdges", q.CountEdgesRequest(name=f"graphs/{GRAPH}/nodes/n1"), token=token,
                        principal=subject), EXHAUSTED, "RATE_LIMITED")


def test_cancelled_watch_is_cancelled_in_the_access_log(stack, suite_keys):
    subject, token = principal(suite_keys, "watcher")
    stream = open_watch(stack, q.WatchEventsRequest(parent=f"graphs/{GRAPH}", after_position=0), token=token,
                        timeout=15)
    first = next(iter(stream.call))
    assert first.event.type == "SchemaApplied"
    stream.call.cancel()
    record_stream(stack, stream, "CANCELLED", subject)
    line = wait_for_access_line(stack, "WatchEvents", stream.x_request_id)
    assert line["grpc_code"] == "CANCELLED", line
    assert line["principal"] == subject and line["graph"].removeprefix("graphs/") == GRAPH, line
    log = stack.log_path("WatchEvents").read_text(errors="replace")
    assert "Task exception was never retrieved" not in log
    assert "was created in a different Context" not in log


# ---------------------------------------------------------------------------------------------
# Metrics


def _short(service: str) -> str:
    return service.rsplit(".", 1)[-1]


def _deltas(before: Samples, after: Samples, name: str) -> Counter[tuple[tuple[str, str], ...]]:
    """How much each series of ``name`` grew, labels as sorted pairs (grpc_service shortened)."""
    out: Counter[tuple[tuple[str, str], ...]] = Counter()
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        grown = value - before.get((sample, labels), 0.0)
        if grown:
            key = tuple(sorted((k, _short(v) if k == "grpc_service" else v) for k, v in labels))
            out[key] += grown
    return out


def _series(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_metrics_count_exactly_a_known_sequence(stack, suite_keys):
    ports = stack.metrics_ports
    scrape_all = lambda: {m: samples(scrape(p)) for m, p in ports.items()}  # noqa: E731
    before = scrape_all()
    subject, token = principal(suite_keys, "metered")
    reader, reader_token = principal(suite_keys, "metered-reader", scope="graph.read")
    expired = mint(suite_keys, subject, [GRAPH], exp_in=-3600)
    # the query service: 3 OK, 1 rate limited, 2 without a token, 1 expired, 1 on a forbidden graph
    for _ in range(BURST):
        ok(get_schema(stack, token, subject))
    assert_refused(get_schema(stack, token, subject), EXHAUSTED, "RATE_LIMITED")
    assert_refused(get_schema(stack, None), UNAUTH, "TOKEN_MISSING")
    assert_refused(get_schema(stack, None), UNAUTH, "TOKEN_MISSING")
    assert_refused(get_schema(stack, expired), UNAUTH, "TOKEN_EXPIRED")
    assert_refused(call(stack, "GetNode", q.GetNodeRequest(name=f"graphs/{OTHER}/nodes/n1"), token=token,
                        principal=subject), PD, "GRAPH_ACCESS_DENIED")
    # the command service: 2 OK, 1 without the scope, 1 without a token
    for _ in range(2):
        ok(call(stack, "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{GRAPH}", node_id=f"m-{secrets.token_hex(4)}",
                                                           node=node("User", name=marker("met")),
                                                           request_id=request_id()),
                token=token, principal=subject, graph=GRAPH))
    write = cmd.CreateNodeRequest(parent=f"graphs/{GRAPH}", node_id="denied", node=node("User", name=marker("md")),
                                  request_id=request_id())
    assert_refused(call(stack, "CreateNode", write, token=reader_token, principal=reader), PD, "SCOPE_MISSING")
    assert_refused(call(stack, "CreateNode", write, token=None), UNAUTH, "TOKEN_MISSING")
    # a stream the caller cancels: CANCELLED (counted once the server has seen it end)
    watcher, watcher_token = principal(suite_keys, "metered-watch")
    stream = open_watch(stack, q.WatchEventsRequest(parent=f"graphs/{GRAPH}"), token=watcher_token, timeout=15)
    next(iter(stream.call))
    stream.call.cancel()
    record_stream(stack, stream, "CANCELLED", watcher)
    wait_for_access_line(stack, "WatchEvents", stream.x_request_id)  # the metrics are recorded inside it
    after = scrape_all()

    Q, C = "GraphQueryService", "GraphCommandService"
    query_b, query_a = before["query_service"], after["query_service"]
    command_b, command_a = before["command_service"], after["command_service"]

    def handled(svc: str, method: str, code: str) -> tuple[tuple[str, str], ...]:
        return _series(grpc_service=svc, grpc_method=method, grpc_code=code)

    def edgewise_only(counts: Counter[Any]) -> Counter[Any]:
        return Counter({k: v for k, v in counts.items() if dict(k).get("grpc_service") in (Q, C)})

    assert edgewise_only(_deltas(query_b, query_a, "edgewise_rpc_handled_total")) == Counter({
        handled(Q, "GetSchema", "OK"): 3, handled(Q, "GetSchema", "RESOURCE_EXHAUSTED"): 1,
        handled(Q, "GetSchema", "UNAUTHENTICATED"): 3, handled(Q, "GetNode", "PERMISSION_DENIED"): 1,
        handled(Q, "WatchEvents", "CANCELLED"): 1})
    assert edgewise_only(_deltas(query_b, query_a, "edgewise_rpc_handling_seconds_count")) == Counter({
        handled(Q, "GetSchema", "OK"): 3, handled(Q, "GetSchema", "RESOURCE_EXHAUSTED"): 1,
        handled(Q, "GetSchema", "UNAUTHENTICATED"): 3, handled(Q, "GetNode", "PERMISSION_DENIED"): 1,
        handled(Q, "WatchEvents", "CANCELLED"): 1})
    assert _deltas(query_b, query_a, "edgewise_rpc_rate_limited_total") == Counter({
        _series(grpc_service=Q, grpc_method="GetSchema", rate_class="reads"): 1})
    assert _deltas(query_b, query_a, "edgewise_authentication_failures_total") == Counter({
        _series(reason="TOKEN_MISSING"): 2, _series(reason="TOKEN_EXPIRED"): 1})
    assert _deltas(query_b, query_a, "edgewise_authorization_denials_total") == Counter({
        _series(reason="GRAPH_ACCESS_DENIED"): 1})

    assert edgewise_only(_deltas(command_b, command_a, "edgewise_rpc_handled_total")) == Counter({
        handled(C, "CreateNode", "OK"): 2, handled(C, "CreateNode", "PERMISSION_DENIED"): 1,
        handled(C, "CreateNode", "UNAUTHENTICATED"): 1})
    assert _deltas(command_b, command_a, "edgewise_authentication_failures_total") == Counter({
        _series(reason="TOKEN_MISSING"): 1})
    assert _deltas(command_b, command_a, "edgewise_authorization_denials_total") == Counter({
        _series(reason="SCOPE_MISSING"): 1})
    assert not _deltas(command_b, command_a, "edgewise_rpc_rate_limited_total")

    # nothing is in flight once the calls have returned
    for snapshot in (query_a, command_a):
        in_flight = {labels: v for (name, labels), v in snapshot.items() if name == "edgewise_rpc_in_flight"}
        assert in_flight, "edgewise_rpc_in_flight is exported"
        assert all(v == 0 for v in in_flight.values()), in_flight
    # the projector's position and lag, by shard
    names = {name for snapshot in (query_a, command_a) for (name, _) in snapshot}
    assert {"edgewise_projection_position", "edgewise_projection_lag_events"} <= names, sorted(names)
    for snapshot in (query_a, command_a):
        for (name, labels), _ in snapshot.items():
            if name.startswith("edgewise_projection_"):
                assert {k for k, _ in labels} <= {"shard"}, (name, labels)


def test_no_graph_id_is_a_label_value(stack):
    for module, port in stack.metrics_ports.items():
        text = scrape(port)
        for (name, labels), _ in samples(text).items():
            for key, value in labels:
                assert GRAPH not in value and OTHER not in value and "graphs/" not in value, (module, name, key)
        for subject_prefix in ("sec-metered", "sec-burst", "sec-noisy"):
            assert subject_prefix not in text, f"a principal is a label value on {module}"
