"""``python -m gateway``: run the Envoy edge in the foreground until SIGTERM/SIGINT.

Reads the EDGEWISE_EDGE_* settings (and EDGEWISE_COMMAND_ADDR(S)/EDGEWISE_QUERY_ADDR(S) for
the upstreams); a bad setting exits 2 naming every problem. ``--print-config`` prints the
rendered Envoy bootstrap (JSON) and exits, for running Envoy elsewhere (an image of its own).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from gateway import settings as settings_module
from gateway.config import dumps, render
from gateway.launcher import Gateway, GatewayError
from gateway.settings import GatewaySettings
from infrastructure.config import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The Edgewise edge: Envoy with one gRPC and one REST/JSON listener in front of "
                    "the command service and the query workers.",
        epilog=(settings_module.__doc__ or "").strip())
    parser.add_argument("--print-config", action="store_true",
                        help="print the rendered Envoy bootstrap (JSON) and exit")
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings.from_env()
        if args.print_config:
            sys.stdout.write(dumps(render(settings)))
            return EXIT_OK
    except ConfigError as exc:
        print(f"edgewise gateway: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    gateway = Gateway(settings)
    try:
        gateway.start()
    except GatewayError as exc:
        print(f"edgewise gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"edgewise gateway: envoy (pid {gateway.pid}) serving {gateway.endpoints.describe()}",
          file=sys.stderr, flush=True)
    while not stop.is_set() and gateway.running():
        stop.wait(0.2)
    exited_by_itself = not stop.is_set()
    code = gateway.stop()
    if exited_by_itself:
        print(f"edgewise gateway: envoy exited with code {code}", file=sys.stderr)
        return code or EXIT_FAILED
    print("edgewise gateway: stopped", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
