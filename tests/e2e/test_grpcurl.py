"""The real grpcurl binary against both services: reflection, health, calls, errors."""

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(*args: str, data: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    assert GRPCURL, "grpcurl is not installed in the virtualenv"
    cmd = [GRPCURL, "-plaintext", "-max-time", "10"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("which", ["command_addr", "query_addr"])
def test_list_and_describe_both_services_on_either_port(stack, which):
    addr = getattr(stack, which)
    services = grpcurl(addr, "list").stdout.split()
    assert "edgewise.graph.v1.GraphCommandService" in services
    assert "edgewise.graph.v1.GraphQueryService" in services
    assert "grpc.health.v1.Health" in services
    described = grpcurl(addr, "describe", "edgewise.graph.v1.GraphQueryService").stdout
    assert "rpc Traverse" in described
    assert "rpc CreateNode" in grpcurl(addr, "describe", "edgewise.graph.v1.GraphCommandService").stdout
    assert "message Node" in grpcurl(addr, "describe", "edgewise.graph.v1.Node").stdout


def test_health_per_service(stack):
    out = grpcurl(stack.command_addr, "grpc.health.v1.Health/Check",
                  data={"service": "edgewise.graph.v1.GraphCommandService"}).stdout
    assert json.loads(out)["status"] == "SERVING"
    out = grpcurl(stack.query_addr, "grpc.health.v1.Health/Check",
                  data={"service": "edgewise.graph.v1.GraphQueryService"}).stdout
    assert json.loads(out)["status"] == "SERVING"


def test_walkthrough_with_grpcurl(stack):
    graph = f"graphs/curl-{uuid.uuid4().hex[:8]}"
    C = "edgewise.graph.v1.GraphCommandService"
    Q = "edgewise.graph.v1.GraphQueryService"
    schema = {"nodeTypes": [{"name": "User", "properties": [{"name": "name", "kind": "PROPERTY_KIND_STRING",
                                                             "required": True}]}],
              "edgeTypes": [{"name": "follows", "sourceType": "User", "targetType": "User",
                             "cardinality": "CARDINALITY_MANY_TO_MANY"}]}
    grpcurl(stack.command_addr, f"{C}/ApplySchema", data={"graph": graph, "schema": schema})
    for node_id in ("ada", "grace"):
        grpcurl(stack.command_addr, f"{C}/CreateNode", data={
            "parent": graph, "nodeId": node_id,
            "node": {"type": "User", "properties": {"name": {"stringValue": node_id.title()}}}})
    out = json.loads(grpcurl(stack.command_addr, f"{C}/AddEdge", data={
        "parent": graph, "edge": {"source": f"{graph}/nodes/ada", "type": "follows",
                                  "target": f"{graph}/nodes/grace"}}).stdout)
    token = out.get("consistencyToken") or out["consistency_token"]  # grpcurl 1.8 prints proto names
    listed = json.loads(grpcurl(stack.query_addr, f"{Q}/ListEdges", data={
        "name": f"{graph}/nodes/ada", "direction": "DIRECTION_OUT", "includeNeighbors": True,
        "consistency": {"atLeastToken": token}}).stdout)
    assert [e["target"] for e in listed["edges"]] == [f"{graph}/nodes/grace"]
    traversed = json.loads(grpcurl(stack.query_addr, f"{Q}/Traverse", data={
        "start": f"{graph}/nodes/ada", "steps": [{"edgeType": "follows", "direction": "DIRECTION_OUT"}],
        "budget": {"maxDepth": 2}}).stdout)
    assert f"{graph}/nodes/grace" in [n["name"] for n in traversed["nodes"]]

    bad = grpcurl(stack.command_addr, f"{C}/CreateNode", check=False, data={
        "parent": graph, "nodeId": "x", "node": {"type": "User", "properties": {"name": {"intValue": 3}}}})
    assert bad.returncode != 0
    assert "InvalidArgument" in bad.stderr or "INVALID_ARGUMENT" in bad.stderr
