"""Tiny gRPC upstreams for the edge's failure tests, in this process, on loopback.

Each answers grpc.health.v1 SERVING (so Envoy's active health checks keep it in the
cluster) and treats every other method as raw bytes, so no servicer code is needed:
- ``Forwarder``: relays each call to a real service; ``fail_first`` makes the first
  attempt of every call fail with UNAVAILABLE *after* the real service has answered
  (the write happened, the answer was lost: what an edge retry must survive);
- ``Unavailable``: every call fails with UNAVAILABLE after ``delay`` seconds;
- ``Slow``: every call sleeps ``delay`` seconds, noting its deadline and whether the
  caller (Envoy) cancelled it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.e2e.stack import free_port

IDEMPOTENCY_HEADER = "x-edgewise-request-id"


@dataclass
class Attempt:
    method: str
    key: str
    metadata: dict[str, str]
    time_remaining: float | None
    started: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)  # the RPC is over, however
    ended_after: float | None = None  # seconds from its start to its end (or its cancellation)
    response: bytes | None = None  # Forwarder: what the real service answered

    def end(self) -> None:
        self.ended_after = time.monotonic() - self.started
        self.ended.set()


class FakeUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=128))
        servicer = health.HealthServicer()
        for name in ("", "edgewise.graph.v1.GraphCommandService", "edgewise.graph.v1.GraphQueryService"):
            servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, self._server)
        self._server.add_generic_rpc_handlers((_Generic(self),))
        self._server.add_insecure_port(self.address)

    def start(self) -> "FakeUpstream":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0).wait(5)

    def record(self, method: str, request: bytes, context: grpc.ServicerContext) -> Attempt:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        key = metadata.get(IDEMPOTENCY_HEADER) or hashlib.sha256(request).hexdigest()
        attempt = Attempt(method, key, metadata, context.time_remaining())
        context.add_callback(attempt.end)
        with self._lock:
            self.attempts.append(attempt)
        return attempt

    def attempts_for(self, key: str) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if a.key == key]

    def handle(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        raise NotImplementedError


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream

    def service(self, handler_call_details):
        method = handler_call_details.method
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self.upstream.handle(method, request, context))


class Forwarder(FakeUpstream):
    def __init__(self, target: str, *, fail_first: bool = True) -> None:
        super().__init__()
        self.fail_first = fail_first
        self._channel = grpc.insecure_channel(target)

    def stop(self) -> None:
        super().stop()
        self._channel.close()

    def handle(self, method, request, context):
        attempt = self.record(method, request, context)
        forwarded = tuple((k, v) for k, v in attempt.metadata.items()
                          if k.startswith("x-") or k == "traceparent")
        call = self._channel.unary_unary(method)
        try:
            response = call(request, metadata=forwarded, timeout=attempt.time_remaining or 10)
        except grpc.RpcError as err:  # relayed whole: code, message and rich details
            context.set_trailing_metadata(err.trailing_metadata() or ())
            context.abort(err.code(), err.details() or "")
        attempt.response = response
        if self.fail_first and len(self.attempts_for(attempt.key)) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected: the answer was lost on the way back")
        return response


class Unavailable(FakeUpstream):
    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay

    def handle(self, method, request, context):
        self.record(method, request, context)
        time.sleep(self.delay)
        context.abort(grpc.StatusCode.UNAVAILABLE, "injected: unavailable")


class Slow(FakeUpstream):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def handle(self, method, request, context):
        attempt = self.record(method, request, context)
        attempt.ended.wait(self.delay)  # a cancelled call ends early
        return b""  # an empty message of any type
