"""The read cache through real processes: a second query process that does not project
(it tails the log to drop cache entries) never answers a read-your-writes query with a
stale entry, and the cache's hit ratio is on /metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.process import die_with_parent
from tests.e2e.conftest import GraphClient, prop
from tests.e2e.stack import ROOT, Service, Stack, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def replica(stack, tmp_path_factory):
    """A query process on the same file with the projection disabled, serving /metrics."""
    address, metrics_port = f"127.0.0.1:{free_port()}", free_port()
    env = {**stack.env, "EDGEWISE_QUERY_ADDR": address, "EDGEWISE_PROJECTOR_ENABLED": "false",
           "EDGEWISE_METRICS_PORT": str(metrics_port)}
    log = tmp_path_factory.mktemp("replica") / "query_replica.log"
    proc = subprocess.Popen([sys.executable, "-m", "query_service"], cwd=ROOT, env=env, preexec_fn=die_with_parent,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    svc = Service("query_replica", proc, address, log)
    try:
        Stack._wait_healthy(stack, svc)
        channel = grpc.insecure_channel(address)
        yield query_service_pb2_grpc.GraphQueryServiceStub(channel), metrics_port
        channel.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0, log.read_text()


def _update(graph: GraphClient, node_id: str, **props) -> str:
    node = pb.Node(name=graph.name(node_id))
    for k, v in props.items():
        node.properties[k].CopyFrom(prop(v))
    resp = graph.commands.UpdateNode(cmd.UpdateNodeRequest(
        node=node, update_mask=field_mask_pb2.FieldMask(paths=[f"properties.{k}" for k in props]),
        request_id=str(uuid.uuid4())))
    return resp.consistency_token


def test_a_replica_that_does_not_project_never_serves_a_stale_entry_to_a_token(graph, replica):
    queries, _ = replica
    graph.create_user("a", age=1)
    graph.create_user("b")
    queries.GetNode(q.GetNodeRequest(name=graph.name("b"), consistency=pb.ReadConsistency(at_least_token=graph.token)),
                    timeout=10)
    for age in range(2, 8):
        name = graph.name("a")
        before = queries.GetNode(q.GetNodeRequest(name=name), timeout=10)  # cached (maybe not the newest)
        assert before.node.name == name
        token = _update(graph, "a", age=age)
        got = queries.GetNode(q.GetNodeRequest(name=name, consistency=pb.ReadConsistency(at_least_token=token)),
                              timeout=10)
        assert got.node.properties["age"].int_value == age
    assert len(queries.GetNode(q.GetNodeRequest(name=graph.name("b")), timeout=10).node.edge_counts) == 0
    graph.add_edge("a", "follows", "b")
    resp = queries.GetNode(q.GetNodeRequest(name=graph.name("b"),
                                            consistency=pb.ReadConsistency(at_least_token=graph.token)), timeout=10)
    assert [(c.edge_type, c.count) for c in resp.node.edge_counts] == [("follows", 1)]
    deleted = graph.commands.DeleteNode(cmd.DeleteNodeRequest(name=graph.name("a"), request_id=str(uuid.uuid4())))
    resp = queries.GetNode(q.GetNodeRequest(name=graph.name("b"), consistency=pb.ReadConsistency(
        at_least_token=deleted.consistency_token)), timeout=10)
    assert len(resp.node.edge_counts) == 0


def test_hit_ratio_is_on_metrics(graph, replica):
    queries, port = replica
    graph.create_user("h")
    name = graph.name("h")
    queries.GetNode(q.GetNodeRequest(name=name, consistency=pb.ReadConsistency(at_least_token=graph.token)),
                    timeout=10)
    for _ in range(20):
        queries.GetNode(q.GetNodeRequest(name=name), timeout=10)
    deadline = time.monotonic() + 5
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in r.read().decode().splitlines()
                     if line.startswith("edgewise_read_cache")}
        if lines.get('edgewise_read_cache_hits_total{kind="node"}', 0) >= 19 or time.monotonic() > deadline:
            break
    assert lines['edgewise_read_cache_hits_total{kind="node"}'] >= 19
    assert lines['edgewise_read_cache_misses_total{kind="node"}'] >= 1
    assert lines["edgewise_read_cache_entries"] >= 1 and lines["edgewise_read_cache_bytes"] > 0
