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

from infrastructure.config import ConfigError, Settings
from infrastructure.grpc.interceptors import default_interceptors
from infrastructure.logging import configure_logging
from infrastructure.grpc.server import serve_until_signalled, start_server
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
        running = await start_server(address=settings.query_addr, register=register(app),
                                     service_names=[SERVICE_NAME], interceptors=default_interceptors())

        async def stop_projector() -> None:
            if projector_task is not None:
                app.projector.stop()  # type: ignore[attr-defined]
                await projector_task  # the current batch commits, then the loop ends

        await serve_until_signalled(running, GRACE_SECONDS, on_shutdown=[stop_projector])
    finally:
        if projector_task is not None and not projector_task.done():
            projector_task.cancel()
        await app.close()


def run() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    asyncio.run(main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(run())
