"""``python -m command_service``: the GraphCommandService process."""

from __future__ import annotations

import gc
import sys

from infrastructure.config import Settings
from infrastructure.grpc.server import COMMAND_SERVICE_NAME
from infrastructure.process import run_service, serve_grpc, served_elsewhere

from command_service.bootstrap import bootstrap
from command_service.entrypoints.grpc.servicer import registrar

DRAIN_GRACE_SECONDS = 10.0


async def main(settings: Settings) -> None:
    app = await bootstrap(settings)
    metrics_server = None
    rpc_metrics = None
    try:
        if settings.metrics_port:  # the RPC metrics on 127.0.0.1:<port>/metrics
            from infrastructure.telemetry.metrics import start_metrics_server
            from infrastructure.telemetry.rpc_metrics import RpcMetrics

            rpc_metrics = RpcMetrics()
            metrics_server = start_metrics_server(settings.metrics_port, metrics=rpc_metrics)
        app.start()
        # Drain order: health NOT_SERVING and in-flight calls first, then the
        # cascade worker, then the store.
        await serve_grpc(settings=settings, address=settings.command_addr, register=registrar(app.dispatch),
                         service_names=[COMMAND_SERVICE_NAME], grace=DRAIN_GRACE_SECONDS,
                         elsewhere=served_elsewhere(settings, COMMAND_SERVICE_NAME),
                         log_fields=settings.describe_store(), metrics=rpc_metrics)
    finally:
        if metrics_server is not None:
            metrics_server.close()
        await app.close()


# A BatchWrite allocates thousands of short-lived objects (commands, events, rows); at
# the default gen-0 threshold (700) the cyclic collector ran ~13 times per batch and
# kept re-scanning the long-lived node cache (ADR 0006). Nothing on the write path
# builds reference cycles in bulk, so collect far less often.
GC_THRESHOLDS = (50_000, 20, 100)


DESCRIPTION = ("The Edgewise GraphCommandService process: every write (schema, nodes, edges, batches). "
               "Serves gRPC on EDGEWISE_COMMAND_ADDR until SIGTERM/SIGINT, then drains.")


def run() -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    return run_service("command service", main, argv=sys.argv[1:], module="command_service", role="command",
                       description=DESCRIPTION)


if __name__ == "__main__":
    sys.exit(run())
