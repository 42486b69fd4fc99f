"""A DynamoDB stand-in on loopback: moto's server mode, for tests and local runs.

As a library (tests/dynamodb_support.py, e2e tests, ``make run STORE=dynamodb`` later)::

    from scripts.moto_server import MotoServer, create_tables_at

    with MotoServer() as server:             # 127.0.0.1, a free port
        asyncio.run(create_tables_at(server.endpoint, prefix="edgewise-"))
        env = {**os.environ, **server.service_env(prefix="edgewise-")}   # for subprocesses

As a script: ``python scripts/moto_server.py [--port N] [--prefix P] [--region R]`` starts
moto, creates the tables, prints the endpoint and the environment to use, and serves
until Ctrl-C / SIGTERM.

Only 127.0.0.1 is bound. Only dummy credentials are used and handed out
(DUMMY_CREDENTIALS): the child's environment has every AWS_* variable removed first, so
a real key can never reach the stand-in or be mistaken for one. moto keeps everything in
memory and serialises nothing: it proves shapes, conditions and costs' call counts, not
race-freedom (DESIGN §5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository root is the import root
    sys.path.insert(0, str(ROOT))

from infrastructure.config import DEFAULT_DYNAMODB_REGION, DynamoDBSettings  # noqa: E402
from infrastructure.persistence.dynamodb.admin import TableReport, create_tables  # noqa: E402
from infrastructure.persistence.dynamodb.client import ClientOptions, DynamoClient, StaticCredentials  # noqa: E402
from infrastructure.process import die_with_parent  # noqa: E402
from scripts import ports  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and moto binding it
DUMMY_CREDENTIALS = StaticCredentials(access_key_id="testing", secret_access_key="testing")


class MotoStartError(RuntimeError):
    """moto did not start (its log's tail is in the message)."""


def free_port() -> int:
    """A free loopback port below the ephemeral range (scripts/ports.py says why)."""
    return ports.free_port(HOST)


def child_env() -> dict[str, str]:
    """This process's environment without any AWS_* variable, plus the dummy credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=DUMMY_CREDENTIALS.access_key_id,
               AWS_SECRET_ACCESS_KEY=DUMMY_CREDENTIALS.secret_access_key,
               AWS_DEFAULT_REGION=DEFAULT_DYNAMODB_REGION)
    return env


class MotoServer:
    """moto's server (``scripts/moto_serve.py``) on 127.0.0.1; ``start()`` returns once it answers TCP."""

    def __init__(self, port: int = 0, *, start_timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.requested_port = port
        self.port = port
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "MotoServer":
        if self._process is not None:
            return self
        attempts = 1 if self.requested_port else START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self.port = self.requested_port or free_port()
            try:
                self._spawn()
                return self
            except MotoStartError:
                self.stop()
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self._log = tempfile.TemporaryFile(prefix="moto-server-")
        self._process = subprocess.Popen(
            # moto.server, with a per-item (not per-table) transaction backup: scripts/moto_serve.py
            [sys.executable, str(ROOT / "scripts" / "moto_serve.py"), "-H", HOST, "-p", str(self.port)],
            cwd=str(ROOT), env=child_env(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                raise MotoStartError(f"moto exited with code {self._process.returncode} on port {self.port}: "
                                     f"{self._log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise MotoStartError(f"moto did not listen on {self.endpoint} within {self.start_timeout:.0f} s: "
                                     f"{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-2000:].decode("utf-8", errors="replace").strip()

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, SIGKILL after a grace period); its exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def settings(self, prefix: str = "edgewise-", region: str = DEFAULT_DYNAMODB_REGION) -> DynamoDBSettings:
        return DynamoDBSettings(endpoint=self.endpoint, region=region, table_prefix=prefix)

    def service_env(self, prefix: str = "edgewise-", region: str = DEFAULT_DYNAMODB_REGION) -> dict[str, str]:
        """Environment for a service or CLI subprocess that should use this server."""
        return {"EDGEWISE_STORE": "dynamodb", "EDGEWISE_DYNAMODB_ENDPOINT": self.endpoint,
                "EDGEWISE_DYNAMODB_REGION": region, "EDGEWISE_DYNAMODB_TABLE_PREFIX": prefix,
                "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS.access_key_id,
                "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS.secret_access_key}

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


async def open_client(endpoint: str, *, prefix: str = "edgewise-", region: str = DEFAULT_DYNAMODB_REGION,
                      options: ClientOptions | None = None) -> DynamoClient:
    """A DynamoClient on a stand-in at ``endpoint``, with the dummy credentials."""
    return await DynamoClient.open(DynamoDBSettings(endpoint=endpoint, region=region, table_prefix=prefix),
                                   options=options, credentials=DUMMY_CREDENTIALS)


async def create_tables_at(endpoint: str, *, prefix: str = "edgewise-",
                           region: str = DEFAULT_DYNAMODB_REGION) -> list[TableReport]:
    """Create Edgewise's tables on a stand-in (idempotent)."""
    async with await open_client(endpoint, prefix=prefix, region=region) as client:
        return await create_tables(client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="moto's DynamoDB on 127.0.0.1 with Edgewise's tables created")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--prefix", default="edgewise-", help="table name prefix (default: %(default)s)")
    parser.add_argument("--region", default=DEFAULT_DYNAMODB_REGION, help="region (default: %(default)s)")
    args = parser.parse_args(argv)

    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with MotoServer(args.port) as server:
        for report in asyncio.run(create_tables_at(server.endpoint, prefix=args.prefix, region=args.region)):
            print(report.line(), file=sys.stderr, flush=True)
        print(f"moto DynamoDB on {server.endpoint} (pid {server.pid}); Ctrl-C stops it. Environment:",
              file=sys.stderr, flush=True)
        for key, value in server.service_env(args.prefix, args.region).items():
            print(f"export {key}={value}", flush=True)
        while not stopping and server.running():
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
