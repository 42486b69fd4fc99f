"""The logs of every stack the security suite started: no token (nor a token's signature), no
secret, no property value — and every call the suite made has its one access line with method,
code, duration, principal, graph, the caller's x-request-id, the command's idempotency request_id
and the trace id.

This file runs last (pytest runs tests/security's files in name order and every stack is module
scoped, so the others are stopped and their logs complete by now). It first drives a stack of its
own through the calls most likely to leak (bad tokens, property values in writes, filters and
invalid requests), so it proves something when it runs alone too."""

from __future__ import annotations

import secrets
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from tests.security.support import (
    COMMAND_RPCS,
    REGISTRY,
    CallRecord,
    SecureStack,
    access_lines,
    call,
    full_method,
    graph_name_of,
    hand_signed,
    claims,
    marker,
    mint,
    node,
    ok,
    remember_token,
    request_id,
    schema,
    start_stack,
    stop_stack,
    watch,
)

pytestmark = [pytest.mark.security, pytest.mark.e2e]

GRAPH = f"secs-{secrets.token_hex(4)}"
ADMIN = "sec-scan-admin"
REQUIRED_FIELDS = ("grpc_method", "grpc_code", "duration_ms", "principal", "graph", "x_request_id")
# a stream the client gave up on (deadline) ends on the server as CANCELLED or DEADLINE_EXCEEDED
SAME_CODE = {"DEADLINE_EXCEEDED": {"DEADLINE_EXCEEDED", "CANCELLED"}}


def _leaky_calls(stack: SecureStack, keys: Any) -> list[str]:
    """Calls whose requests or credentials carry what must never be logged; the unexpected
    outcomes (checked by a test of their own, so the scan runs whatever they were)."""
    wrong: list[str] = []

    def expect(outcome: Any, code: grpc.StatusCode) -> None:
        if outcome.code != code:
            wrong.append(f"{outcome.rpc}: {outcome.code.name}, expected {code.name}")

    admin = mint(keys, ADMIN, ["*"])
    as_admin = dict(token=admin, principal=ADMIN, graph=GRAPH)
    ok(call(stack, "ApplySchema", cmd.ApplySchemaRequest(graph=f"graphs/{GRAPH}", schema=schema(),
                                                         request_id=request_id()), **as_admin))
    secret_value = marker("scan")
    ok(call(stack, "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{GRAPH}", node_id="n1",
                                                       node=node("User", name=marker("sn"), secret=secret_value),
                                                       request_id=request_id()), **as_admin))
    ok(call(stack, "UpdateNode", cmd.UpdateNodeRequest(
        node=pb.Node(name=f"graphs/{GRAPH}/nodes/n1", type="User",
                     properties={"secret": pb.PropertyValue(string_value=marker("upd"))}),
        update_mask=field_mask_pb2.FieldMask(paths=["properties.secret"]), request_id=request_id()), **as_admin))
    ok(call(stack, "BatchWrite", cmd.BatchWriteRequest(parent=f"graphs/{GRAPH}", request_id=request_id(), operations=[
        cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(
            node_id="n2", node=node("User", name=marker("bw"), secret=marker("bws"))))]), **as_admin))
    ok(call(stack, "ListNodes", q.ListNodesRequest(parent=f"graphs/{GRAPH}", type="User",
                                                   filter=f'secret = "{secret_value}"',
                                                   consistency=pb.ReadConsistency(fully_consistent=True)),
            **as_admin))
    # invalid requests carrying values: the error may name the field, never log the value
    for bad in (node("User", name=marker("bad"), nosuch=marker("nosuch")), node("User", name=12345678901)):
        refused = call(stack, "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{GRAPH}", node_id="n3", node=bad,
                                                                  request_id=request_id()), token=admin,
                       principal=ADMIN)
        expect(refused, grpc.StatusCode.INVALID_ARGUMENT)
    expect(call(stack, "ListNodes", q.ListNodesRequest(parent=f"graphs/{GRAPH}", type="User",
                                                       filter=f'nosuch ~ "{marker("flt")}" ((('),
                token=admin, principal=ADMIN), grpc.StatusCode.INVALID_ARGUMENT)
    # credentials that fail: none of them may be logged
    reader = mint(keys, "sec-scan-reader", [GRAPH], "graph.read")
    for header in (f"Bearer {marker('garbage')}",
                   f"Bearer {hand_signed({'alg': 'none', 'kid': keys.hs_kid}, claims('x', ['*']), None)}",
                   f"Bearer {mint(keys, ADMIN, ['*'], exp_in=-3600)}",
                   f"Bearer {remember_token(admin[:-4] + 'AAAA')}",
                   f"Basic {marker('basic')}"):
        refused = call(stack, "GetSchema", q.GetSchemaRequest(graph=f"graphs/{GRAPH}"), token=None,
                       metadata=[("authorization", header)])
        expect(refused, grpc.StatusCode.UNAUTHENTICATED)
    denied = call(stack, "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{GRAPH}", node_id="n4",
                                                             node=node("User", name=marker("den")),
                                                             request_id=request_id()),
                  token=reader, principal="sec-scan-reader")
    expect(denied, grpc.StatusCode.PERMISSION_DENIED)
    events = watch(stack, q.WatchEventsRequest(parent=f"graphs/{GRAPH}"), token=reader, principal="sec-scan-reader",
                   max_events=2)
    expect(events, grpc.StatusCode.OK)
    return wrong


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, suite_keys):
    stack = start_stack(tmp_path_factory, "logscan", suite_keys.env())
    try:
        wrong = _leaky_calls(stack, suite_keys)
    finally:
        stop_stack(stack)
    return list(REGISTRY.stacks), wrong


def test_the_leaky_calls_were_refused_as_expected(scanned):
    assert not scanned[1]


def _forbidden() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for token in REGISTRY.tokens:
        found.append(("token", token))
        signature = token.rsplit(".", 1)[-1]
        if len(signature) >= 16:
            found.append(("token signature", signature))
    found += [("secret", s) for s in REGISTRY.secrets]
    found += [("property value", m) for m in REGISTRY.markers]
    return found


def test_no_token_secret_or_property_value_in_any_log(scanned):
    scanned = scanned[0]
    forbidden = _forbidden()
    assert len(scanned) >= 1 and forbidden
    leaks = []
    for stack in scanned:
        for service, text in stack.logs().items():
            assert text, f"{stack.name}/{service} wrote no log"
            for kind, needle in forbidden:
                if needle in text:
                    line = next(ln for ln in text.splitlines() if needle in ln)
                    leaks.append(f"{stack.name}/{service}: a {kind}: {line[:300]}")
    print(f"\nscanned {sum(len(s.logs()) for s in scanned)} logs of {len(scanned)} stacks for "
          f"{len(REGISTRY.tokens)} tokens, {len(REGISTRY.secrets)} secrets, {len(REGISTRY.markers)} property values")
    assert not leaks, "\n".join(leaks[:20])


def _check_line(record: CallRecord, line: dict[str, Any]) -> list[str]:
    problems = []
    where = f"{record.stack.name} {record.rpc} {record.x_request_id}"
    missing = [f for f in REQUIRED_FIELDS if f not in line]
    if missing:
        problems.append(f"{where}: fields {missing} missing: {line}")
    if line.get("grpc_method") != full_method(record.rpc):
        problems.append(f"{where}: grpc_method {line.get('grpc_method')!r}")
    if line.get("grpc_code") not in SAME_CODE.get(record.code, {record.code}):
        problems.append(f"{where}: grpc_code {line.get('grpc_code')!r}, the client saw {record.code}")
    if not isinstance(line.get("duration_ms"), (int, float)) or line["duration_ms"] < 0:
        problems.append(f"{where}: duration_ms {line.get('duration_ms')!r}")
    if line.get("trace_id") != record.trace_id:
        problems.append(f"{where}: trace_id {line.get('trace_id')!r}, sent {record.trace_id}")
    if record.principal and line.get("principal") != record.principal:
        problems.append(f"{where}: principal {line.get('principal')!r}, expected {record.principal}")
    if record.code == "UNAUTHENTICATED" and not record.principal and line.get("principal"):
        problems.append(f"{where}: an unauthenticated call names principal {line.get('principal')!r}")
    if record.graph and graph_name_of(str(line.get("graph"))) != record.graph:
        problems.append(f"{where}: graph {line.get('graph')!r}, expected {record.graph}")
    if record.rpc in COMMAND_RPCS and record.idempotency_request_id and \
            line.get("idempotency_request_id") != record.idempotency_request_id:
        problems.append(f"{where}: idempotency_request_id {line.get('idempotency_request_id')!r}, "
                        f"sent {record.idempotency_request_id}")
    return problems


def test_every_call_has_its_access_line(scanned):
    scanned = scanned[0]
    by_log: dict[tuple[int, str], dict[str, list[dict[str, Any]]]] = {}
    problems: list[str] = []
    checked = 0
    for record in REGISTRY.calls:
        if record.stack not in scanned:
            continue
        key = (id(record.stack), record.rpc in COMMAND_RPCS and "command" or "query")
        if key not in by_log:
            index: dict[str, list[dict[str, Any]]] = {}
            for line in access_lines(record.stack.log_path(record.rpc).read_text(errors="replace")):
                index.setdefault(str(line.get("x_request_id")), []).append(line)
            by_log[key] = index
        lines = by_log[key].get(record.x_request_id, [])
        if len(lines) != 1:
            problems.append(f"{record.stack.name} {record.rpc} {record.x_request_id} ({record.code}): "
                            f"{len(lines)} access lines")
            continue
        problems += _check_line(record, lines[0])
        checked += 1
    # and every access line of an Edgewise method carries the fields, whoever called
    for stack in scanned:
        for service, text in stack.logs().items():
            for line in access_lines(text):
                if str(line.get("grpc_method", "")).startswith("/edgewise."):
                    missing = [f for f in REQUIRED_FIELDS if f not in line]
                    if missing:
                        problems.append(f"{stack.name}/{service}: {missing} missing in {line}")
    print(f"\nchecked the access lines of {checked} calls")
    assert checked > 0
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:25])
