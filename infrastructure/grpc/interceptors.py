"""grpc.aio server interceptors, one job each (DESIGN §6).

Assembled in one place, outermost first: infrastructure/grpc/chain.py. Each wraps the method handler's behaviour, so it
runs inside the RPC's own task and sees contextvars set by the ones outside it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc import aio

from domain.errors import DomainError
from infrastructure.persistence.dynamodb.capacity import CapacityUsage, capacity_scope
from infrastructure.grpc import validation
from infrastructure.grpc.context import RequestContext, current_context, current_facts, request_scope
from infrastructure.grpc.errors import code_for, status_for

REQUEST_ID_METADATA = "x-request-id"
TRACEPARENT_METADATA = "traceparent"
# Health probes (Envoy, Kubernetes, make run) call every few seconds: their access lines are DEBUG.
QUIET_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)

_access_log = logging.getLogger("edgewise.access")

# A unary wrapper gets (behavior, request, context) and returns the response; a stream
# wrapper gets (behavior, request_or_iterator, context) and is an async generator.
UnaryWrapper = Callable[[Callable[..., Awaitable[Any]], Any, aio.ServicerContext], Awaitable[Any]]
StreamWrapper = Callable[[Callable[..., Any], Any, aio.ServicerContext], Any]


async def _drain(behavior: Callable[..., Any], request: Any, context: aio.ServicerContext):
    """Run a response-streaming behaviour as an async generator, whatever its style."""
    result = behavior(request, context)
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif asyncio.iscoroutine(result):
        await result  # the handler wrote with context.write()
    else:
        for item in result:
            yield item


def _as_async(behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Let a plain-function unary behaviour sit under the async wrappers."""

    async def call(request, context):
        result = behavior(request, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    return call


class PerCallHandler(grpc.RpcMethodHandler):
    """A method handler built for one call (the UNIMPLEMENTED fallback answers any method
    name a caller invents): interceptors wrap it without remembering it per method, so
    invented names cannot grow their caches. Wrapping keeps the mark."""

    _FIELDS = ("request_streaming", "response_streaming", "request_deserializer", "response_serializer",
               "unary_unary", "unary_stream", "stream_unary", "stream_stream")

    def __init__(self, handler: grpc.RpcMethodHandler) -> None:
        for name in self._FIELDS:
            setattr(self, name, getattr(handler, name))


def wrap_handler(handler: grpc.RpcMethodHandler | None, *, unary: UnaryWrapper,
                 stream: StreamWrapper) -> grpc.RpcMethodHandler | None:
    """A copy of ``handler`` whose behaviour runs through ``unary``/``stream``."""
    if handler is None:
        return None
    wrapped = _wrap(handler, unary, stream)
    return PerCallHandler(wrapped) if isinstance(handler, PerCallHandler) else wrapped


def _wrap(handler: grpc.RpcMethodHandler, unary: UnaryWrapper, stream: StreamWrapper) -> grpc.RpcMethodHandler:
    """``unary``/``stream`` take (behavior, request, context). The new behaviours are partials of
    them with the handler's behaviour bound: calling one returns the wrapper's own coroutine or
    async generator, with no frame of ours in between (a call passes ~9 interceptors; grpc, like
    ``inspect``, sees through a partial to the coroutine or async generator function inside)."""
    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(partial(unary, _as_async(handler.unary_unary)), **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(partial(unary, _as_async(handler.stream_unary)), **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(partial(stream, handler.unary_stream), **kwargs)
    return grpc.stream_stream_rpc_method_handler(partial(stream, handler.stream_stream), **kwargs)


class _WrappingInterceptor(aio.ServerInterceptor):
    """Base: subclasses implement ``around_unary`` and ``around_stream``.

    grpc calls ``intercept_service`` on every RPC. The wrapped handler depends only on the
    method and the handler below, which the server keeps for the method's lifetime, so it
    is built once per method and reused while the handler below stays the same object."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler | None]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: nothing to remember
            return None
        method = handler_call_details.method
        if isinstance(handler, PerCallHandler):  # built for this call: wrap, never remember
            return wrap_handler(handler, unary=partial(self.around_unary, method),
                                stream=partial(self.around_stream, method))
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = wrap_handler(handler, unary=partial(self.around_unary, method),
                               stream=partial(self.around_stream, method))
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    async def around_unary(self, method, behavior, request, context):  # pragma: no cover
        return await behavior(request, context)

    async def around_stream(self, method, behavior, request, context):  # pragma: no cover
        async for item in _drain(behavior, request, context):
            yield item


def _metadata_value(context: aio.ServicerContext, key: str) -> str:
    for item in context.invocation_metadata() or ():
        if item[0] == key and isinstance(item[1], str):
            return item[1]
    return ""


def _metadata_values(context: aio.ServicerContext, key: str) -> list[str]:
    return [item[1] for item in context.invocation_metadata() or () if item[0] == key]


def _new_request_context(method: str, context: aio.ServicerContext) -> RequestContext:
    request_id = _metadata_value(context, REQUEST_ID_METADATA)[:128] or str(uuid.uuid4())
    remaining = context.time_remaining()
    deadline = time.monotonic() + remaining if remaining is not None else None
    return RequestContext(request_id=request_id,
                          traceparent=_metadata_value(context, TRACEPARENT_METADATA)[:128],
                          method=method, deadline=deadline)


class RequestContextInterceptor(_WrappingInterceptor):
    """Request id (``x-request-id`` or a new UUID4), traceparent and deadline into the
    request contextvar (infrastructure.grpc.context)."""

    async def around_unary(self, method, behavior, request, context):
        with request_scope(_new_request_context(method, context)):
            return await behavior(request, context)

    async def around_stream(self, method, behavior, request, context):
        with request_scope(_new_request_context(method, context)):
            async for item in _drain(behavior, request, context):
                yield item


def _idempotency_key(request: Any) -> str:
    """A command's body ``request_id`` (its idempotency key; a UUID4 once validated), clipped:
    logged under its own key, apart from the caller's ``x-request-id``."""
    value = getattr(request, "request_id", "") if not _is_iterator(request) else ""
    return value[:64] if isinstance(value, str) else ""


def call_code(context: aio.ServicerContext, exc: BaseException | None) -> str:
    """How a call ended, as a gRPC code name ("OK", "NOT_FOUND" ...), for everything that
    reports outcomes (the access log, the metrics): ``exc`` is what the call raised through
    the reporting interceptor, None when it returned."""
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        # GeneratorExit: grpc closed a response stream the caller cancelled or let time out
        return "CANCELLED"
    if exc is not None and not isinstance(exc, aio.AbortError):
        return str(code_for(exc).name)
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "OK" if code in (None, 0) else str(code)


def _log_call(method: str, context: aio.ServicerContext, started: float,
              exc: BaseException | None, messages: int | None = None, idempotency_request_id: str = "") -> None:
    code_name = call_code(context, exc)
    ctx = current_context()
    facts = ctx.facts
    fields: dict[str, object] = {
        "grpc_method": method,
        "grpc_code": code_name,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "principal": facts.principal_name,
        "graph": facts.graph,
        "x_request_id": ctx.request_id,
    }
    if idempotency_request_id:
        fields["idempotency_request_id"] = idempotency_request_id
    if ctx.trace_id:
        fields["trace_id"] = ctx.trace_id
    if messages is not None:
        fields["messages_sent"] = messages
    level = logging.DEBUG if method.startswith(QUIET_METHOD_PREFIXES) else logging.INFO
    _access_log.log(level, "rpc %s %s", method, code_name, extra={"fields": fields})


class ObservingInterceptor(_WrappingInterceptor):
    """Base of the interceptors that only watch a call (the access log, the metrics): ``started``
    runs before it and returns what ``finished`` gets back once it ended, with what it raised
    (None when it returned) and, for a response stream, how many messages it sent."""

    def started(self, method: str, request: Any, context: aio.ServicerContext) -> Any:
        return None

    def finished(self, method: str, request: Any, context: aio.ServicerContext, state: Any,
                 exc: BaseException | None, messages: int | None) -> None:
        pass

    async def around_unary(self, method, behavior, request, context):
        state = self.started(method, request, context)
        exc: BaseException | None = None
        try:
            return await behavior(request, context)
        except BaseException as e:
            exc = e
            raise
        finally:
            self.finished(method, request, context, state, exc, None)

    async def around_stream(self, method, behavior, request, context):
        state = self.started(method, request, context)
        exc: BaseException | None = None
        sent = 0
        try:
            async for item in _drain(behavior, request, context):
                sent += 1
                yield item
        except BaseException as e:
            exc = e
            raise
        finally:
            self.finished(method, request, context, state, exc, sent)


class AccessLogInterceptor(ObservingInterceptor):
    """One JSON log line per call: method, code, duration, principal, graph, the caller's
    ``x-request-id``, a command's idempotency ``request_id`` and the trace id. Never a token,
    a secret or a property value: only these fields are written."""

    def started(self, method, request, context):
        return time.perf_counter()

    def finished(self, method, request, context, state, exc, messages):
        _log_call(method, context, state, exc, messages, idempotency_request_id=_idempotency_key(request))


def _passes_through(exc: BaseException) -> bool:
    """Exceptions that already are a gRPC outcome, or that belong to the runtime."""
    return isinstance(exc, (aio.AbortError, asyncio.CancelledError, GeneratorExit,
                            KeyboardInterrupt, SystemExit))


def _note_reason(exc: BaseException) -> None:
    """The domain error's reason into the call's facts, for the metrics above (which see only
    the status this interceptor aborts with)."""
    if isinstance(exc, DomainError):
        current_facts().error_reason = exc.reason


class ErrorMappingInterceptor(_WrappingInterceptor):
    """Turn any exception a handler raises into the rich status of errors.status_for."""

    async def around_unary(self, method, behavior, request, context):
        try:
            return await behavior(request, context)
        except BaseException as exc:
            if _passes_through(exc):
                raise
            _note_reason(exc)
            await context.abort_with_status(status_for(exc))

    async def around_stream(self, method, behavior, request, context):
        try:
            async for item in _drain(behavior, request, context):
                yield item
        except BaseException as exc:
            if _passes_through(exc):
                raise
            _note_reason(exc)
            await context.abort_with_status(status_for(exc))


class ValidationInterceptor(_WrappingInterceptor):
    """Apply the rule table (infrastructure.grpc.validation) before the handler runs, and
    on commands the edge's idempotency key (its header equals the body's request_id).
    Client-streaming requests are not validated here (no such RPC exists)."""

    async def around_unary(self, method, behavior, request, context):
        if not _is_iterator(request):
            validation.validate(method, request)
            validation.check_idempotency_header(method, request, _metadata_values(
                context, validation.IDEMPOTENCY_HEADER))
        return await behavior(request, context)

    async def around_stream(self, method, behavior, request, context):
        if not _is_iterator(request):
            validation.validate(method, request)
        async for item in _drain(behavior, request, context):
            yield item


def _is_iterator(request: Any) -> bool:
    """A client-streaming request (an async iterator), not a message. Every call asks (the access
    log, authorization, validation): a message answers at once, without the two failed
    attribute lookups a protobuf message makes expensive."""
    if isinstance(request, Message):
        return False
    return hasattr(request, "__aiter__") or hasattr(request, "__anext__")


STORAGE_CALLS_METADATA = "x-edgewise-storage-calls"
CAPACITY_UNITS_METADATA = "x-edgewise-capacity-units"


def _cost_metadata(usage: CapacityUsage) -> tuple[tuple[str, str], ...]:
    calls = ",".join(f"{name}={op.calls}" for name, op in sorted(usage.operations.items()))
    return ((STORAGE_CALLS_METADATA, calls), (CAPACITY_UNITS_METADATA, f"{usage.capacity_units:g}"))


class StorageCostInterceptor(_WrappingInterceptor):
    """What a call cost the store, summed per RPC: every DynamoDB call records into the
    call's capacity scope (ReturnConsumedCapacity=TOTAL), and the total goes back to the
    caller in trailing metadata (``x-edgewise-storage-calls: BatchGetItem=3,GetItem=1``,
    ``x-edgewise-capacity-units: 4.5``) and into the access log at DEBUG. On SQLite nothing
    records, and nothing is added."""

    async def around_unary(self, method, behavior, request, context):
        with capacity_scope() as usage:
            try:
                return await behavior(request, context)
            finally:
                if usage.calls:
                    context.set_trailing_metadata(_cost_metadata(usage))
                    _access_log.debug("storage cost %s %s", method, usage.capacity_units,
                                      extra={"fields": {"grpc_method": method, "storage": usage.as_dict()}})

    async def around_stream(self, method, behavior, request, context):
        with capacity_scope():  # a stream's cost is not sent (it has no end worth waiting for)
            async for item in _drain(behavior, request, context):
                yield item
