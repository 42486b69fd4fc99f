"""The edge's idempotency key (ADR 0013): a command that carries ``x-edgewise-request-id``
is retried by Envoy, so the command service refuses it unless the header equals the body's
``request_id`` (a UUID4). Checked by the rule function and through the interceptor chain."""

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from edgewise.graph.v1 import command_service_pb2 as c
from edgewise.graph.v1 import command_service_pb2_grpc as cg
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as r
from infrastructure.grpc.chain import default_interceptors
from infrastructure.grpc.server import COMMAND_SERVICE_NAME, start_server
from infrastructure.grpc.validation import (COMMAND_SERVICE, IDEMPOTENCY_HEADER, QUERY_SERVICE,
                                            idempotency_header_violations)

UUID = "3f1c0c2e-8d1a-4c1e-9a7b-2f0c1d2e3f4a"
OTHER = "9b2e4f1a-0c3d-4e5f-8a7b-6c5d4e3f2a1b"
CREATE = f"/{COMMAND_SERVICE}/CreateNode"


def create(request_id: str = "") -> c.CreateNodeRequest:
    return c.CreateNodeRequest(parent="graphs/g", node=r.Node(type="P"), request_id=request_id)


@pytest.mark.parametrize("header,body", [((), ""), ((), UUID), ((UUID,), UUID)])
def test_no_header_or_an_equal_one_passes(header, body):
    assert idempotency_header_violations(CREATE, create(body), header) == []


@pytest.mark.parametrize("header,body", [
    ((UUID,), ""),           # the header promises an idempotent call, the body has no request_id
    ((UUID,), OTHER),        # replays would be keyed by another id
    (("",), ""),             # an empty header is no key
    (("not-a-uuid",), "not-a-uuid"),
    ((UUID, UUID), UUID),    # sent twice: which one would Envoy have matched?
])
def test_a_header_that_does_not_match_the_body_is_refused(header, body):
    found = idempotency_header_violations(CREATE, create(body), header)
    assert [v.field for v in found] == ["request_id"]
    assert IDEMPOTENCY_HEADER in found[0].description


def test_queries_are_not_checked():
    assert idempotency_header_violations(f"/{QUERY_SERVICE}/GetNode",
                                         q.GetNodeRequest(name="graphs/g/nodes/a"), (UUID,)) == []


class FakeCommands(cg.GraphCommandServiceServicer):
    def __init__(self):
        self.calls = 0

    async def CreateNode(self, request, context):
        self.calls += 1
        return c.CreateNodeResponse(node=r.Node(name="graphs/g/nodes/a"))


@pytest.fixture
async def served():
    servicer = FakeCommands()
    running = await start_server(
        address="127.0.0.1:0", register=lambda s: cg.add_GraphCommandServiceServicer_to_server(servicer, s),
        service_names=[COMMAND_SERVICE_NAME], interceptors=default_interceptors())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield servicer, cg.GraphCommandServiceStub(channel)
    finally:
        await channel.close()
        await running.stop(0)


async def test_the_interceptor_refuses_a_mismatch_before_the_handler_runs(served):
    servicer, stub = served
    await stub.CreateNode(create(UUID), metadata=((IDEMPOTENCY_HEADER, UUID),))
    await stub.CreateNode(create(""))
    assert servicer.calls == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateNode(create(""), metadata=((IDEMPOTENCY_HEADER, UUID),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [v.field for v in bad.field_violations]
    assert violations == ["request_id"]
    assert servicer.calls == 2


async def test_the_access_line_keeps_the_callers_id_and_the_idempotency_key_apart(served, caplog):
    import asyncio
    import json
    import logging

    from infrastructure.logging import JsonFormatter

    _, stub = served
    caplog.set_level(logging.INFO, logger="edgewise.access")
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    await stub.CreateNode(create(UUID), metadata=(("x-request-id", "caller-1"), ("traceparent", traceparent)))
    for _ in range(200):  # bounded: the line is written as the call returns
        lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "edgewise.access"]
        lines = [line for line in lines if line.get("x_request_id") == "caller-1"]
        if lines:
            break
        await asyncio.sleep(0.01)
    (line,) = lines
    assert line["grpc_code"] == "OK" and line["grpc_method"] == CREATE
    assert line["idempotency_request_id"] == UUID and line["x_request_id"] == "caller-1"
    assert line["trace_id"] == "a" * 32
    assert line["principal"] == "dev" and line["graph"] == "g"  # an in-process server: dev authentication
    assert "request_id" not in line  # never one ambiguous key for two ids
