"""The gRPC server factory both services use: interceptors, health, reflection, drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

# Imported for their side effect: the descriptors of both services join the default
# pool, so every process can serve reflection for both (grpcurl through one listener).
from edgewise.graph.v1 import command_service_pb2, query_service_pb2

COMMAND_SERVICE_NAME = command_service_pb2.DESCRIPTOR.services_by_name[
    "GraphCommandService"].full_name
QUERY_SERVICE_NAME = query_service_pb2.DESCRIPTOR.services_by_name[
    "GraphQueryService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

_log = logging.getLogger("edgewise.grpc.server")


@dataclass
class RunningServer:
    server: aio.Server
    port: int
    address: str
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)
    _stopped: bool = False

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Drain: report NOT_SERVING, then let in-flight calls finish within ``grace``."""
        if self._stopped:
            return
        self._stopped = True
        await self.set_serving(False)
        await self.server.stop(grace)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


async def start_server(
    *,
    address: str,
    register: Callable[[aio.Server], None],
    service_names: list[str],
    interceptors: Sequence[aio.ServerInterceptor] = (),
    options: Iterable[tuple[str, object]] = (),
) -> RunningServer:
    """Build, register, bind and start a grpc.aio server. ``address`` may use port 0;
    ``RunningServer.port`` is the port actually bound."""
    server = aio.server(
        interceptors=list(interceptors),
        # Fail loudly when the port is taken instead of silently sharing it.
        options=[("grpc.so_reuseport", 0), *options],
    )
    register(server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [COMMAND_SERVICE_NAME, QUERY_SERVICE_NAME, HEALTH_SERVICE_NAME,
         reflection.SERVICE_NAME],
        server,
    )

    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot bind gRPC server to {address}: {exc}") from exc
    if not port:
        raise OSError(f"cannot bind gRPC server to {address}")
    await server.start()

    running = RunningServer(server=server, port=port, address=address,
                            health=health_servicer, service_names=list(service_names))
    await running.set_serving(True)
    _log.info("gRPC server listening", extra={"fields": {
        "address": address, "port": port, "services": list(service_names)}})
    return running


async def serve_until_signalled(
    running: RunningServer,
    grace: float,
    *,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Serve until SIGTERM/SIGINT (or the server ends), then drain within ``grace``
    seconds and run ``on_shutdown`` hooks (e.g. flush a projector checkpoint)."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop_requested.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform
            pass
    stop_waiter = asyncio.ensure_future(stop_requested.wait())
    # Never cancel the termination waiter: cancelling it cancels the future that
    # grpc's own shutdown awaits, and the drain dies with CancelledError.
    terminated = asyncio.ensure_future(running.wait_for_termination())
    try:
        await asyncio.wait([stop_waiter, terminated], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_waiter.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        _log.info("draining gRPC server", extra={"fields": {"grace_seconds": grace}})
        await running.stop(grace)
        await asyncio.wait([terminated], timeout=grace + 1)
        for hook in on_shutdown:
            await hook()
