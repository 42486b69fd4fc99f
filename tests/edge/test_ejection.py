"""A query worker killed under load: Envoy retries its in-flight calls on the other worker
(reset / connect-failure / refused-stream), then stops sending it anything — its active
gRPC health check fails and outlier detection ejects it — and reads keep succeeding."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid

import grpc
import pytest

from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc
from infrastructure.process import die_with_parent
from tests.e2e.conftest import GraphClient
from tests.e2e.stack import ROOT, Service, free_port
from tests.edge.conftest import edge_settings, running

pytestmark = pytest.mark.e2e

CALLERS = 4


def start_query_worker(direct, workdir) -> Service:
    """One more query process on the stack's data file: it does not project (the stack's own
    query service does), it reads the shared read model and waits on the shared position."""
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "extra_query_worker.log"
    env = {**direct.env, "EDGEWISE_QUERY_ADDR": address, "EDGEWISE_PROJECTOR_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "-m", "query_service"], cwd=ROOT, env=env,
                               preexec_fn=die_with_parent, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    service = Service("query_service", process, address, log)
    direct._wait_healthy(service)
    return service


def test_a_killed_worker_is_ejected_and_reads_keep_succeeding(edge_stack, tmp_path_factory):
    direct = edge_stack.direct
    workdir = tmp_path_factory.mktemp("eject")
    graph = GraphClient(direct, f"eject-{uuid.uuid4().hex[:8]}")
    graph.apply_schema()
    graph.create_user("n")
    victim = start_query_worker(direct, workdir)
    try:
        settings = edge_settings([direct.command_addr], [direct.query_addr, victim.address])
        with running(settings, workdir / "envoy") as gateway:
            with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
                stub = query_service_pb2_grpc.GraphQueryServiceStub(channel)
                request = q.GetNodeRequest(name=graph.name("n"), consistency=graph.consistency())
                ok, failed, stop = [0] * CALLERS, [0] * CALLERS, threading.Event()

                def read(i: int) -> None:
                    while not stop.is_set():
                        try:
                            stub.GetNode(request, timeout=5)
                            ok[i] += 1
                        except grpc.RpcError:
                            failed[i] += 1

                threads = [threading.Thread(target=read, args=(i,)) for i in range(CALLERS)]
                for t in threads:
                    t.start()
                time.sleep(0.5)
                before = sum(ok)
                victim.process.send_signal(signal.SIGKILL)
                time.sleep(1.5)
                stop.set()
                for t in threads:
                    t.join(10)
                hosts = gateway.hosts("query")
                stats = gateway.stats(r"cluster\.query\.(upstream_rq_retry|health_check\..*"
                                      r"|outlier_detection\.ejections_enforced_total|upstream_cx_connect_fail)$")
    finally:
        if victim.process.poll() is None:
            victim.process.kill()
        victim.process.wait(5)
    assert before > 0 and sum(ok) > before + 20, (before, ok)
    # at most the calls the killed worker had in flight (one per caller) may fail
    assert sum(failed) <= CALLERS, (failed, stats)
    assert hosts[victim.address] != "healthy", hosts
    assert hosts[direct.query_addr] == "healthy", hosts
    assert stats.get("cluster.query.health_check.failure", 0) >= 1, stats  # active: the health check failed
    assert stats.get("cluster.query.outlier_detection.ejections_enforced_total", 0) >= 1, stats  # passive
