"""Authorization (issue 8): the RPC→scope table, the graphs a request touches, the scope and graph
checks, and — over real in-process gRPC servers — that a request about another graph is
PERMISSION_DENIED before validation and before any handler could say whether that graph exists."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from command_service.app.consistency import SignedConsistencyTokens
from domain.errors import PermissionDenied, Reason, Unauthenticated
from edgewise.graph.v1 import command_service_pb2 as c
from edgewise.graph.v1 import command_service_pb2_grpc as cg
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as r
from infrastructure.grpc.authz import AuthorizationInterceptor, authorize
from infrastructure.grpc.chain import CHAIN, ChainInputs, chain_names
from infrastructure.grpc.context import RequestContext, current_facts, request_scope
from infrastructure.grpc.interceptors import _drain, _WrappingInterceptor
from infrastructure.grpc.server import COMMAND_SERVICE_NAME, EDGEWISE_METHODS, start_server
from infrastructure.security.graphs import RESOURCE_NAME_FIELDS, TOKEN_FIELDS, graphs_touched
from infrastructure.security.principal import SCOPE_READ, SCOPE_SCHEMA, SCOPE_WRITE, SCOPES, Principal
from infrastructure.security.rpc_table import METHOD_SCOPES
from infrastructure.tokens import TokenSigner, peek_graphs
from query_service.app.paging import PageTokens
from tests.command_samples import apply_sample_schema, user
from tests.fakes import InMemoryWriteStore
from tests.query_support import SECRET, Events, served_query_stub

CMD = "/edgewise.graph.v1.GraphCommandService/"
QRY = "/edgewise.graph.v1.GraphQueryService/"
SIGNER = TokenSigner(SECRET)
ALL_SCOPES = frozenset(SCOPES)
ALICE = Principal(subject="alice", graphs=("a",), scopes=ALL_SCOPES)
EVERYONE = Principal(subject="root", graphs=("*",), scopes=ALL_SCOPES)
REQUEST_ID = "authz-test-request"


def page_token(graph: str) -> str:
    return PageTokens(SIGNER).issue("ListNodes", {"graph": graph}, [1], graph=graph)


def consistency_token(graph: str) -> str:
    return SignedConsistencyTokens(SIGNER).issue({"0": 1}, [graph])


# --- the table ---------------------------------------------------------------------------------


def test_the_table_names_every_method_of_both_services_and_nothing_else():
    served = {f"/{service}/{method}" for service, methods in EDGEWISE_METHODS.items() for method in methods}
    assert set(METHOD_SCOPES) == served
    assert set(METHOD_SCOPES.values()) <= set(SCOPES)


def test_authorization_sits_after_storage_cost_and_before_validation():
    names = chain_names()
    assert names.index("storage_cost") < names.index("authorization") < names.index("validation")
    if "authentication" in names:
        assert names.index("authentication") < names.index("authorization")


# --- graphs_touched: one request about graph "a" per method, B planted in every place ------------

BASE: dict[str, Message] = {
    CMD + "ApplySchema": c.ApplySchemaRequest(graph="graphs/a"),
    CMD + "CreateNode": c.CreateNodeRequest(parent="graphs/a"),
    CMD + "UpdateNode": c.UpdateNodeRequest(node=r.Node(name="graphs/a/nodes/n")),
    CMD + "DeleteNode": c.DeleteNodeRequest(name="graphs/a/nodes/n"),
    CMD + "AddEdge": c.AddEdgeRequest(parent="graphs/a"),
    CMD + "RemoveEdge": c.RemoveEdgeRequest(parent="graphs/a"),
    CMD + "BatchWrite": c.BatchWriteRequest(parent="graphs/a"),
    QRY + "GetSchema": q.GetSchemaRequest(graph="graphs/a"),
    QRY + "GetNode": q.GetNodeRequest(name="graphs/a/nodes/n"),
    QRY + "BatchGetNodes": q.BatchGetNodesRequest(parent="graphs/a"),
    QRY + "GetEdge": q.GetEdgeRequest(parent="graphs/a"),
    QRY + "CountEdges": q.CountEdgesRequest(name="graphs/a/nodes/n"),
    QRY + "ListEdges": q.ListEdgesRequest(name="graphs/a/nodes/n"),
    QRY + "ListNodes": q.ListNodesRequest(parent="graphs/a"),
    QRY + "Traverse": q.TraverseRequest(start="graphs/a/nodes/n"),
    QRY + "FindPath": q.FindPathRequest(source="graphs/a/nodes/n"),
    QRY + "WatchEvents": q.WatchEventsRequest(parent="graphs/a"),
}

# String fields that never name a graph: identifiers inside the graph, types, filters, etags.
# A string field added to a request later must be put here or be a reference field
# (infrastructure.security.graphs) — test_every_string_field_of_every_request_is_classified.
NOT_REFERENCES = frozenset({
    "request_id", "etag", "node_id", "type", "edge_type", "edge_types", "filter", "order_by", "node_filter",
    "projected", "source_type", "target_type", "inverse_name",
})
# Schema's NodeType/EdgeType/PropertyDefinition ``name`` is a type or property name, read as a
# resource name anyway (a value starting with graphs/ is refused by validation whatever it means).


def _is_data(descriptor: Descriptor) -> bool:
    return (descriptor.GetOptions().map_entry or descriptor.full_name.startswith("google.protobuf.")
            or descriptor.full_name == "edgewise.graph.v1.PropertyValue")


def string_paths(descriptor: Descriptor, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every string field reachable from ``descriptor`` (not into property values)."""
    out: list[tuple[str, ...]] = []
    for field in descriptor.fields:
        path = prefix + (field.name,)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if not _is_data(field.message_type):
                out += string_paths(field.message_type, path)
        elif field.type == FieldDescriptor.TYPE_STRING:
            out.append(path)
    return out


def plant(request: Message, path: tuple[str, ...], value: str) -> Message:
    """A copy of ``request`` with ``value`` set at ``path`` (a new element for repeated fields)."""
    out = type(request)()
    out.CopyFrom(request)
    target: Any = out
    for name in path[:-1]:
        field = target.DESCRIPTOR.fields_by_name[name]
        target = getattr(target, name).add() if field.is_repeated else getattr(target, name)
    field = target.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        getattr(target, path[-1]).append(value)
    else:
        setattr(target, path[-1], value)
    return out


def foreign_value(field_name: str) -> str:
    if field_name == "page_token":
        return page_token("b")
    if field_name == "at_least_token":
        return consistency_token("b")
    if field_name == "graph":
        return "graphs/b"
    return "graphs/b/nodes/x"


def reference_cases() -> list[tuple[str, tuple[str, ...]]]:
    cases = []
    for method, base in BASE.items():
        for path in string_paths(base.DESCRIPTOR):
            if path[-1] not in NOT_REFERENCES:
                cases.append((method, path))
    return cases


def test_every_request_type_has_a_base_request():
    assert set(BASE) == set(METHOD_SCOPES)
    for method, base in BASE.items():
        assert graphs_touched(method, base) == ["a"], method


def test_every_string_field_of_every_request_is_classified():
    known = {"graph"} | RESOURCE_NAME_FIELDS | TOKEN_FIELDS
    unknown = {(m, ".".join(p)) for m, base in BASE.items() for p in string_paths(base.DESCRIPTOR)
               if p[-1] not in known | NOT_REFERENCES}
    assert unknown == set(), "classify these fields: a reference field (graphs.py) or NOT_REFERENCES"


@pytest.mark.parametrize("method,path", reference_cases(), ids=lambda v: v if isinstance(v, str) else ".".join(v))
def test_a_foreign_graph_is_found_wherever_it_is_planted(method, path):
    touched = graphs_touched(method, plant(BASE[method], path, foreign_value(path[-1])))
    assert "b" in touched
    assert len(touched) == len(set(touched))
    # the request's own graph stays primary unless B was planted in the primary field itself
    assert touched[0] == ("b" if touched == ["b"] else "a")


# The places the issue names, spelled out (the parametrized test above covers them generically).
EXPLICIT = [
    (CMD + "CreateNode", c.CreateNodeRequest(parent="graphs/a", node=r.Node(name="graphs/b/nodes/x"))),
    (CMD + "UpdateNode", c.UpdateNodeRequest(node=r.Node(name="graphs/b/nodes/x"))),
    (CMD + "DeleteNode", c.DeleteNodeRequest(name="graphs/b/nodes/x")),
    (CMD + "AddEdge", c.AddEdgeRequest(parent="graphs/a", edge=r.Edge(source="graphs/a/nodes/n",
                                                                     target="graphs/b/nodes/x"))),
    (CMD + "AddEdge", c.AddEdgeRequest(parent="graphs/a", edge=r.Edge(source="graphs/b/nodes/x",
                                                                     target="graphs/a/nodes/n"))),
    (CMD + "RemoveEdge", c.RemoveEdgeRequest(parent="graphs/a", source="graphs/a/nodes/n",
                                             target="graphs/b/nodes/x")),
    (CMD + "BatchWrite", c.BatchWriteRequest(parent="graphs/a", operations=[
        c.BatchWriteOperation(create_node=c.CreateNodeOperation(node=r.Node(name="graphs/b/nodes/x")))])),
    (CMD + "BatchWrite", c.BatchWriteRequest(parent="graphs/a", operations=[
        c.BatchWriteOperation(update_node=c.UpdateNodeOperation(node=r.Node(name="graphs/b/nodes/x")))])),
    (CMD + "BatchWrite", c.BatchWriteRequest(parent="graphs/a", operations=[
        c.BatchWriteOperation(delete_node=c.DeleteNodeOperation(name="graphs/a/nodes/n")),
        c.BatchWriteOperation(delete_node=c.DeleteNodeOperation(name="graphs/b/nodes/x"))])),
    (CMD + "BatchWrite", c.BatchWriteRequest(parent="graphs/a", operations=[
        c.BatchWriteOperation(add_edge=c.AddEdgeOperation(edge=r.Edge(source="graphs/a/nodes/n",
                                                                      target="graphs/b/nodes/x")))])),
    (CMD + "BatchWrite", c.BatchWriteRequest(parent="graphs/a", operations=[
        c.BatchWriteOperation(remove_edge=c.RemoveEdgeOperation(source="graphs/b/nodes/x",
                                                                target="graphs/a/nodes/n"))])),
    (QRY + "GetSchema", q.GetSchemaRequest(graph="graphs/a", consistency=r.ReadConsistency(
        at_least_token=consistency_token("b")))),
    (QRY + "BatchGetNodes", q.BatchGetNodesRequest(parent="graphs/a", names=["graphs/a/nodes/n",
                                                                             "graphs/b/nodes/x"])),
    (QRY + "GetEdge", q.GetEdgeRequest(parent="graphs/a", source="graphs/a/nodes/n", target="graphs/b/nodes/x")),
    (QRY + "Traverse", q.TraverseRequest(start="graphs/b/nodes/x")),
    (QRY + "FindPath", q.FindPathRequest(source="graphs/a/nodes/n", target="graphs/b/nodes/x")),
    (QRY + "FindPath", q.FindPathRequest(source="graphs/b/nodes/x", target="graphs/a/nodes/n")),
    (QRY + "ListNodes", q.ListNodesRequest(parent="graphs/a", page_token=page_token("b"))),
    (QRY + "ListEdges", q.ListEdgesRequest(name="graphs/a/nodes/n", page_token=page_token("b"))),
    (QRY + "GetNode", q.GetNodeRequest(name="graphs/a/nodes/n", consistency=r.ReadConsistency(
        at_least_token=consistency_token("b")))),
    (QRY + "WatchEvents", q.WatchEventsRequest(parent="graphs/b")),
]


@pytest.mark.parametrize("method,request_", EXPLICIT, ids=[m.rsplit("/", 1)[1] for m, _ in EXPLICIT])
def test_the_named_attack_vectors(method, request_):
    assert "b" in graphs_touched(method, request_)
    with request_scope(RequestContext(request_id="x")):
        current_facts().principal = ALICE
        with pytest.raises(PermissionDenied) as err:
            authorize(method, request_)
    assert err.value.reason == Reason.GRAPH_ACCESS_DENIED
    assert err.value.metadata == {"graph": "b", "principal": "alice"}


def test_the_primary_graph_comes_first_and_each_graph_once():
    request = c.BatchWriteRequest(parent="graphs/a", operations=[
        c.BatchWriteOperation(add_edge=c.AddEdgeOperation(edge=r.Edge(source="graphs/c/nodes/1",
                                                                      target="graphs/a/nodes/2"))),
        c.BatchWriteOperation(remove_edge=c.RemoveEdgeOperation(source="graphs/b/nodes/1",
                                                                target="graphs/c/nodes/2"))])
    assert graphs_touched(CMD + "BatchWrite", request) == ["a", "c", "b"]
    # UpdateNode has no top-level graph field: the node's name is its graph
    assert graphs_touched(CMD + "UpdateNode", c.UpdateNodeRequest(node=r.Node(name="graphs/u/nodes/x"))) == ["u"]


def test_property_values_and_masks_are_data_never_references():
    props = {"graphs/b/nodes/k": r.PropertyValue(string_value="graphs/b/nodes/x")}
    requests = [
        (CMD + "CreateNode", c.CreateNodeRequest(parent="graphs/a", node=r.Node(type="T", properties=props))),
        (CMD + "UpdateNode", c.UpdateNodeRequest(node=r.Node(name="graphs/a/nodes/n", properties=props),
                                                 update_mask={"paths": ["graphs/b/nodes/x"]})),
        (CMD + "AddEdge", c.AddEdgeRequest(parent="graphs/a", edge=r.Edge(properties=props))),
        (CMD + "BatchWrite", c.BatchWriteRequest(parent="graphs/a", operations=[
            c.BatchWriteOperation(create_node=c.CreateNodeOperation(node=r.Node(properties=props))),
            c.BatchWriteOperation(add_edge=c.AddEdgeOperation(edge=r.Edge(properties=props)))])),
    ]
    for method, request in requests:
        assert graphs_touched(method, request) == ["a"], method


@pytest.mark.parametrize("method,path", [(m, p) for m, base in BASE.items() for p in string_paths(base.DESCRIPTOR)
                                         if p[-1] in NOT_REFERENCES],
                         ids=lambda v: v if isinstance(v, str) else ".".join(v))
def test_fields_that_are_not_references_are_not_read(method, path):
    assert graphs_touched(method, plant(BASE[method], path, "graphs/b/nodes/x")) == ["a"]


@pytest.mark.parametrize("value", ["b", "graphs/", "graphs//nodes/x", "graph/b", "", "nodes/x"])
def test_a_value_that_is_not_a_resource_name_names_no_graph(value):
    assert graphs_touched(QRY + "BatchGetNodes", q.BatchGetNodesRequest(parent="graphs/a", names=[value])) == ["a"]
    assert graphs_touched(QRY + "GetNode", q.GetNodeRequest(name=value)) == []


def test_resource_names_are_parsed_loosely():
    # anything after graphs/ up to the next slash is the graph, valid or not (validation comes later)
    assert graphs_touched(QRY + "GetNode", q.GetNodeRequest(name="graphs/B!/nodes/x")) == ["B!"]
    assert graphs_touched(QRY + "ListNodes", q.ListNodesRequest(parent="graphs/b/extra/parts")) == ["b"]
    assert graphs_touched(QRY + "GetSchema", q.GetSchemaRequest(graph="b")) == ["b"]  # a bare graph id


def test_a_client_stream_touches_nothing():
    async def requests():  # pragma: no cover - never iterated
        yield q.GetNodeRequest(name="graphs/b/nodes/x")

    assert graphs_touched(QRY + "GetNode", requests()) == []


# --- peek_graphs ---------------------------------------------------------------------------------


def test_peek_graphs_reads_the_unverified_payload():
    assert peek_graphs(page_token("b")) == ["b"]
    assert peek_graphs(consistency_token("b")) == ["b"]
    assert peek_graphs(TokenSigner(b"some-other-secret-0123456789").sign({"g": ["x", "y", "x"]})) == ["x", "y"]
    assert peek_graphs(SIGNER.sign({"p": {"0": 1}})) == []  # a token from before "g"


@pytest.mark.parametrize("garbage", ["", "x", ".", "!!!.!!!", "e30", "e30.x", "W10.x", "Ww.x",
                                     "eyJnIjogMX0.x", "eyJnIjogW251bGwsIDFdfQ.x", "W1tbW1tbW1tb" * 400 + ".x",
                                     "a" * 5000])
def test_peek_graphs_of_garbage_is_nothing(garbage):
    assert peek_graphs(garbage) == []


def test_tokens_name_their_graph_and_a_page_token_of_another_graph_does_not_read():
    tokens = PageTokens(SIGNER)
    token = tokens.issue("ListNodes", {"graph": "a"}, [3], graph="a")
    assert tokens.read(token, "ListNodes", {"graph": "a"}, graph="a") == [3]
    with pytest.raises(Exception) as err:
        tokens.read(token, "ListNodes", {"graph": "a"}, graph="b")
    assert getattr(err.value, "reason", None) == Reason.INVALID_PAGE_TOKEN
    old = SIGNER.sign({"m": "ListNodes", "h": "x", "c": [3]})  # issued before tokens named their graph
    with pytest.raises(Exception) as err:
        tokens.read(old, "ListNodes", {"graph": "a"}, graph="a")
    assert getattr(err.value, "reason", None) == Reason.INVALID_PAGE_TOKEN


# --- authorize: scopes, patterns, the chain's contract ------------------------------------------


def run_authorize(method: str, request: Any, principal: Principal | None) -> str:
    """The graph authorize() recorded for the access log (raises what authorize raises)."""
    with request_scope(RequestContext(request_id="x", method=method)):
        current_facts().principal = principal
        authorize(method, request)
        return current_facts().graph


@pytest.mark.parametrize("scopes", [
    {SCOPE_READ}, {SCOPE_WRITE}, {SCOPE_SCHEMA}, {SCOPE_READ, SCOPE_WRITE}, {SCOPE_WRITE, SCOPE_SCHEMA}, set(SCOPES),
    set(), {"graph.admin"}])
def test_scope_matrix(scopes):
    principal = Principal(subject="p", graphs=("a",), scopes=frozenset(scopes))
    for method, base in BASE.items():
        needed = METHOD_SCOPES[method]
        if needed in scopes:
            assert run_authorize(method, base, principal) == "a"
        else:
            with pytest.raises(PermissionDenied) as err:
                run_authorize(method, base, principal)
            assert err.value.reason == Reason.SCOPE_MISSING
            assert err.value.metadata == {"method": method, "required_scope": needed, "principal": "p"}


def test_read_only_write_only_and_schema_admin():
    reader = Principal(subject="r", graphs=("a",), scopes=frozenset({SCOPE_READ}))
    writer = Principal(subject="w", graphs=("a",), scopes=frozenset({SCOPE_WRITE}))
    for method in (CMD + "CreateNode", CMD + "BatchWrite", CMD + "ApplySchema"):
        with pytest.raises(PermissionDenied):
            run_authorize(method, BASE[method], reader)
    for method in (QRY + "GetNode", QRY + "ListNodes", QRY + "WatchEvents", QRY + "GetSchema"):
        with pytest.raises(PermissionDenied):
            run_authorize(method, BASE[method], writer)
    with pytest.raises(PermissionDenied):  # writing nodes is not changing the schema
        run_authorize(CMD + "ApplySchema", BASE[CMD + "ApplySchema"], writer)


def test_a_missing_scope_is_refused_before_the_graph_is_looked_at():
    reader = Principal(subject="r", graphs=("a",), scopes=frozenset({SCOPE_READ}))
    with pytest.raises(PermissionDenied) as err:
        run_authorize(CMD + "DeleteNode", c.DeleteNodeRequest(name="graphs/b/nodes/x"), reader)
    assert err.value.reason == Reason.SCOPE_MISSING


@pytest.mark.parametrize("patterns,graph,allowed", [
    (("a",), "a", True), (("a",), "ab", False), (("a",), "b", False),
    (("team-a-*",), "team-a-x", True), (("team-a-*",), "team-a-", True), (("team-a-*",), "team-b-x", False),
    (("team-a-*",), "team-a", False), (("team-a-*", "b"), "b", True), (("*",), "anything", True), ((), "a", False),
])
def test_graph_patterns(patterns, graph, allowed):
    principal = Principal(subject="p", graphs=patterns, scopes=ALL_SCOPES)
    request = q.GetNodeRequest(name=f"graphs/{graph}/nodes/n")
    if allowed:
        assert run_authorize(QRY + "GetNode", request, principal) == graph
    else:
        with pytest.raises(PermissionDenied) as err:
            run_authorize(QRY + "GetNode", request, principal)
        assert err.value.reason == Reason.GRAPH_ACCESS_DENIED


def test_no_principal_means_the_chain_is_mis_assembled():
    with pytest.raises(Unauthenticated) as err:
        run_authorize(QRY + "GetNode", BASE[QRY + "GetNode"], None)
    assert err.value.reason == Reason.TOKEN_MISSING


def test_open_and_unknown_methods_pass_untouched():
    for method in ("/grpc.health.v1.Health/Check", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                   "/edgewise.graph.v1.GraphQueryService/NoSuchMethod", "/nope/Nope"):
        assert run_authorize(method, q.GetNodeRequest(name="graphs/b/nodes/x"), None) == ""


def test_an_echoed_graph_is_clipped():
    with pytest.raises(PermissionDenied) as err:
        run_authorize(QRY + "GetNode", q.GetNodeRequest(name="graphs/" + "x" * 5000 + "/nodes/n"), ALICE)
    assert len(err.value.metadata["graph"]) < 100 and len(err.value.message) < 200


# --- in-process servers: a test interceptor stands in for authentication --------------------------

PRINCIPALS = {"alice": ALICE, "root": EVERYONE,
              "reader": Principal(subject="reader", graphs=("a",), scopes=frozenset({SCOPE_READ}))}


class PrincipalFromMetadata(_WrappingInterceptor):
    """Test-only, in authentication's place: the principal named by ``x-test-principal``."""

    @staticmethod
    def _set(context: Any) -> None:
        name = dict(context.invocation_metadata() or ()).get("x-test-principal", "alice")
        current_facts().principal = PRINCIPALS[name]

    async def around_unary(self, method, behavior, request, context):
        self._set(context)
        return await behavior(request, context)

    async def around_stream(self, method, behavior, request, context):
        self._set(context)
        async for item in _drain(behavior, request, context):
            yield item


def chain_for_tests() -> list[Any]:
    """The configured chain with the test principal in place of authentication."""
    out: list[Any] = []
    for name, factory in CHAIN:
        if name == "authentication":
            continue
        built = factory(ChainInputs())
        if isinstance(built, AuthorizationInterceptor):
            out.append(PrincipalFromMetadata())
        if built is not None:
            out.append(built)
    return out


def md(principal: str = "alice") -> tuple[tuple[str, str], ...]:
    return (("x-test-principal", principal), ("x-request-id", REQUEST_ID))


def denial(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], bytes]:
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    status = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason, dict(info.metadata), status.SerializeToString(deterministic=True)


@asynccontextmanager
async def command_server(*graphs: str) -> AsyncIterator[Any]:
    from command_service.bootstrap import build_for_tests
    from command_service.entrypoints.grpc.servicer import registrar

    app = build_for_tests(InMemoryWriteStore())
    for graph in graphs:
        await app.dispatch(apply_sample_schema(graph=graph))
        await app.dispatch(user("x", graph=graph))
    running = await start_server(address="127.0.0.1:0", register=registrar(app.dispatch),
                                 service_names=[COMMAND_SERVICE_NAME], interceptors=chain_for_tests())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield cg.GraphCommandServiceStub(channel)
    finally:
        await channel.close()
        await running.stop(0)
        await app.close()


@asynccontextmanager
async def query_server(path: str, *graphs: str) -> AsyncIterator[Any]:
    events = []
    for graph in graphs:
        ev = Events(graph)
        events += [ev.schema(), ev.create("x", name="x"), ev.create("y", name="y"), ev.link("x", "y")]
    async with served_query_stub(path, events, interceptors=chain_for_tests()) as stub:
        yield stub


async def test_an_invalid_request_about_another_graph_is_permission_denied_not_invalid(tmp_path):
    async with command_server("a", "b") as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:  # no node type, a bad request id: invalid twice over
            await stub.CreateNode(c.CreateNodeRequest(parent="graphs/b", node=r.Node(), request_id="nope"),
                                  metadata=md())
        assert denial(err.value)[:2] == ("GRAPH_ACCESS_DENIED", {"graph": "b", "principal": "alice",
                                                                 "request_id": REQUEST_ID, "trace_id": REQUEST_ID})
        with pytest.raises(grpc.aio.AioRpcError) as err:  # the same request about "a" is invalid
            await stub.CreateNode(c.CreateNodeRequest(parent="graphs/a", node=r.Node(), request_id="nope"),
                                  metadata=md())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:  # a batch member in "b"
            await stub.BatchWrite(c.BatchWriteRequest(parent="graphs/a", operations=[
                c.BatchWriteOperation(remove_edge=c.RemoveEdgeOperation(
                    source="graphs/a/nodes/x", type="follows", target="graphs/b/nodes/x"))]), metadata=md())
        assert denial(err.value)[0] == "GRAPH_ACCESS_DENIED"
        with pytest.raises(grpc.aio.AioRpcError) as err:  # the scope comes first
            await stub.DeleteNode(c.DeleteNodeRequest(name="graphs/a/nodes/x"), metadata=md("reader"))
        assert denial(err.value)[0] == "SCOPE_MISSING"
        deleted = await stub.DeleteNode(c.DeleteNodeRequest(name="graphs/a/nodes/x"), metadata=md())
        assert deleted.consistency_token and peek_graphs(deleted.consistency_token) == ["a"]

    path = str(tmp_path / "q.db")
    async with query_server(path, "a", "b") as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:  # an invalid node id in "b"
            await stub.GetNode(q.GetNodeRequest(name="graphs/b/nodes/!!"), metadata=md())
        assert denial(err.value)[0] == "GRAPH_ACCESS_DENIED"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetNode(q.GetNodeRequest(name="graphs/a/nodes/!!"), metadata=md())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tokens_of_another_graph_are_refused_on_a_request_about_ones_own(tmp_path):
    async with query_server(str(tmp_path / "q.db"), "a", "b") as stub:
        # real tokens of "b", obtained by a principal who may read every graph
        b_page = await stub.ListNodes(q.ListNodesRequest(parent="graphs/b", type="User", page_size=1),
                                      metadata=md("root"))
        assert b_page.next_page_token and peek_graphs(b_page.next_page_token) == ["b"]
        a_page = await stub.ListNodes(q.ListNodesRequest(parent="graphs/a", type="User", page_size=1),
                                      metadata=md())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListNodes(q.ListNodesRequest(parent="graphs/a", type="User", page_size=1,
                                                    page_token=b_page.next_page_token), metadata=md())
        assert denial(err.value)[:2] == ("GRAPH_ACCESS_DENIED", {"graph": "b", "principal": "alice",
                                                                 "request_id": REQUEST_ID, "trace_id": REQUEST_ID})
        # alice's own token reads on
        second = await stub.ListNodes(q.ListNodesRequest(parent="graphs/a", type="User", page_size=1,
                                                         page_token=a_page.next_page_token), metadata=md())
        assert [n.name for n in second.nodes] == ["graphs/a/nodes/y"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListEdges(q.ListEdgesRequest(name="graphs/a/nodes/x", direction=r.DIRECTION_OUT,
                                                    page_token=b_page.next_page_token), metadata=md())
        assert denial(err.value)[0] == "GRAPH_ACCESS_DENIED"
        for token in (consistency_token("b"), SIGNER.sign({"p": {"0": 10**9}, "g": ["a", "b"]})):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetNode(q.GetNodeRequest(name="graphs/a/nodes/x", consistency=r.ReadConsistency(
                    at_least_token=token)), metadata=md())
            assert denial(err.value)[0] == "GRAPH_ACCESS_DENIED"
        got = await stub.GetNode(q.GetNodeRequest(name="graphs/a/nodes/x", consistency=r.ReadConsistency(
            at_least_token=consistency_token("a"))), metadata=md())
        assert got.node.name == "graphs/a/nodes/x"
        with pytest.raises(grpc.aio.AioRpcError) as err:  # a stream is checked when it opens
            async for _ in stub.WatchEvents(q.WatchEventsRequest(parent="graphs/b"), metadata=md()):
                pass  # pragma: no cover
        assert denial(err.value)[0] == "GRAPH_ACCESS_DENIED"


async def test_the_refusal_is_the_same_whether_the_graph_exists_or_not(tmp_path):
    """Byte for byte: same code, message and details for a foreign graph "b" that exists and one
    that does not (the caller's own name for it is all it repeats)."""
    statuses: dict[bool, list[tuple[str, dict[str, str], bytes]]] = {}
    for exists in (True, False):
        graphs = ("a", "b") if exists else ("a",)
        got = []
        async with query_server(str(tmp_path / f"q-{exists}.db"), *graphs) as stub:
            calls = [
                stub.GetNode(q.GetNodeRequest(name="graphs/b/nodes/x"), metadata=md()),
                stub.GetSchema(q.GetSchemaRequest(graph="graphs/b"), metadata=md()),
                stub.ListNodes(q.ListNodesRequest(parent="graphs/b", type="User"), metadata=md()),
                stub.Traverse(q.TraverseRequest(start="graphs/b/nodes/x"), metadata=md()),
            ]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                got.append(denial(err.value))
        async with command_server(*graphs) as stub:
            for call in (stub.DeleteNode(c.DeleteNodeRequest(name="graphs/b/nodes/x"), metadata=md()),
                         stub.CreateNode(c.CreateNodeRequest(parent="graphs/b", node=r.Node(type="User")),
                                         metadata=md())):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                got.append(denial(err.value))
        statuses[exists] = got
    assert statuses[True] == statuses[False]
    for reason, metadata, _ in statuses[True]:
        assert reason == "GRAPH_ACCESS_DENIED" and metadata["graph"] == "b"
