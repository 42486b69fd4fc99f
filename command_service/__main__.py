"""``python -m command_service``: the GraphCommandService process."""

from __future__ import annotations

import asyncio
import sys

from infrastructure.config import ConfigError, Settings
from infrastructure.grpc.interceptors import default_interceptors
from infrastructure.grpc.server import COMMAND_SERVICE_NAME, serve_until_signalled, start_server
from infrastructure.logging import configure_logging

from command_service.bootstrap import bootstrap
from command_service.entrypoints.grpc.servicer import registrar

DRAIN_GRACE_SECONDS = 10.0


async def main(settings: Settings) -> None:
    app = await bootstrap(settings)
    try:
        app.start()
        running = await start_server(
            address=settings.command_addr,
            register=registrar(app.dispatch),
            service_names=[COMMAND_SERVICE_NAME],
            interceptors=default_interceptors(),
        )
        # Drain order: health NOT_SERVING and in-flight calls first, then the
        # cascade worker, then the store.
        await serve_until_signalled(running, DRAIN_GRACE_SECONDS)
    finally:
        await app.close()


def run() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"edgewise command service: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    asyncio.run(main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(run())
