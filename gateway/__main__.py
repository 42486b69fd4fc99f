"""``python -m gateway``: run the Envoy edge in the foreground until SIGTERM/SIGINT.

Reads the EDGEWISE_EDGE_* settings (and EDGEWISE_COMMAND_ADDR(S)/EDGEWISE_QUERY_ADDR(S) for
the upstreams); a bad setting exits 2 naming every problem. ``--print-config`` prints the
rendered Envoy bootstrap (JSON) and exits, for running Envoy elsewhere (an image of its own).
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gateway import settings as settings_module
from gateway.config import dumps, render
from gateway.launcher import Gateway, GatewayError
from gateway.settings import GatewaySettings
from infrastructure.config import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def inline_descriptors(node: Any) -> Any:
    """The bootstrap with every ``proto_descriptor`` file inlined as ``proto_descriptor_bin``:
    one self-contained file for an Envoy that has no other path (the official image)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "proto_descriptor" and isinstance(value, str):
                out["proto_descriptor_bin"] = base64.b64encode(Path(value).read_bytes()).decode("ascii")
            else:
                out[key] = inline_descriptors(value)
        return out
    if isinstance(node, list):
        return [inline_descriptors(v) for v in node]
    return node


def render_to_file(argv: list[str]) -> int:
    """``python -m gateway render --out FILE``: the self-contained bootstrap (JSON, valid YAML)
    for docker-compose and the k8s ConfigMap (deploy/)."""
    parser = argparse.ArgumentParser(prog="python -m gateway render",
                                     description="write the rendered Envoy bootstrap, descriptors inlined")
    parser.add_argument("--out", required=True, type=Path, help="the file to write")
    args = parser.parse_args(argv)
    try:
        config = inline_descriptors(render(GatewaySettings.from_env()))
    except ConfigError as exc:
        print(f"edgewise gateway: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except OSError as exc:
        print(f"edgewise gateway: cannot read the descriptor set ({exc}); run `make protos`", file=sys.stderr)
        return EXIT_FAILED
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(config, indent=2) + "\n")
    print(f"edgewise gateway: wrote {args.out}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["render"]:
        return render_to_file(argv[1:])
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
