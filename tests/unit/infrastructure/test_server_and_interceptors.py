"""The server factory and the interceptor chain, against a real in-process server."""

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from domain.errors import NotFound, Reason
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc as qg
from edgewise.graph.v1 import resources_pb2 as r
from infrastructure.grpc.context import current_context
from infrastructure.grpc.chain import default_interceptors
from infrastructure.grpc.server import (COMMAND_SERVICE_NAME, QUERY_SERVICE_NAME,
                                        start_server)
from infrastructure.logging import JsonFormatter
from tests.chain_support import error_info


class FakeQueries(qg.GraphQueryServiceServicer):
    def __init__(self):
        self.calls = 0
        self.seen_context = None

    async def GetNode(self, request, context):
        self.calls += 1
        self.seen_context = current_context()
        if request.name.endswith("/boom"):
            raise RuntimeError("secret internals")
        if request.name.endswith("/missing"):
            raise NotFound("node not found", resource_type="edgewise.graph.v1/Node",
                           resource_name=request.name, reason=Reason.NODE_NOT_FOUND)
        if request.name.endswith("/slow"):
            await asyncio.sleep(0.3)
        return q.GetNodeResponse(node=r.Node(name=request.name))

    async def WatchEvents(self, request, context):
        if request.parent == "graphs/forever":  # a live stream: it ends only when the caller cancels
            position = 0
            while True:
                position += 1
                yield q.WatchEventsResponse(event=r.Event(position=position))
                await asyncio.sleep(0.01)
        for position in (1, 2):
            yield q.WatchEventsResponse(event=r.Event(position=position))
        raise NotFound("graph gone", resource_type="edgewise.graph.v1/Graph",
                       resource_name=request.parent)


@pytest.fixture
async def served():
    servicer = FakeQueries()
    running = await start_server(
        address="127.0.0.1:0",
        register=lambda s: qg.add_GraphQueryServiceServicer_to_server(servicer, s),
        service_names=[QUERY_SERVICE_NAME], interceptors=default_interceptors(),
        elsewhere={COMMAND_SERVICE_NAME: ("127.0.0.1:7001",)})
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield running, servicer, channel
    finally:
        await channel.close()
        await running.stop(0)




async def test_ok_call_sees_the_request_context(served):
    running, servicer, channel = served
    stub = qg.GraphQueryServiceStub(channel)
    response = await stub.GetNode(q.GetNodeRequest(name="graphs/g/nodes/a"), timeout=5,
                                  metadata=[("x-request-id", "req-1"), ("traceparent",
                                            "00-" + "a" * 32 + "-" + "b" * 16 + "-01")])
    assert response.node.name == "graphs/g/nodes/a"
    ctx = servicer.seen_context
    assert ctx.request_id == "req-1"
    assert ctx.trace_id == "a" * 32
    assert 0 < ctx.time_remaining() <= 6  # 5 s deadline, measured a moment later on a loaded machine


async def test_validation_rejects_before_the_handler(served):
    _, servicer, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await qg.GraphQueryServiceStub(channel).GetNode(q.GetNodeRequest(name="bad"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(info.value).reason == "INVALID_NAME"
    assert servicer.calls == 0


async def test_domain_errors_become_rich_statuses(served):
    _, _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await qg.GraphQueryServiceStub(channel).GetNode(
            q.GetNodeRequest(name="graphs/g/nodes/missing"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(info.value).reason == "NODE_NOT_FOUND"


async def test_unexpected_errors_are_internal_and_opaque(served):
    _, _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await qg.GraphQueryServiceStub(channel).GetNode(
            q.GetNodeRequest(name="graphs/g/nodes/boom"), metadata=[("x-request-id", "r-9")])
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error (trace id r-9)"
    assert error_info(info.value).reason == "INTERNAL"


async def test_server_streaming_errors_are_mapped_after_messages(served):
    _, _, channel = served
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in qg.GraphQueryServiceStub(channel).WatchEvents(
                q.WatchEventsRequest(parent="graphs/g")):
            got.append(response.event.position)
    assert got == [1, 2]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(info.value).domain == "edgewise.graph.v1"


async def test_server_streaming_requests_are_validated(served):
    _, _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in qg.GraphQueryServiceStub(channel).WatchEvents(
                q.WatchEventsRequest(parent="graphs/g", page_size=-1)):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unimplemented_rpcs_say_so(served):
    _, _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await qg.GraphQueryServiceStub(channel).GetSchema(q.GetSchemaRequest(graph="graphs/g"))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_access_log_writes_one_json_line_per_call(served, caplog):
    _, _, channel = served
    caplog.set_level(logging.INFO, logger="edgewise.access")
    with pytest.raises(grpc.aio.AioRpcError):
        await qg.GraphQueryServiceStub(channel).GetNode(
            q.GetNodeRequest(name="graphs/g/nodes/missing"), metadata=[("x-request-id", "r-2")])
    # Only this call's lines: a call from an earlier test may log late into caplog. The server
    # writes the line after the status has left (abort sends it), so wait for it, boundedly.
    for _ in range(200):
        lines = [json.loads(JsonFormatter().format(rec)) for rec in caplog.records if rec.name == "edgewise.access"]
        lines = [line for line in lines if line.get("x_request_id") == "r-2"]
        if lines:
            break
        await asyncio.sleep(0.01)
    assert len(lines) == 1
    line = lines[0]
    assert line["grpc_method"] == "/edgewise.graph.v1.GraphQueryService/GetNode"
    assert line["grpc_code"] == "NOT_FOUND"
    assert line["x_request_id"] == "r-2"
    assert line["duration_ms"] >= 0


async def test_health_serves_each_name_and_flips_on_drain(served):
    running, _, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", QUERY_SERVICE_NAME):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await running.set_serving(False)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_stop_lets_in_flight_calls_finish(served):
    running, _, channel = served
    call = qg.GraphQueryServiceStub(channel).GetNode(q.GetNodeRequest(name="graphs/g/nodes/slow"))
    await asyncio.sleep(0.1)
    await running.stop(grace=2)
    assert (await call).node.name == "graphs/g/nodes/slow"


async def test_reflection_lists_both_services(served):
    running, _, _ = served
    grpcurl = (shutil.which("grpcurl", path=os.path.dirname(sys.executable))
               or shutil.which("grpcurl"))
    if grpcurl is None:
        pytest.skip("grpcurl not installed")
    proc = await asyncio.create_subprocess_exec(
        grpcurl, "-plaintext", f"127.0.0.1:{running.port}", "list",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    listed = out.decode().split()
    assert COMMAND_SERVICE_NAME in listed and QUERY_SERVICE_NAME in listed
    assert "grpc.health.v1.Health" in listed


async def test_binding_a_taken_port_fails_loudly(served):
    from infrastructure.grpc.server import BindError

    running, _, _ = served
    with pytest.raises(BindError, match="in use by another process"):
        await start_server(address=f"127.0.0.1:{running.port}", register=lambda s: None,
                           service_names=[], interceptors=[])


def _raw(channel, method: str, streaming: bool = False):
    call = channel.unary_stream if streaming else channel.unary_unary
    return call(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)


async def test_the_other_service_is_unimplemented_naming_where_it_is_served(served):
    running, servicer, channel = served
    from edgewise.graph.v1 import command_service_pb2 as c
    from edgewise.graph.v1 import command_service_pb2_grpc as cg

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await cg.GraphCommandServiceStub(channel).CreateNode(c.CreateNodeRequest(parent="graphs/g"),
                                                            metadata=[("x-request-id", "r-77")])
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    info_ = error_info(info.value)
    assert (info_.reason, info_.domain) == ("SERVICE_NOT_SERVED_HERE", "edgewise.graph.v1")
    assert dict(info_.metadata) == {"service": COMMAND_SERVICE_NAME, "address": "127.0.0.1:7001",
                                    "addresses": "127.0.0.1:7001", "request_id": "r-77",
                                    "method": "/edgewise.graph.v1.GraphCommandService/CreateNode",
                                    "trace_id": "r-77"}
    assert "call 127.0.0.1:7001" in info.value.details()
    assert servicer.calls == 0


@pytest.mark.parametrize("method", ["/edgewise.graph.v1.GraphQueryService/NoSuchMethod",
                                    "/edgewise.graph.v1.GraphCommandService/NoSuchMethod",
                                    "/no.such.Service/Call", "/grpc.health.v1.Health/Nope"])
@pytest.mark.parametrize("streaming", [False, True])
async def test_an_unknown_method_is_unimplemented_with_an_error_info(served, method, streaming):
    _, _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        call = _raw(channel, method, streaming)(b"")
        if streaming:
            async for _ in call:
                pass
        else:
            await call
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    info_ = error_info(info.value)
    assert info_.reason == "METHOD_NOT_FOUND"
    assert info_.metadata["method"] == method
    assert "unknown method" in info.value.details()


async def test_invented_method_names_do_not_grow_the_interceptors_caches():
    chain = default_interceptors()
    servicer = FakeQueries()
    running = await start_server(address="127.0.0.1:0", service_names=[QUERY_SERVICE_NAME], interceptors=chain,
                                 register=lambda s: qg.add_GraphQueryServiceServicer_to_server(servicer, s))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            await qg.GraphQueryServiceStub(channel).GetNode(q.GetNodeRequest(name="graphs/g/nodes/a"))
            for i in range(50):
                with pytest.raises(grpc.aio.AioRpcError):
                    await _raw(channel, f"/edgewise.graph.v1.GraphQueryService/Invented{i}")(b"")
    finally:
        await running.stop(0)
    for interceptor in chain:
        assert list(interceptor._wrapped) == ["/edgewise.graph.v1.GraphQueryService/GetNode"]


async def test_the_unknown_method_answer_is_logged_and_health_probes_log_at_debug(served, caplog):
    _, _, channel = served
    caplog.set_level(logging.DEBUG, logger="edgewise.access")
    with pytest.raises(grpc.aio.AioRpcError):
        await _raw(channel, "/x.Y/Z")(b"", metadata=[("x-request-id", "r-unknown")])
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                    metadata=[("x-request-id", "r-health")])
    mine = {rec.__dict__["fields"]["x_request_id"]: rec for rec in caplog.records
            if rec.name == "edgewise.access" and rec.__dict__.get("fields", {}).get("x_request_id", "").startswith("r-")}
    assert mine["r-unknown"].levelno == logging.INFO
    assert mine["r-unknown"].__dict__["fields"]["grpc_code"] == "UNIMPLEMENTED"
    assert mine["r-health"].levelno == logging.DEBUG


async def test_a_cancelled_stream_is_cancelled_not_internal(served, caplog):
    """Issue 8's defect: a caller cancelling WatchEvents was logged as INTERNAL (the request
    context's token was reset in another Context when grpc closed the stream), with a
    'Task exception was never retrieved' on the loop."""
    import gc
    import logging

    _, _, channel = served
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    with caplog.at_level(logging.DEBUG):
        for timeout in (None, 0.2, None):  # cancelled by the caller, ended by its deadline, cancelled
            call = qg.GraphQueryServiceStub(channel).WatchEvents(q.WatchEventsRequest(parent="graphs/forever"),
                                                                 timeout=timeout)
            got = 0
            try:
                async for _response in call:
                    got += 1
                    if timeout is None and got == 3:
                        break
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            call.cancel()
        await asyncio.sleep(0.3)  # the server notices the cancellations and closes the streams
        gc.collect()
        await asyncio.sleep(0.05)
    access = [rec for rec in caplog.records if rec.name == "edgewise.access" and "WatchEvents" in rec.getMessage()]
    assert len(access) == 3, [rec.getMessage() for rec in access]
    assert all(getattr(rec, "fields", {}).get("grpc_code") in ("CANCELLED", "DEADLINE_EXCEEDED") for rec in access), \
        [getattr(rec, "fields", {}) for rec in access]
    problems = [rec.getMessage() for rec in caplog.records
                if "different Context" in rec.getMessage() or "INTERNAL" in rec.getMessage()
                or (rec.exc_info and "different Context" in str(rec.exc_info[1]))]
    assert not problems, problems
    assert not loop_errors, loop_errors
