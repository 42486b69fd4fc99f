"""The authentication interceptor in the real chain (chain.build_interceptors with jwt auth),
over a real in-process grpc.aio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import jwt as pyjwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from domain.errors import Reason
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc as qg
from edgewise.graph.v1 import resources_pb2 as r
from infrastructure.config import AuthSettings, Settings
from infrastructure.grpc.chain import build_interceptors, chain_names
from infrastructure.grpc.context import current_facts
from infrastructure.grpc.server import QUERY_SERVICE_NAME, start_server
from infrastructure.security.principal import SCOPES
from tests.chain_support import error_info

SECRET = "interceptor-test-secret-0123456789abcdef"
WAIT = 20.0  # the bound on any wait below (a loaded 2-core machine); the tests take ~2 s


def settings() -> Settings:
    return Settings(db_path=":memory:", token_secret=b"x" * 32,
                    auth=AuthSettings(mode="jwt", hs256_secrets=(("k1", SECRET),), leeway_seconds=0))


def token(*, ttl: float = 600.0, secret: str | None = SECRET, algorithm: str = "HS256", kid: str = "k1",
          **claims: object) -> str:
    payload = {"iss": "edgewise", "aud": "edgewise", "sub": "alice", "graphs": ["*"], "scope": " ".join(SCOPES),
               "exp": time.time() + ttl, **claims}
    return pyjwt.encode(payload, secret, algorithm=algorithm, headers={"kid": kid})


def bearer(value: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {value}")]


class Queries(qg.GraphQueryServiceServicer):
    def __init__(self) -> None:
        self.calls = 0
        self.principals: list[str] = []
        self.stream_ended = asyncio.Event()

    async def GetNode(self, request, context):
        self.calls += 1
        self.principals.append(current_facts().principal.subject)
        return q.GetNodeResponse(node=r.Node(name=request.name))

    async def WatchEvents(self, request, context):
        self.principals.append(current_facts().principal.subject)
        try:
            yield q.WatchEventsResponse(event=r.Event(position=1))
            if request.parent == "graphs/idle":  # no event ever comes again
                await asyncio.Event().wait()
            position = 1
            while True:  # busy: an event every 10 ms
                position += 1
                await asyncio.sleep(0.01)
                yield q.WatchEventsResponse(event=r.Event(position=position))
        finally:
            self.stream_ended.set()


@pytest.fixture
async def served():
    servicer = Queries()
    running = await start_server(address="127.0.0.1:0", service_names=[QUERY_SERVICE_NAME],
                                 interceptors=build_interceptors(settings()),
                                 register=lambda s: qg.add_GraphQueryServiceServicer_to_server(servicer, s))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield servicer, channel
    finally:
        await channel.close()
        await running.stop(0)




def test_authentication_sits_right_inside_storage_cost():
    names = chain_names()
    assert names.index("authentication") == names.index("storage_cost") + 1
    assert names.index("authentication") > names.index("error_mapping")


@pytest.mark.parametrize("metadata, reason", [
    ([], Reason.TOKEN_MISSING),
    ([("authorization", "Basic dXNlcjpwYXNz")], Reason.TOKEN_MALFORMED),
    (bearer("not-a-jwt"), Reason.TOKEN_MALFORMED),
    (bearer(token(secret="another-secret-another-secret-0123456789")), Reason.TOKEN_SIGNATURE_INVALID),
    (bearer(token(ttl=-5)), Reason.TOKEN_EXPIRED),
    (bearer(token(nbf=time.time() + 600)), Reason.TOKEN_NOT_YET_VALID),
    (bearer(token(secret=None, algorithm="none")), Reason.TOKEN_ALGORITHM_NOT_ALLOWED),
    (bearer(token(kid="k9")), Reason.TOKEN_KEY_UNKNOWN),
    (bearer(token(aud="elsewhere")), Reason.TOKEN_AUDIENCE_INVALID),
    (bearer(token(iss="elsewhere")), Reason.TOKEN_ISSUER_INVALID),
    (bearer(token(graphs=None)), Reason.TOKEN_CLAIMS_INVALID),
], ids=["missing", "not-bearer", "malformed", "wrong-signature", "expired", "not-yet-valid", "alg-none",
        "unknown-kid", "wrong-audience", "wrong-issuer", "no-graphs"])
async def test_a_call_without_a_good_token_is_unauthenticated(served, metadata, reason):
    servicer, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await qg.GraphQueryServiceStub(channel).GetNode(q.GetNodeRequest(name="graphs/g/nodes/a"),
                                                       metadata=metadata, timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    detail = error_info(info.value)
    assert (detail.reason, detail.domain) == (reason, "edgewise.graph.v1")
    assert servicer.calls == 0


async def test_unauthenticated_comes_before_validation(served):
    servicer, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await qg.GraphQueryServiceStub(channel).GetNode(q.GetNodeRequest(name="bad"), timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_good_token_reaches_the_handler_with_its_principal(served):
    servicer, channel = served
    response = await qg.GraphQueryServiceStub(channel).GetNode(
        q.GetNodeRequest(name="graphs/g/nodes/a"), metadata=bearer(token()), timeout=WAIT)
    assert response.node.name == "graphs/g/nodes/a"
    assert servicer.principals == ["alice"]


async def test_a_stream_without_a_token_is_unauthenticated(served):
    servicer, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in qg.GraphQueryServiceStub(channel).WatchEvents(q.WatchEventsRequest(parent="graphs/g"),
                                                                     timeout=WAIT):
            pass
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(info.value).reason == Reason.TOKEN_MISSING
    assert servicer.principals == []


async def test_health_and_reflection_are_open(served):
    _, channel = served
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=WAIT)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await call.read()
    await call.done_writing()
    listed = [service.name for service in answer.list_services_response.service]
    assert QUERY_SERVICE_NAME in listed


@pytest.mark.parametrize("parent", ["graphs/idle", "graphs/busy"])
async def test_a_stream_ends_unauthenticated_when_its_token_expires(served, parent, caplog):
    """Idle (waiting for an event that never comes) or busy: the stream ends at exp, TOKEN_EXPIRED."""
    servicer, channel = served
    caplog.set_level(logging.INFO, logger="edgewise.access")
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    opened = time.time()
    call = qg.GraphQueryServiceStub(channel).WatchEvents(q.WatchEventsRequest(parent=parent),
                                                         metadata=bearer(token(ttl=1.5)), timeout=WAIT)
    got = []

    async def consume() -> None:
        async for response in call:
            got.append(response.event.position)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(consume(), WAIT)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(info.value).reason == Reason.TOKEN_EXPIRED
    assert "new token" in info.value.details()
    assert got[0] == 1 and time.time() - opened >= 1.0  # it ran until the token expired, not before
    await asyncio.wait_for(servicer.stream_ended.wait(), WAIT)  # the handler below was ended too
    assert servicer.principals == ["alice"]  # authenticated once, at open
    lines = []
    for _ in range(int(WAIT / 0.05)):  # the access line is written as the stream closes
        lines = [rec.__dict__["fields"] for rec in caplog.records
                 if rec.name == "edgewise.access" and "WatchEvents" in rec.getMessage()]
        if lines:
            break
        await asyncio.sleep(0.05)
    assert [line["grpc_code"] for line in lines] == ["UNAUTHENTICATED"]
    assert not loop_errors, loop_errors


async def test_a_stream_the_caller_cancels_is_cancelled_not_unauthenticated(served, caplog):
    servicer, channel = served
    caplog.set_level(logging.INFO, logger="edgewise.access")
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    call = qg.GraphQueryServiceStub(channel).WatchEvents(q.WatchEventsRequest(parent="graphs/idle"),
                                                         metadata=bearer(token()), timeout=WAIT)
    first = await asyncio.wait_for(call.read(), WAIT)
    assert first.event.position == 1
    call.cancel()
    await asyncio.wait_for(servicer.stream_ended.wait(), WAIT)
    lines = []
    for _ in range(int(WAIT / 0.05)):
        lines = [rec.__dict__["fields"] for rec in caplog.records
                 if rec.name == "edgewise.access" and "WatchEvents" in rec.getMessage()]
        if lines:
            break
        await asyncio.sleep(0.05)
    assert [line["grpc_code"] for line in lines] == ["CANCELLED"]
    assert not loop_errors, loop_errors


def test_a_key_that_cannot_verify_stops_the_service_with_exit_2(tmp_path, capsys, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from infrastructure import process

    pem = tmp_path / "ed.pem"
    pem.write_bytes(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setattr(process, "configure_logging", lambda level, service="": None)

    async def main(settings_: Settings) -> None:
        build_interceptors(settings_)

    env = {"EDGEWISE_DB_PATH": str(tmp_path / "e.db"), "EDGEWISE_TOKEN_SECRET": "0123456789abcdef0123",
           "EDGEWISE_JWT_PUBLIC_KEYS": f"edkey={pem}"}
    assert process.run_service("test service", main, env=env) == process.EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "'edkey'" in err and "Traceback" not in err
