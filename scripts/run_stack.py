"""Run the command and query services together in the foreground (used by `make run`).

Both inherit this process's environment. Ctrl-C / SIGTERM stops both (SIGTERM to
each, SIGKILL after a grace period); if either exits, the other is stopped and this
script exits with the first non-zero code.
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


def main() -> int:
    root = ROOT
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
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
