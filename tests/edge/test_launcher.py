"""gateway.launcher and ``python -m gateway``: Envoy's own validation of the rendered config
(plain and TLS), start-up failures said plainly, a graceful SIGTERM, and no orphan Envoy."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.launcher import Gateway, GatewayError
from tests.e2e.stack import ROOT
from tests.edge.conftest import edge_settings
from tests.edge.test_tls import self_signed

pytestmark = pytest.mark.e2e


def test_envoy_validates_the_plain_and_the_tls_config(tmp_path):
    cert, key = self_signed(tmp_path)
    plain = edge_settings(["127.0.0.1:50051"], ["127.0.0.1:50052", "127.0.0.1:50053"])
    for settings in (plain, dataclasses.replace(plain, tls_cert=str(cert), tls_key=str(key))):
        gateway = Gateway(settings, workdir=tmp_path / ("tls" if settings.tls else "plain"))
        path = gateway.write_config()  # runs `envoy --mode validate`; raises if Envoy refuses
        config = json.loads(path.read_text())
        assert ("transport_socket" in config["static_resources"]["listeners"][0]["filter_chains"][0]) == settings.tls


def test_a_config_envoy_refuses_is_reported_with_envoys_words(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    settings = edge_settings(["127.0.0.1:50051"], ["127.0.0.1:50052"])
    settings = dataclasses.replace(settings, tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"))
    with pytest.raises(GatewayError) as err:
        Gateway(settings, workdir=tmp_path / "w").start()
    assert "envoy rejected" in str(err.value) and "cert" in str(err.value).lower()


def test_the_descriptor_set_is_built_when_missing(tmp_path):
    settings = edge_settings(["127.0.0.1:50051"], ["127.0.0.1:50052"])
    settings = dataclasses.replace(settings, descriptor_set=str(tmp_path / "d" / "edgewise.pb"))
    Gateway(settings, workdir=tmp_path / "w").write_config()
    assert (tmp_path / "d" / "edgewise.pb").stat().st_size > 10_000


def test_a_taken_port_fails_the_start_with_envoys_output(tmp_path):
    settings = edge_settings(["127.0.0.1:50051"], ["127.0.0.1:50052"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.grpc_addr.port))
        taken.listen()
        gateway = Gateway(settings, workdir=tmp_path, output=tmp_path / "envoy.log")
        with pytest.raises(GatewayError) as err:
            gateway.start(timeout=20)
    assert "exited with code" in str(err.value) and "address already in use" in str(err.value).lower()
    assert not gateway.running()


def gateway_env(settings) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT),
            "EDGEWISE_EDGE_GRPC_ADDR": str(settings.grpc_addr), "EDGEWISE_EDGE_REST_ADDR": str(settings.rest_addr),
            "EDGEWISE_EDGE_ADMIN_ADDR": str(settings.admin_addr),
            "EDGEWISE_COMMAND_ADDRS": ",".join(map(str, settings.command_addrs)),
            "EDGEWISE_QUERY_ADDRS": ",".join(map(str, settings.query_addrs)), "EDGEWISE_EDGE_CONCURRENCY": "1"}


def start_module(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    """``python -m gateway``; returns it and Envoy's pid once it says it is serving."""
    process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=log.open("wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"envoy \(pid (\d+)\) serving", log.read_text())
        if found:
            return process, int(found.group(1))
        if process.poll() is not None:
            raise AssertionError(log.read_text())
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"python -m gateway never served:\n{log.read_text()}")


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child: reap it, or it lingers as a zombie that kill(0) still finds
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def test_python_m_gateway_serves_until_sigterm(edge_stack, tmp_path):
    from tests.e2e.test_grpcurl import grpcurl

    direct = edge_stack.direct
    settings = edge_settings([direct.command_addr], [direct.query_addr])
    process, envoy_pid = start_module(gateway_env(settings), tmp_path / "gateway.log")
    try:
        listed = grpcurl(f"127.0.0.1:{settings.grpc_addr.port}", "list").stdout.split()
        assert "edgewise.graph.v1.GraphCommandService" in listed
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "stopped" in (tmp_path / "gateway.log").read_text()
    assert gone(envoy_pid)


def test_envoy_does_not_outlive_a_killed_launcher(tmp_path):
    settings = edge_settings(["127.0.0.1:50051"], ["127.0.0.1:50052"])
    process, envoy_pid = start_module(gateway_env(settings), tmp_path / "gateway.log")
    process.kill()
    process.wait(5)
    assert gone(envoy_pid), "envoy outlived the launcher"


def test_python_m_gateway_refuses_a_bad_config_and_prints_one():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEWISE_EDGE_ADMIN_ADDR": "0.0.0.0:9901"}
    out = subprocess.run([sys.executable, "-m", "gateway"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and "must be a loopback address" in out.stderr and "Traceback" not in out.stderr
    env["EDGEWISE_EDGE_ADMIN_ADDR"] = "127.0.0.1:9901"
    out = subprocess.run([sys.executable, "-m", "gateway", "--print-config"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["admin"]["address"]["socket_address"]["port_value"] == 9901
    out = subprocess.run([sys.executable, "-m", "gateway", "--help"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "EDGEWISE_EDGE_GRPC_ADDR" in out.stdout


def test_stop_lets_an_in_flight_call_finish(tmp_path):
    """stop() drains: a call already in flight gets its answer; then Envoy exits 0."""
    import threading

    import grpc

    from edgewise.graph.v1 import query_service_pb2 as q
    from edgewise.graph.v1 import query_service_pb2_grpc
    from tests.edge.upstreams import Slow

    slow = Slow(delay=1.0).start()
    try:
        settings = edge_settings([slow.address], [slow.address])
        gateway = Gateway(settings, workdir=tmp_path, output=tmp_path / "envoy.log").start()
        gateway.wait_for_hosts("query", 1)
        with grpc.insecure_channel(gateway.endpoints.grpc) as channel:
            stub = query_service_pb2_grpc.GraphQueryServiceStub(channel)
            future = stub.GetNode.future(q.GetNodeRequest(name="graphs/g/nodes/n"), timeout=10)
            while not slow.attempts:
                time.sleep(0.01)
            codes: list[int | None] = []
            stopper = threading.Thread(target=lambda: codes.append(gateway.stop(grace=5)))
            stopper.start()
            assert future.result(timeout=10).node.name == ""  # Slow answers an empty message, in full
            stopper.join(10)
        assert codes == [0] and not gateway.running()
    finally:
        slow.stop()
