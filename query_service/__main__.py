"""``python -m query_service``: one GraphQueryService process (a query worker).

Settings from the environment; composition inside the running loop; the projector
runs as a task beside the server (unless disabled). SIGTERM drains: health goes
NOT_SERVING, in-flight calls finish within the grace period, the projector stops
after its current batch (its checkpoint commits with the batch), the DB closes.

Several of these may serve one store (``make run`` starts one per core, each on its own
port: scripts/run_stack.py). Each runs the projector loop, and exactly one projects each
shard: the holder of ``<db>.projector.lock`` on SQLite, of the shard's lease on DynamoDB;
the others follow the stored checkpoints (dropping their read-cache entries of what the
holder projected) and take over within a poll interval when the holder goes away.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from infrastructure.config import Settings
from infrastructure.process import run_service, serve_grpc, served_elsewhere
from query_service.bootstrap import bootstrap, metrics_shards
from query_service.entrypoints.grpc.servicer import SERVICE_NAME, register

GRACE_SECONDS = 5.0

_log = logging.getLogger("edgewise.query")


def _report_projector_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.critical("the projector stopped on an unexpected error; reads will go stale",
                      exc_info=task.exception())


def _report_tailer_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.critical("the cache tailer stopped on an unexpected error; consistency waits will fail",
                      exc_info=task.exception())


async def main(settings: Settings) -> None:
    app = await bootstrap(settings)
    projector_task: asyncio.Task[None] | None = None
    tailer_task: asyncio.Task[None] | None = None
    metrics_server = None
    if app.projector is not None:
        projector_task = asyncio.create_task(app.projector.run(), name="projector")
        projector_task.add_done_callback(_report_projector_exit)
    if app.tailer is not None:
        tailer_task = asyncio.create_task(app.tailer.run(app.progress.advance_all),
                                          name="cache-tailer")
        tailer_task.add_done_callback(_report_tailer_exit)
    rpc_metrics = None
    try:
        if settings.metrics_port:
            from infrastructure.telemetry.metrics import ReadCacheCollector, start_metrics_server
            from infrastructure.telemetry.rpc_metrics import RpcMetrics

            rpc_metrics = RpcMetrics()
            projector = app.projector
            rpc_metrics.watch_projection(positions=app.progress.positions,
                                         heads=lambda: projector.heads if projector is not None else {},
                                         labelled=metrics_shards(settings))
            collectors = [ReadCacheCollector(app.cache.stats)] if app.cache is not None else []
            metrics_server = start_metrics_server(settings.metrics_port, collectors, metrics=rpc_metrics)

        async def stop_projector() -> None:
            if projector_task is not None and app.projector is not None:
                app.projector.stop()
                await projector_task  # the current batch commits, then the loop ends
            if tailer_task is not None and app.tailer is not None:
                app.tailer.stop()
                await tailer_task

        await serve_grpc(settings=settings, address=settings.query_addr, register=register(app), service_names=[SERVICE_NAME],
                         grace=GRACE_SECONDS, on_shutdown=[stop_projector],
                         elsewhere=served_elsewhere(settings, SERVICE_NAME),
                         log_fields={**settings.describe_store(), "projector_enabled": settings.projector_enabled},
                         metrics=rpc_metrics)
    finally:
        for task in (projector_task, tailer_task):
            if task is not None and not task.done():
                task.cancel()
        if metrics_server is not None:
            metrics_server.close()
        await app.close()


DESCRIPTION = ("One Edgewise GraphQueryService process (a query worker): every read, from the projected "
               "read model. Serves gRPC on EDGEWISE_QUERY_ADDR until SIGTERM/SIGINT, then drains. "
               "`make run` (scripts/run_stack.py) starts EDGEWISE_QUERY_WORKERS of them.")


def run() -> int:
    return run_service("query service", main, argv=sys.argv[1:], module="query_service", role="query",
                       description=DESCRIPTION)


if __name__ == "__main__":
    sys.exit(run())
