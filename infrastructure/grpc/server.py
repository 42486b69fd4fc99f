"""The gRPC server factory both services use: interceptors, health, reflection, drain,
and honest UNIMPLEMENTED answers for what a port does not serve."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

# Imported for their side effect: the descriptors of both services join the default
# pool, so every process can serve reflection for both (grpcurl through one listener).
from domain.errors import Reason, Unimplemented
from edgewise.graph.v1 import command_service_pb2, query_service_pb2
from infrastructure.grpc.errors import status_for
from infrastructure.grpc.interceptors import PerCallHandler

COMMAND_SERVICE_NAME = command_service_pb2.DESCRIPTOR.services_by_name[
    "GraphCommandService"].full_name
QUERY_SERVICE_NAME = query_service_pb2.DESCRIPTOR.services_by_name[
    "GraphQueryService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Every Edgewise service and its methods, whichever process serves it.
EDGEWISE_METHODS: dict[str, frozenset[str]] = {
    service.full_name: frozenset(service.methods_by_name)
    for service in (command_service_pb2.DESCRIPTOR.services_by_name["GraphCommandService"],
                    query_service_pb2.DESCRIPTOR.services_by_name["GraphQueryService"])
}

_log = logging.getLogger("edgewise.grpc.server")


class BindError(OSError):
    """The listen address cannot be bound (taken by another process, or not local)."""


def split_method(method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` as (service, method); ("", method) when malformed."""
    service, sep, name = method.lstrip("/").rpartition("/")
    return (service, name) if sep else ("", method)


class UnservedMethods(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no types
    """Registered last, so it sees only the calls no other handler took. A method of an
    Edgewise service this process does not serve is UNIMPLEMENTED with ErrorInfo
    SERVICE_NOT_SERVED_HERE naming the service and the address(es) that serve it; anything
    else is UNIMPLEMENTED with METHOD_NOT_FOUND. Both go through the interceptors (request id,
    access log) like any call; the handler is built per call (``PER_CALL``), so unknown method
    names never grow the interceptors' per-method caches."""

    def __init__(self, *, address: str, served: Sequence[str],
                 elsewhere: Mapping[str, Sequence[str]] | None = None) -> None:
        self._address = address
        self._served = list(served)
        self._elsewhere = {name: tuple(addresses) for name, addresses in (elsewhere or {}).items()}

    def error_for(self, method: str) -> Unimplemented:
        service, name = split_method(method)
        here = ", ".join(self._served) or "no Edgewise service"
        if name in EDGEWISE_METHODS.get(service, ()) and service not in self._served:
            addresses = self._elsewhere.get(service, ())
            metadata = {"service": service, "method": method}
            where = "the port that serves it"
            if addresses:
                metadata.update(address=addresses[0], addresses=",".join(addresses))
                where = addresses[0] if len(addresses) == 1 else f"{addresses[0]} (or {', '.join(addresses[1:])})"
            return Unimplemented(f"{service} is not served on this port ({self._address} serves {here}); "
                                 f"call {where}", reason=Reason.SERVICE_NOT_SERVED_HERE, metadata=metadata)
        return Unimplemented(f"unknown method {method} (this port, {self._address}, serves {here}; "
                             f"reflection lists every service)", reason=Reason.METHOD_NOT_FOUND,
                             metadata={"service": service, "method": method})

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        error = self.error_for(handler_call_details.method)

        async def answer(request_iterator: Any, context: aio.ServicerContext) -> None:
            # a stream-stream handler answers any call shape without reading the request
            await context.abort_with_status(status_for(error))

        return PerCallHandler(grpc.stream_stream_rpc_method_handler(answer))


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
    elsewhere: Mapping[str, Sequence[str]] | None = None,
) -> RunningServer:
    """Build, register, bind and start a grpc.aio server. ``address`` may use port 0;
    ``RunningServer.port`` is the port actually bound. ``elsewhere``: the services other
    processes serve, and where (for SERVICE_NOT_SERVED_HERE)."""
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
    # last: only what no handler above took reaches it
    server.add_generic_rpc_handlers((UnservedMethods(address=address, served=service_names, elsewhere=elsewhere),))

    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise BindError(f"cannot bind gRPC server to {address} (in use by another process?): {exc}") from exc
    if not port:
        raise BindError(f"cannot bind gRPC server to {address} (in use by another process?)")
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
