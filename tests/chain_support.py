"""An in-process GraphQueryService with the real interceptor chain, for the rate limit and
metrics tests: a fake servicer, a test-only interceptor that fills in the call's principal
and graph (standing in for authentication and authorization), and a clock to move by hand."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from domain.errors import NotFound, PermissionDenied, Reason, Unauthenticated
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc as qg
from edgewise.graph.v1 import resources_pb2 as r
from infrastructure.config import RateLimitSettings
from infrastructure.grpc.chain import build_interceptors
from infrastructure.grpc.context import current_facts
from infrastructure.grpc.interceptors import ValidationInterceptor, _drain, _WrappingInterceptor
from infrastructure.grpc.ratelimit import RateLimitInterceptor
from infrastructure.grpc.server import QUERY_SERVICE_NAME, start_server
from infrastructure.security.principal import SCOPES, Principal

PRINCIPAL_METADATA = "x-test-principal"
# "unauthenticated:<reason>" or "denied:<reason>": FakeAuth refuses the call as authentication or
# authorization would
REFUSE_METADATA = "x-test-refuse"


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeQueries(qg.GraphQueryServiceServicer):
    """GetNode: OK, or NOT_FOUND for ``.../missing``; WatchEvents on ``graphs/forever`` streams
    until the caller cancels."""

    def __init__(self) -> None:
        self.calls = 0

    async def GetNode(self, request, context):
        self.calls += 1
        if request.name.endswith("/missing"):
            raise NotFound("node not found", resource_type="edgewise.graph.v1/Node",
                           resource_name=request.name, reason=Reason.NODE_NOT_FOUND)
        return q.GetNodeResponse(node=r.Node(name=request.name))

    async def WatchEvents(self, request, context):
        self.calls += 1
        position = 0
        while True:
            position += 1
            yield q.WatchEventsResponse(event=r.Event(position=position))
            await asyncio.sleep(0.01)


def _graph_of(request: Any) -> str:
    for field in ("name", "parent"):
        value = getattr(request, field, "")
        if isinstance(value, str) and value.startswith("graphs/"):
            return value.split("/")[1]
    return ""


class FakeAuth(_WrappingInterceptor):
    """Test only, in place of authentication and authorization: the principal named by the
    ``x-test-principal`` header, the graph from the request's name/parent."""

    def _fill(self, request: Any, context: Any) -> None:
        facts = current_facts()
        for key, value in context.invocation_metadata() or ():
            if key == REFUSE_METADATA:
                kind, _, reason = value.partition(":")
                if kind == "unauthenticated":
                    raise Unauthenticated("no valid token", reason=reason)
                raise PermissionDenied("not allowed", reason=reason)
            if key == PRINCIPAL_METADATA:
                facts.principal = Principal(subject=value, graphs=("*",), scopes=frozenset(SCOPES))
        facts.graph = _graph_of(request)

    async def around_unary(self, method, behavior, request, context):
        self._fill(request, context)
        return await behavior(request, context)

    async def around_stream(self, method, behavior, request, context):
        self._fill(request, context)
        async for item in _drain(behavior, request, context):
            yield item


def chain(limiter: RateLimitInterceptor, metrics: Any = None) -> list[Any]:
    """The real chain (chain.py), its rate limiter replaced by ``limiter`` and FakeAuth where
    authentication and authorization sit (just outside the rate limiter)."""
    built = [i for i in build_interceptors(None, metrics=metrics) if not isinstance(i, RateLimitInterceptor)]
    at = next(n for n, i in enumerate(built) if isinstance(i, ValidationInterceptor))
    return built[:at] + [FakeAuth(), limiter] + built[at:]


@asynccontextmanager
async def served_fake_queries(limits: RateLimitSettings, clock: ManualClock,
                              metrics: Any = None) -> AsyncIterator[tuple[qg.GraphQueryServiceStub, Any, FakeQueries]]:
    """(stub, channel, servicer) of a loopback server running ``chain``."""
    servicer = FakeQueries()
    limiter = RateLimitInterceptor(limits, clock=clock)
    running = await start_server(address="127.0.0.1:0",
                                 register=lambda s: qg.add_GraphQueryServiceServicer_to_server(servicer, s),
                                 service_names=[QUERY_SERVICE_NAME], interceptors=chain(limiter, metrics))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield qg.GraphQueryServiceStub(channel), channel, servicer
    finally:
        await channel.close()
        await running.stop(0)


def details(err: grpc.aio.AioRpcError) -> dict[str, list[Any]]:
    """The rich status details of an error, by type name."""
    out: dict[str, list[Any]] = {}
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.QuotaFailure):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                out.setdefault(kind.__name__, []).append(message)
    return out


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo of ``err``'s rich status (every Edgewise error has exactly one)."""
    status = rpc_status.from_call(err)
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    assert len(infos) == 1
    return infos[0]
