"""``python -m query_service``: the GraphQueryService process.

Settings from the environment; composition inside the running loop; the projector
runs as a task beside the server (unless disabled). SIGTERM drains: health goes
NOT_SERVING, in-flight calls finish within the grace period, the projector stops
after its current batch (its checkpoint commits with the batch), the DB closes.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from infrastructure.config import Settings
from infrastructure.process import run_service, serve_grpc
from query_service.bootstrap import bootstrap
from query_service.entrypoints.grpc.servicer import SERVICE_NAME, register

GRACE_SECONDS = 5.0

_log = logging.getLogger("edgewise.query")


def _report_projector_exit(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.critical("the projector stopped on an unexpected error; reads will go stale",
                      exc_info=task.exception())


async def main(settings: Settings) -> None:
    app = await bootstrap(settings)
    projector_task: asyncio.Task | None = None
    if app.projector is not None:
        projector_task = asyncio.create_task(app.projector.run(), name="projector")  # type: ignore[attr-defined]
        projector_task.add_done_callback(_report_projector_exit)
    try:
        async def stop_projector() -> None:
            if projector_task is not None:
                app.projector.stop()  # type: ignore[attr-defined]
                await projector_task  # the current batch commits, then the loop ends

        await serve_grpc(address=settings.query_addr, register=register(app), service_names=[SERVICE_NAME],
                         grace=GRACE_SECONDS, on_shutdown=[stop_projector])
    finally:
        if projector_task is not None and not projector_task.done():
            projector_task.cancel()
        await app.close()


def run() -> int:
    return run_service("query service", main)


if __name__ == "__main__":
    sys.exit(run())
