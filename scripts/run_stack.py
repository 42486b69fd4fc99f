"""Run the command and query services together in the foreground (used by `make run`).

Both inherit this process's environment. Ctrl-C / SIGTERM stops both (SIGTERM to
each, SIGKILL after a grace period); if either exits, the other is stopped and this
script exits with the first non-zero code.

``EDGEWISE_STORE=dynamodb`` (``make run STORE=dynamodb``) without an
``EDGEWISE_DYNAMODB_ENDPOINT``: a local stand-in is started first — moto's DynamoDB
server on 127.0.0.1, in memory, with dummy credentials — and the tables are created on
it. It is a stand-in for trying Edgewise out, not a database: everything is gone at
Ctrl-C. With an endpoint set (DynamoDB Local, or real DynamoDB with credentials from
the standard AWS chain), nothing is started: create the tables once with
``python -m cli tables create``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from infrastructure.process import die_with_parent  # noqa: E402  (needs ROOT on the path)

SERVICES = ("command_service", "query_service")
GRACE_SECONDS = 10.0


def start_stand_in(env: dict[str, str]):  # -> MotoServer; imported only when asked for
    """moto on loopback with the tables, its settings merged into ``env``."""
    import asyncio

    from scripts.moto_server import MotoServer, create_tables_at

    prefix = env.get("EDGEWISE_DYNAMODB_TABLE_PREFIX") or "edgewise-"
    region = env.get("EDGEWISE_DYNAMODB_REGION") or "us-east-1"
    server = MotoServer(int(env.get("EDGEWISE_MOTO_PORT") or 0)).start()
    try:
        asyncio.run(create_tables_at(server.endpoint, prefix=prefix, region=region))
    except BaseException:
        server.stop()
        raise
    env.update(server.service_env(prefix, region))
    print(f"DynamoDB: a local stand-in (moto, in memory, gone at Ctrl-C) on {server.endpoint}, "
          f"tables {prefix}write/log/read", file=sys.stderr, flush=True)
    return server


def main() -> int:
    root = ROOT
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    stand_in = None
    if env.get("EDGEWISE_STORE", "sqlite").lower() == "dynamodb" and not env.get("EDGEWISE_DYNAMODB_ENDPOINT"):
        stand_in = start_stand_in(env)
    try:
        return run_services(env)
    finally:
        if stand_in is not None:
            stand_in.stop()


def run_services(env: dict[str, str]) -> int:
    root = ROOT
    procs = {name: subprocess.Popen([sys.executable, "-m", name], cwd=root, env=env,
                                         preexec_fn=die_with_parent)
             for name in SERVICES}
    print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in procs.items())}; "
          f"Ctrl-C stops both", file=sys.stderr, flush=True)

    stopping = False

    def request_stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    exit_code = 0
    while not stopping:
        exited = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
        if exited:
            for name, code in exited.items():
                print(f"{name} exited with code {code}", file=sys.stderr, flush=True)
                exit_code = exit_code or code
            break
        time.sleep(0.2)

    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
