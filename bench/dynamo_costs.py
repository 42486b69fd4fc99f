"""What each RPC costs on DynamoDB, as the adapter measures it (issue 6's closing table).

    .venv/bin/python -m bench.dynamo_costs [--out PATH]

Starts moto's DynamoDB server on 127.0.0.1 (the local stand-in) with fresh tables and
both services on it (EDGEWISE_STORE=dynamodb), builds a graph through the public API —
a hub whose 3-hop OUT neighbourhood along ``follows`` is 1,110 users (10, 100, 1,000) —
and calls each RPC once with the query service's read cache off, reading the per-RPC cost the service
returns in trailing metadata (StorageCostInterceptor: DynamoDB calls per operation and
consumed capacity units, ReturnConsumedCapacity=TOTAL, summed per RPC).

moto reports consumed capacity for single-item calls and queries, and none for
transactions (their units show as 0 and are counted as unreported calls): the
capacity column is a lower bound on moto; the call counts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import grpc

from bench.stack import Stack
from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.grpc.interceptors import CAPACITY_UNITS_METADATA, STORAGE_CALLS_METADATA
from scripts.moto_server import MotoServer, create_tables_at

GRAPH = "costs"
PARENT = f"graphs/{GRAPH}"
EDGES_PER_BATCH = 16  # the most distinct-endpoint edges one TransactWriteItems holds (6 items each + 4)


def name(node: str) -> str:
    return f"{PARENT}/nodes/{node}"


def text(value: str) -> pb.PropertyValue:
    return pb.PropertyValue(string_value=value)


def schema() -> pb.Schema:
    P = pb.PropertyDefinition
    return pb.Schema(
        node_types=[pb.NodeType(name="User", properties=[P(name="name", kind=pb.PROPERTY_KIND_STRING, required=True)])],
        edge_types=[
            pb.EdgeType(name="follows", source_type="User", target_type="User",
                        cardinality=pb.CARDINALITY_MANY_TO_MANY, on_delete=pb.ON_DELETE_CASCADE),
            pb.EdgeType(name="friend", source_type="User", target_type="User", symmetric=True,
                        on_delete=pb.ON_DELETE_CASCADE),
        ])


def cost(call: grpc.Call) -> tuple[dict[str, int], float]:
    trailing = dict(call.trailing_metadata() or ())
    calls = {k: int(v) for k, v in (p.split("=") for p in trailing.get(STORAGE_CALLS_METADATA, "").split(",") if p)}
    return calls, float(trailing.get(CAPACITY_UNITS_METADATA, "0") or 0)


class Recorder:
    def __init__(self, stack: Stack) -> None:
        self.c = stack.commands
        self.q = stack.queries
        self.token = ""
        self.rows: list[tuple[str, dict[str, int], float, str]] = []

    def write(self, label: str | None, rpc: Callable[..., Any], request: Any) -> Any:
        response, call = rpc.with_call(request)
        self.token = getattr(response, "consistency_token", "") or self.token
        if label:
            self.rows.append((label, *cost(call), "OK"))
        return response

    def refused(self, label: str, rpc: Callable[..., Any], request: Any) -> None:
        try:
            rpc.with_call(request)
        except grpc.RpcError as err:
            self.rows.append((label, *cost(err), f"{err.code().name}: {err.details()[:90]}"))  # type: ignore[arg-type]
            return
        raise SystemExit(f"{label}: expected a refusal")

    def read(self, label: str, rpc: Callable[..., Any], request: Any, summary: Callable[[Any], str]) -> None:
        response, call = rpc.with_call(request)
        self.rows.append((label, *cost(call), summary(response)))

    def consistency(self) -> pb.ReadConsistency:
        return pb.ReadConsistency(at_least_token=self.token)


def batch(r: Recorder, ops: list[cmd.BatchWriteOperation], label: str | None = None) -> None:
    r.write(label, r.c.BatchWrite, cmd.BatchWriteRequest(parent=PARENT, operations=ops, request_id=str(uuid.uuid4())))


def follows_ops(pairs: list[tuple[str, str]]) -> list[cmd.BatchWriteOperation]:
    return [cmd.BatchWriteOperation(add_edge=cmd.AddEdgeOperation(edge=pb.Edge(
        source=name(s), type="follows", target=name(t)))) for s, t in pairs]


def build(r: Recorder) -> None:
    r.write(None, r.c.ApplySchema, cmd.ApplySchemaRequest(graph=PARENT, schema=schema(), request_id=str(uuid.uuid4())))
    levels = [["hub"], [f"a{i}" for i in range(10)], [f"b{i}" for i in range(100)], [f"c{i}" for i in range(1000)]]
    users = [u for level in levels for u in level] + ["x", "y", "fan"]
    for i in range(0, len(users), 50):
        batch(r, [cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(
            node_id=u, node=pb.Node(type="User", properties={"name": text(u)}))) for u in users[i:i + 50]])
    pairs = [(parent, child) for upper, lower in zip(levels, levels[1:])
             for k, parent in enumerate(upper) for child in lower[k * len(lower) // len(upper):
                                                                  (k + 1) * len(lower) // len(upper)]]
    pairs += [("fan", f"c{i}") for i in range(60)]  # a list longer than one ListEdges page
    for i in range(0, len(pairs), EDGES_PER_BATCH):
        batch(r, follows_ops(pairs[i:i + EDGES_PER_BATCH]))


def measure(r: Recorder) -> None:
    r.write("CreateNode", r.c.CreateNode, cmd.CreateNodeRequest(
        parent=PARENT, node_id="z", node=pb.Node(type="User", properties={"name": text("z")}),
        request_id=str(uuid.uuid4())))
    r.write("AddEdge with a mirror (symmetric `friend`)", r.c.AddEdge, cmd.AddEdgeRequest(
        parent=PARENT, edge=pb.Edge(source=name("x"), type="friend", target=name("y")), request_id=str(uuid.uuid4())))
    batch(r, follows_ops([("z", f"c{i}") for i in range(EDGES_PER_BATCH)]),
          f"BatchWrite of {EDGES_PER_BATCH} edges (one source)")
    r.refused("BatchWrite of 100 edges", r.c.BatchWrite, cmd.BatchWriteRequest(
        parent=PARENT, operations=follows_ops([("y", f"c{i}") for i in range(100)]), request_id=str(uuid.uuid4())))
    c = r.consistency()
    r.read("GetNode", r.q.GetNode, q.GetNodeRequest(name=name("hub"), consistency=c), lambda resp: resp.node.name)
    r.read("BatchGetNodes of 1,000", r.q.BatchGetNodes, q.BatchGetNodesRequest(
        parent=PARENT, names=[name(f"c{i}") for i in range(1000)], consistency=c), lambda resp: f"{len(resp.nodes)} nodes")
    r.read("ListEdges page of 50", r.q.ListEdges, q.ListEdgesRequest(
        name=name("fan"), edge_type="follows", direction=pb.DIRECTION_OUT, page_size=50, consistency=c),
        lambda resp: f"{len(resp.edges)} edges")
    steps = [q.TraversalStep(edge_type="follows", direction=pb.DIRECTION_OUT)] * 3
    r.read("Traverse 3 hops (NAMES) reaching 1,110", r.q.Traverse, q.TraverseRequest(
        start=name("hub"), steps=steps, budget=q.TraversalBudget(max_nodes=5000), view=q.NODE_VIEW_NAMES,
        consistency=c), lambda resp: f"{len(resp.nodes)} nodes, truncated={resp.truncated}")
    r.read("Traverse 3 hops (FULL)", r.q.Traverse, q.TraverseRequest(
        start=name("hub"), steps=steps, budget=q.TraversalBudget(max_nodes=5000), view=q.NODE_VIEW_FULL,
        consistency=c), lambda resp: f"{len(resp.nodes)} nodes")
    r.read("FindPath hub → c999 (3 hops)", r.q.FindPath, q.FindPathRequest(
        source=name("hub"), target=name("c999"), edge_types=["follows"], max_depth=4, consistency=c),
        lambda resp: f"found={resp.found}, {len(resp.node_names)} nodes")


def table(rows: list[tuple[str, dict[str, int], float, str]]) -> str:
    out = ["| RPC | DynamoDB calls | capacity units (moto) | result |", "|---|---|---:|---|"]
    for label, calls, units, result in rows:
        spelled = ", ".join(f"{op} {n}" for op, n in sorted(calls.items())) or "—"
        out.append(f"| {label} | {spelled} | {units:g} | {result} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    with MotoServer() as server, tempfile.TemporaryDirectory(prefix="edgewise-costs-") as work:
        prefix = f"costs-{uuid.uuid4().hex[:6]}-"
        asyncio.run(create_tables_at(server.endpoint, prefix=prefix))
        # the read cache off: the table shows what each RPC costs the store, not the cache
        env = {**server.service_env(prefix), "EDGEWISE_READ_CACHE_MB": "0"}
        with Stack(Path(work), env) as stack:
            r = Recorder(stack)
            build(r)
            measure(r)
    rendered = table(r.rows)
    print(rendered)
    if args.out:
        args.out.write_text(rendered + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
