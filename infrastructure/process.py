"""The process shell both services share: settings, logging, the event loop, and a
gRPC server that serves until SIGTERM/SIGINT and then drains.

Each service's ``__main__`` keeps only what is its own: its composition root, what
runs beside the server (the cascade worker, the projector) and the order they stop in.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from grpc import aio

from domain.errors import Unavailable
from infrastructure.config import ConfigError, Settings, settings_help
from infrastructure.grpc.chain import build_interceptors
from infrastructure.grpc.server import (
    COMMAND_SERVICE_NAME,
    QUERY_SERVICE_NAME,
    BindError,
    serve_until_signalled,
    start_server,
)
from infrastructure.logging import configure_logging

EXIT_OK = 0
EXIT_BAD_CONFIG = 2
EXIT_STORE_UNAVAILABLE = 3
EXIT_CANNOT_BIND = 4

_log = logging.getLogger("edgewise.process")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for launchers (tests, benchmarks, run_stack): the child gets
    SIGTERM when its parent dies, so a killed test run leaves no service behind."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux/glibc: best effort only
        pass


# Container allocations between young-generation collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Once the process has started: move everything alive (modules, descriptors, the
    composed application) out of the collector's reach, and collect the young generation
    less often. A request's objects die by reference counting; what the collector did was
    rescan long-lived ones. A 1,000-node FULL traversal paid ~0.6 ms of collection per call
    (373 collections per 100 traversals); with this, 2 collections per 100."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)  # a process that chose more keeps it


def run_service(name: str, main: Callable[[Settings], Coroutine[Any, Any, None]], *,
                env: Mapping[str, str] | None = None, argv: Sequence[str] = (), module: str = "",
                role: str = "", description: str = "") -> int:
    """``--help`` prints the settings (``role``'s: "command" or "query") and exits 0; any
    other argument exits 2 (settings come from the environment only). Then read the settings
    once (a bad configuration exits 2 naming every problem), log JSON lines at the configured
    level naming ``module`` and the pid, and run ``main(settings)`` in a new event loop.
    An unreachable store exits 3 and a taken port 4, each with one line and no traceback; a
    token-verification key that cannot be used (found as the chain is built) exits 2."""
    program = f"python -m {module}" if module else name
    if list(argv) in (["--help"], ["-h"]):
        print(settings_help(program, description or f"The Edgewise {name}.", role or "launcher"), end="")
        return EXIT_OK
    if argv:
        print(f"edgewise {name}: unexpected argument {argv[0]!r}: settings come from the environment "
              f"({program} --help lists them)", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"edgewise {name}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    configure_logging(settings.log_level, service=module or name)
    _log.info("starting", extra={"fields": settings.describe_store()})
    code = EXIT_OK
    try:
        asyncio.run(main(settings))
    except Unavailable as exc:  # the store is unreachable or not set up: one line, no traceback
        print(f"edgewise {name}: cannot start: {exc.message}", file=sys.stderr)
        code = EXIT_STORE_UNAVAILABLE
    except BindError as exc:  # the port is taken (another instance?): one line, no traceback
        print(f"edgewise {name}: cannot start: {exc}", file=sys.stderr)
        code = EXIT_CANNOT_BIND
    except ConfigError as exc:  # a key that cannot verify tokens (found when the chain is built)
        print(f"edgewise {name}: {exc}", file=sys.stderr)
        code = EXIT_BAD_CONFIG
    _log.info("stopped", extra={"fields": {"exit_code": code}})
    return code


def served_elsewhere(settings: Settings, here: str) -> dict[str, tuple[str, ...]]:
    """For the process serving ``here`` (a service's full name): the other service and the
    addresses that serve it, from the settings (SERVICE_NOT_SERVED_HERE names them)."""
    where = {COMMAND_SERVICE_NAME: (settings.command_addr,), QUERY_SERVICE_NAME: settings.query_addresses()}
    return {service: addresses for service, addresses in where.items() if service != here}


async def serve_grpc(*, settings: Settings, address: str, register: Callable[[aio.Server], None], service_names: list[str],
                     grace: float, on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
                     elsewhere: Mapping[str, Sequence[str]] | None = None,
                     log_fields: Mapping[str, object] | None = None, metrics: Any = None) -> None:
    """Start a server with the interceptor chain ``settings`` configure (chain.py), health and reflection (and the
    UNIMPLEMENTED answers naming ``elsewhere``); log "started" with the address and
    ``log_fields``; serve until signalled; drain within ``grace`` seconds, then run
    ``on_shutdown``."""
    running = await start_server(address=address, register=register, service_names=service_names,
                                 interceptors=build_interceptors(settings, metrics=metrics), elsewhere=elsewhere)
    _log.info("started", extra={"fields": {"address": running.address, "port": running.port,
                                           "services": list(service_names), **(log_fields or {})}})
    tune_gc()
    await serve_until_signalled(running, grace, on_shutdown=on_shutdown)
