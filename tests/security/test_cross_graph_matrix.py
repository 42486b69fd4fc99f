"""Graph isolation over the wire: a principal of graph A (every scope) attacks graph B through every
RPC of both services and every way each RPC names a graph — names, parents, batch members, edge
endpoints, traversal starts, path ends, filters, page tokens and consistency tokens obtained on B.

Every attempt is PERMISSION_DENIED with reason GRAPH_ACCESS_DENIED; nothing of B (its hidden node,
property values, etags) appears in any response, message, detail or trailer; the answer about the
existing graph B equals the answer about a graph C that does not exist, apart from the name (so
existence does not leak); and B is unchanged afterwards (no partial write).

The matrix is generated from one table (RPC × vector): MATRIX_SIZE attempts on B plus a twin on C
for every vector that names the graph (token vectors have no twin: C has no tokens to steal)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.security.rpc_table import METHOD_SCOPES
from tests.security.support import (
    COMMAND_RPCS,
    QUERY_RPCS,
    Outcome,
    SecureStack,
    assert_refused,
    call,
    everything_visible,
    marker,
    mint,
    node,
    ok,
    request_id,
    schema,
    start_stack,
    stop_stack,
    watch,
)

pytestmark = [pytest.mark.security, pytest.mark.e2e]

SUFFIX = secrets.token_hex(4)
A = f"seca-{SUFFIX}"
B = f"secb-{SUFFIX}"
C = f"secc-{SUFFIX}"  # never created
ADMIN = "sec-matrix-admin"
ATTACKER = "sec-matrix-attacker"
HIDDEN = f"bhidden-{SUFFIX}"  # a node of B the attacker never names: it must never surface


def gname(graph: str) -> str:
    return f"graphs/{graph}"


def nname(graph: str, node_id: str) -> str:
    return f"graphs/{graph}/nodes/{node_id}"


@dataclass
class World:
    stack: SecureStack
    admin: str
    attacker: str
    b_consistency: str = ""
    b_nodes_page_token: str = ""
    b_edges_page_token: str = ""
    b_markers: tuple[str, ...] = ()
    b_etags: tuple[str, ...] = ()
    b_snapshot: Any = None
    b_last_position: int = 0
    a_last_position: int = 0
    a_snapshot: Any = None


@dataclass(frozen=True)
class Vector:
    rpc: str
    vector: str
    # (world, target graph id) → request; target is B, or C for the twin
    build: Callable[[World, str], Any]
    # True: the attack is a token obtained on B (no twin on C)
    stolen_token: bool = False

    @property
    def id(self) -> str:
        return f"{self.rpc}.{self.vector}"


def _c(world: World) -> pb.ReadConsistency:
    return pb.ReadConsistency(at_least_token=world.b_consistency)


def _edge(source: str, target: str) -> pb.Edge:
    return pb.Edge(source=source, type="follows", target=target)


def _update(t: str) -> cmd.UpdateNodeOperation:
    return cmd.UpdateNodeOperation(node=pb.Node(name=nname(t, "b1"), type="User",
                                                properties={"secret": pb.PropertyValue(string_value="overwritten")}),
                                   update_mask=field_mask_pb2.FieldMask(paths=["properties.secret"]))


def _batch(ops: list[cmd.BatchWriteOperation], parent: str = A) -> cmd.BatchWriteRequest:
    return cmd.BatchWriteRequest(parent=gname(parent), operations=ops, request_id=request_id())


def _op(**kwargs: Any) -> cmd.BatchWriteOperation:
    return cmd.BatchWriteOperation(**kwargs)


MATRIX: tuple[Vector, ...] = (
    # ---- GraphCommandService
    Vector("ApplySchema", "graph", lambda w, t: cmd.ApplySchemaRequest(
        graph=gname(t), schema=schema(), expected_version=1, request_id=request_id())),
    Vector("CreateNode", "parent", lambda w, t: cmd.CreateNodeRequest(
        parent=gname(t), node_id="intruder", node=node("User", name="intruder"), request_id=request_id())),
    Vector("UpdateNode", "node.name", lambda w, t: cmd.UpdateNodeRequest(
        node=_update(t).node, update_mask=_update(t).update_mask, request_id=request_id())),
    Vector("DeleteNode", "name", lambda w, t: cmd.DeleteNodeRequest(name=nname(t, "b1"), request_id=request_id())),
    Vector("AddEdge", "parent", lambda w, t: cmd.AddEdgeRequest(
        parent=gname(t), edge=_edge(nname(t, "b2"), nname(t, "b1")), request_id=request_id())),
    Vector("AddEdge", "edge.source", lambda w, t: cmd.AddEdgeRequest(
        parent=gname(A), edge=_edge(nname(t, "b1"), nname(A, "a1")), request_id=request_id())),
    Vector("AddEdge", "edge.target", lambda w, t: cmd.AddEdgeRequest(
        parent=gname(A), edge=_edge(nname(A, "a1"), nname(t, "b1")), request_id=request_id())),
    Vector("RemoveEdge", "parent", lambda w, t: cmd.RemoveEdgeRequest(
        parent=gname(t), source=nname(t, "b1"), type="follows", target=nname(t, "b2"), request_id=request_id())),
    Vector("RemoveEdge", "source", lambda w, t: cmd.RemoveEdgeRequest(
        parent=gname(A), source=nname(t, "b1"), type="follows", target=nname(A, "a1"), request_id=request_id())),
    Vector("RemoveEdge", "target", lambda w, t: cmd.RemoveEdgeRequest(
        parent=gname(A), source=nname(A, "a1"), type="follows", target=nname(t, "b1"), request_id=request_id())),
    Vector("BatchWrite", "parent", lambda w, t: _batch([_op(create_node=cmd.CreateNodeOperation(
        node_id="intruder", node=node("User", name="intruder")))], parent=t)),
    Vector("BatchWrite", "update_node.name", lambda w, t: _batch([_op(update_node=_update(t))])),
    Vector("BatchWrite", "delete_node.name", lambda w, t: _batch([_op(delete_node=cmd.DeleteNodeOperation(
        name=nname(t, "b1")))])),
    Vector("BatchWrite", "add_edge.source", lambda w, t: _batch([_op(add_edge=cmd.AddEdgeOperation(
        edge=_edge(nname(t, "b1"), nname(A, "a1"))))])),
    Vector("BatchWrite", "add_edge.target", lambda w, t: _batch([_op(add_edge=cmd.AddEdgeOperation(
        edge=_edge(nname(A, "a1"), nname(t, "b1"))))])),
    Vector("BatchWrite", "remove_edge.source", lambda w, t: _batch([_op(remove_edge=cmd.RemoveEdgeOperation(
        source=nname(t, "b1"), type="follows", target=nname(A, "a1")))])),
    Vector("BatchWrite", "remove_edge.target", lambda w, t: _batch([_op(remove_edge=cmd.RemoveEdgeOperation(
        source=nname(A, "a1"), type="follows", target=nname(t, "b1")))])),
    # a valid write on A first, then one on B: nothing of the batch may land anywhere
    Vector("BatchWrite", "mixed_a_then_b", lambda w, t: _batch([
        _op(create_node=cmd.CreateNodeOperation(node_id="mixed", node=node("User", name="mixed"))),
        _op(update_node=_update(t))])),
    # ---- GraphQueryService
    Vector("GetSchema", "graph", lambda w, t: q.GetSchemaRequest(graph=gname(t))),
    Vector("GetSchema", "consistency_token", lambda w, t: q.GetSchemaRequest(graph=gname(A), consistency=_c(w)),
           stolen_token=True),
    Vector("GetNode", "name", lambda w, t: q.GetNodeRequest(name=nname(t, "b1"))),
    Vector("GetNode", "consistency_token", lambda w, t: q.GetNodeRequest(name=nname(A, "a1"), consistency=_c(w)),
           stolen_token=True),
    Vector("BatchGetNodes", "parent", lambda w, t: q.BatchGetNodesRequest(
        parent=gname(t), names=[nname(t, "b1"), nname(t, "b2")], view=q.NODE_VIEW_FULL)),
    Vector("BatchGetNodes", "names_member", lambda w, t: q.BatchGetNodesRequest(
        parent=gname(A), names=[nname(A, "a1"), nname(t, "b1")], view=q.NODE_VIEW_FULL)),
    Vector("BatchGetNodes", "consistency_token", lambda w, t: q.BatchGetNodesRequest(
        parent=gname(A), names=[nname(A, "a1")], consistency=_c(w)), stolen_token=True),
    Vector("GetEdge", "parent", lambda w, t: q.GetEdgeRequest(
        parent=gname(t), source=nname(t, "b1"), type="follows", target=nname(t, "b2"))),
    Vector("GetEdge", "source", lambda w, t: q.GetEdgeRequest(
        parent=gname(A), source=nname(t, "b1"), type="follows", target=nname(A, "a1"))),
    Vector("GetEdge", "target", lambda w, t: q.GetEdgeRequest(
        parent=gname(A), source=nname(A, "a1"), type="follows", target=nname(t, "b1"))),
    Vector("GetEdge", "consistency_token", lambda w, t: q.GetEdgeRequest(
        parent=gname(A), source=nname(A, "a1"), type="follows", target=nname(A, "a2"), consistency=_c(w)),
           stolen_token=True),
    Vector("CountEdges", "name", lambda w, t: q.CountEdgesRequest(
        name=nname(t, "b1"), edge_type="follows", direction=pb.DIRECTION_OUT)),
    Vector("CountEdges", "consistency_token", lambda w, t: q.CountEdgesRequest(
        name=nname(A, "a1"), edge_type="follows", direction=pb.DIRECTION_OUT, consistency=_c(w)), stolen_token=True),
    Vector("ListEdges", "name", lambda w, t: q.ListEdgesRequest(
        name=nname(t, "b1"), direction=pb.DIRECTION_OUT, include_neighbors=True, view=q.NODE_VIEW_FULL)),
    Vector("ListEdges", "page_token", lambda w, t: q.ListEdgesRequest(
        name=nname(A, "a1"), direction=pb.DIRECTION_OUT, page_size=1, page_token=w.b_edges_page_token),
           stolen_token=True),
    Vector("ListEdges", "consistency_token", lambda w, t: q.ListEdgesRequest(
        name=nname(A, "a1"), direction=pb.DIRECTION_OUT, consistency=_c(w)), stolen_token=True),
    Vector("ListNodes", "parent", lambda w, t: q.ListNodesRequest(parent=gname(t), type="User")),
    # probes B's data by a value: the answer must not depend on whether it matches
    Vector("ListNodes", "filter", lambda w, t: q.ListNodesRequest(
        parent=gname(t), type="User", filter=f'secret = "{w.b_markers[0]}"', explain=True)),
    Vector("ListNodes", "page_token", lambda w, t: q.ListNodesRequest(
        parent=gname(A), type="User", page_size=1, page_token=w.b_nodes_page_token), stolen_token=True),
    Vector("ListNodes", "consistency_token", lambda w, t: q.ListNodesRequest(
        parent=gname(A), type="User", consistency=_c(w)), stolen_token=True),
    Vector("Traverse", "start", lambda w, t: q.TraverseRequest(
        start=nname(t, "b1"), steps=[q.TraversalStep(edge_type="follows", direction=pb.DIRECTION_OUT, repeat=True)],
        budget=q.TraversalBudget(max_depth=3), include_edges=True, view=q.NODE_VIEW_FULL)),
    Vector("Traverse", "consistency_token", lambda w, t: q.TraverseRequest(
        start=nname(A, "a1"), steps=[q.TraversalStep(edge_type="follows", direction=pb.DIRECTION_OUT)],
        consistency=_c(w)), stolen_token=True),
    Vector("FindPath", "source", lambda w, t: q.FindPathRequest(
        source=nname(t, "b1"), target=nname(A, "a1"), max_depth=3)),
    Vector("FindPath", "target", lambda w, t: q.FindPathRequest(
        source=nname(A, "a1"), target=nname(t, "b1"), max_depth=3)),
    Vector("FindPath", "consistency_token", lambda w, t: q.FindPathRequest(
        source=nname(A, "a1"), target=nname(A, "a2"), max_depth=3, consistency=_c(w)), stolen_token=True),
    Vector("WatchEvents", "parent", lambda w, t: q.WatchEventsRequest(parent=gname(t), after_position=0)),
)

MATRIX_SIZE = 44  # RPCs × vectors; the report quotes it (test_matrix_covers_every_rpc checks it)
TWINS = sum(1 for v in MATRIX if not v.stolen_token)


def _attempt(world: World, vector: Vector, target: str) -> tuple[Any, Outcome]:
    request = vector.build(world, target)
    if vector.rpc == "WatchEvents":
        return request, watch(world.stack, request, token=world.attacker, principal=ATTACKER, max_events=1,
                              timeout=10)
    return request, call(world.stack, vector.rpc, request, token=world.attacker, principal=ATTACKER)


def _snapshot(world: World, graph: str) -> dict[str, Any]:
    """Everything an admin can read of ``graph``, fully consistent: schema, nodes with etags,
    every node's edges, and the number of events in its log."""
    full = pb.ReadConsistency(fully_consistent=True)
    s = world.stack
    schema_resp = ok(call(s, "GetSchema", q.GetSchemaRequest(graph=gname(graph), consistency=full),
                          token=world.admin, principal=ADMIN, graph=graph))
    nodes = ok(call(s, "ListNodes", q.ListNodesRequest(parent=gname(graph), type="User", page_size=1000,
                                                       consistency=full), token=world.admin, principal=ADMIN,
                    graph=graph))
    edges = {}
    for n in nodes.nodes:
        listed = ok(call(s, "ListEdges", q.ListEdgesRequest(name=n.name, page_size=1000, consistency=full,
                                                            direction=pb.DIRECTION_OUT),
                         token=world.admin, principal=ADMIN, graph=graph))
        edges[n.name] = sorted((e.source, e.type, e.target) for e in listed.edges)
    return {"schema_version": schema_resp.schema.version,
            "nodes": sorted((n.name, n.etag, sorted((k, str(v)) for k, v in n.properties.items()))
                            for n in nodes.nodes),
            "edges": edges}


def _events(world: World, graph: str, after: int, count: int, timeout: float = 10) -> list[Any]:
    """The first ``count`` events of ``graph`` after ``after`` (the stream never ends by itself)."""
    events = watch(world.stack, q.WatchEventsRequest(parent=gname(graph), after_position=after),
                   token=world.admin, principal=ADMIN, max_events=count, timeout=timeout)
    assert events.error is None or events.code == grpc.StatusCode.DEADLINE_EXCEEDED, events.error
    return [e.event for e in events.response]


@pytest.fixture(scope="module")
def world(tmp_path_factory, suite_keys):
    stack = start_stack(tmp_path_factory, "matrix", suite_keys.env())
    w = World(stack, admin=mint(suite_keys, ADMIN, ["*"]), attacker=mint(suite_keys, ATTACKER, [A]))
    try:
        admin = dict(token=w.admin, principal=ADMIN)
        markers = []
        for graph, ids in ((A, ("a1", "a2")), (B, ("b1", "b2", HIDDEN))):
            ok(call(stack, "ApplySchema", cmd.ApplySchemaRequest(graph=gname(graph), schema=schema(),
                                                                 request_id=request_id()), graph=graph, **admin))
            for node_id in ids:
                value = marker(f"{graph[:4]}{node_id[:6]}")
                markers.append((graph, value))
                ok(call(stack, "CreateNode", cmd.CreateNodeRequest(
                    parent=gname(graph), node_id=node_id, node=node("User", name=marker("nm"), secret=value),
                    request_id=request_id()), graph=graph, **admin))
            last = None
            pairs = list(zip(ids, ids[1:])) + ([("b1", HIDDEN)] if graph == B else [])
            for src, dst in pairs:
                last = ok(call(stack, "AddEdge", cmd.AddEdgeRequest(
                    parent=gname(graph), edge=_edge(nname(graph, src), nname(graph, dst)), request_id=request_id()),
                    graph=graph, **admin))
            if graph == B:
                w.b_consistency = last.consistency_token
        w.b_markers = tuple(v for g, v in markers if g == B)
        full = pb.ReadConsistency(at_least_token=w.b_consistency)
        listed = ok(call(stack, "ListNodes", q.ListNodesRequest(parent=gname(B), type="User", page_size=1,
                                                                consistency=full), graph=B, **admin))
        w.b_nodes_page_token = listed.next_page_token
        edges = ok(call(stack, "ListEdges", q.ListEdgesRequest(name=nname(B, "b1"), page_size=1, consistency=full,
                                                               direction=pb.DIRECTION_OUT), graph=B, **admin))
        w.b_edges_page_token = edges.next_page_token
        assert w.b_nodes_page_token and w.b_edges_page_token
        w.b_snapshot = _snapshot(w, B)
        w.a_snapshot = _snapshot(w, A)
        w.b_etags = tuple(etag for _, etag, _ in w.b_snapshot["nodes"])
        # B's log: a schema, three nodes, three edges; A's: a schema, two nodes, one edge
        w.b_last_position = _events(w, B, 0, 7)[-1].position
        w.a_last_position = _events(w, A, 0, 4)[-1].position
        assert len(w.b_snapshot["nodes"]) == 3 and len(w.a_snapshot["nodes"]) == 2
        yield w
    finally:
        stop_stack(stack)


def _needles(world: World, request: Any) -> list[str]:
    """What of B the attacker must never see; minus what its own request carries."""
    sent = str(request)
    found = [HIDDEN, *world.b_markers, *world.b_etags]
    return [n for n in found if n and n not in sent]


def _normalised(outcome: Outcome, graph: str) -> str:
    text = everything_visible(outcome)
    for volatile in (outcome.x_request_id, outcome.trace_id):
        if volatile:
            text = text.replace(volatile, "<id>")
    text = text.replace(graph, "<graph>")
    # the status details are serialised with lengths: compare their decoded form only
    return "\n".join(line for line in text.splitlines() if not line.startswith("grpc-status-details-bin="))


def test_matrix_covers_every_rpc():
    rpcs = {v.rpc for v in MATRIX}
    served = {m.rsplit("/", 1)[1] for m in METHOD_SCOPES}
    assert rpcs == served == set(COMMAND_RPCS) | set(QUERY_RPCS)
    assert len({v.id for v in MATRIX}) == len(MATRIX) == MATRIX_SIZE
    print(f"\ncross-graph matrix: {len(rpcs)} RPCs, {MATRIX_SIZE} RPC×vector attempts on B, "
          f"{TWINS} twins on the missing graph C, {MATRIX_SIZE + TWINS} refused calls in all")


@pytest.mark.parametrize("vector", MATRIX, ids=[f"{i + 1:02d}-{v.id}" for i, v in enumerate(MATRIX)])
def test_principal_of_a_cannot_reach_b(world, vector):
    request, outcome = _attempt(world, vector, B)
    status = assert_refused(outcome, grpc.StatusCode.PERMISSION_DENIED, "GRAPH_ACCESS_DENIED")
    visible = everything_visible(outcome)
    leaks = [n for n in _needles(world, request) if n in visible]
    assert not leaks, f"{vector.id} leaked {leaks}: {visible}"
    assert not outcome.response, outcome.response  # a stream sent nothing before it ended
    if vector.stolen_token:
        # the token names B, the request names A: nothing of B but the refusal
        return
    twin_request, twin = _attempt(world, vector, C)
    assert_refused(twin, grpc.StatusCode.PERMISSION_DENIED, "GRAPH_ACCESS_DENIED")
    assert _normalised(outcome, B) == _normalised(twin, C), "B's existence shows: the answers differ"
    assert status.message.replace(B, "<graph>") == rich_status_message(twin).replace(C, "<graph>")


def rich_status_message(outcome: Outcome) -> str:
    return outcome.rich().message


def test_b_and_a_unchanged_after_the_matrix(world):
    # runs after the matrix (file order): no attempt wrote anything, not even part of a batch
    assert _snapshot(world, B) == world.b_snapshot
    after_a = _snapshot(world, A)
    assert after_a == world.a_snapshot
    assert not any(re.search(r"/nodes/(mixed|intruder)\b", name) for name, _, _ in after_a["nodes"])
    # and neither log grew: the stream has nothing after the last event of the set-up
    assert _events(world, B, world.b_last_position, 1, timeout=1.5) == []
    assert _events(world, A, world.a_last_position, 1, timeout=1.5) == []
