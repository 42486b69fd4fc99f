"""Authentication over the wire: every way a bearer token can be wrong, with its status code and
ErrorInfo reason, on both services; the keys that do verify (HS256 secret, RS256 and ES256 PEM
keys, a JWKS file); scopes; graph patterns; the open health and reflection services; the CLI's
token; and a WatchEvents stream that ends when its token expires."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from tests.e2e.stack import ROOT
from tests.e2e.test_grpcurl import GRPCURL
from tests.security.support import (
    DOMAIN,
    Keys,
    assert_refused,
    call,
    claims,
    clean_environ,
    everything_visible,
    hand_signed,
    marker,
    mint,
    node,
    ok,
    open_watch,
    record_stream,
    remember_token,
    request_id,
    rich_status,
    schema,
    sign,
    start_stack,
    stop_stack,
    watch,
)

pytestmark = [pytest.mark.security, pytest.mark.e2e]

SUFFIX = secrets.token_hex(4)
GRAPH = f"secj-{SUFFIX}"
OTHER = f"secx-{SUFFIX}"
ADMIN = "sec-jwt-admin"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def stack(tmp_path_factory, suite_keys):
    s = start_stack(tmp_path_factory, "jwt", suite_keys.env())
    s.admin = mint(suite_keys, ADMIN, ["*"])
    try:
        for graph in (GRAPH, OTHER):
            ok(call(s, "ApplySchema", cmd.ApplySchemaRequest(graph=f"graphs/{graph}", schema=schema(),
                                                             request_id=request_id()),
                    token=s.admin, principal=ADMIN, graph=graph))
        yield s
    finally:
        stop_stack(s)


# Each case is called on both services: a read on the query service, a write on the command service.
def _read(graph: str = GRAPH) -> tuple[str, Any]:
    return "GetSchema", q.GetSchemaRequest(graph=f"graphs/{graph}")


def _write(graph: str = GRAPH) -> tuple[str, Any]:
    return "CreateNode", cmd.CreateNodeRequest(parent=f"graphs/{graph}", node_id=f"n-{secrets.token_hex(6)}",
                                               node=node("User", name=marker("jw"), secret=marker("js")),
                                               request_id=request_id())


def _stream(graph: str = GRAPH) -> tuple[str, Any]:
    return "WatchEvents", q.WatchEventsRequest(parent=f"graphs/{graph}", after_position=0)


# a unary read on the query service, a write on the command service, and a response stream
TARGETS = {"query": _read, "command": _write, "stream": _stream}


def invoke(stack: Any, rpc: str, request: Any, **kw: Any) -> Any:
    if rpc == "WatchEvents":  # the first event (SchemaApplied) is proof enough the stream opened
        return watch(stack, request, max_events=1, **kw)
    return call(stack, rpc, request, **kw)


def _tampered(k: Keys) -> str:
    """A valid token whose claims were swapped for more generous ones after signing."""
    header, _, signature = mint(k, "sec-tamper", [GRAPH], "graph.read").split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims("sec-tamper", ["*"])).encode()).rstrip(b"=").decode()
    return remember_token(f"{header}.{body}.{signature}")


def _foreign_rsa(k: Keys) -> str:
    """RS256 under the configured RSA key's id, signed by some other RSA key."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return remember_token(jwt.encode(claims("sec-foreign", [GRAPH]), other, algorithm="RS256",
                                     headers={"kid": k.rsa_kid}))


def _wrong_secret(k: Keys) -> str:
    return remember_token(jwt.encode(claims("sec-wrong", [GRAPH]), "not-the-secret-" + secrets.token_hex(24),
                                     algorithm="HS256", headers={"kid": k.hs_kid}))


def _hs512(k: Keys) -> str:
    with warnings.catch_warnings():  # PyJWT warns the secret is short for HS512: it is not its to verify
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return remember_token(jwt.encode(claims("sec-hs512", [GRAPH]), k.hs_secret, algorithm="HS512",
                                         headers={"kid": k.hs_kid}))


def _without(key: str) -> Callable[[Keys], str]:
    def make(k: Keys) -> str:
        body = claims("sec-claims", [GRAPH])
        body.pop(key)
        return sign(k, body)
    return make


# (case, the authorization header's value or None, the expected reason)
REFUSALS: list[tuple[str, Callable[[Keys], str | None], str]] = [
    ("missing", lambda k: None, "TOKEN_MISSING"),
    ("not_a_jwt", lambda k: "Bearer not-a-jwt", "TOKEN_MALFORMED"),
    ("garbage_segments", lambda k: "Bearer a.b.c", "TOKEN_MALFORMED"),
    ("wrong_secret", lambda k: "Bearer " + _wrong_secret(k), "TOKEN_SIGNATURE_INVALID"),
    ("tampered_claims", lambda k: "Bearer " + _tampered(k), "TOKEN_SIGNATURE_INVALID"),
    ("foreign_rsa_key", lambda k: "Bearer " + _foreign_rsa(k), "TOKEN_SIGNATURE_INVALID"),
    ("alg_none", lambda k: "Bearer " + hand_signed({"alg": "none", "typ": "JWT", "kid": k.hs_kid},
                                                   claims("sec-none", ["*"]), None), "TOKEN_ALGORITHM_NOT_ALLOWED"),
    # HS256 keyed with the RSA public key (which every client can read) under the RSA key's id
    ("hs_rs_confusion", lambda k: "Bearer " + hand_signed({"alg": "HS256", "typ": "JWT", "kid": k.rsa_kid},
                                                          claims("sec-confused", ["*"]), k.rsa_public_pem),
     "TOKEN_ALGORITHM_NOT_ALLOWED"),
    ("alg_not_in_allow_list", lambda k: "Bearer " + _hs512(k), "TOKEN_ALGORITHM_NOT_ALLOWED"),
    ("unknown_kid", lambda k: "Bearer " + mint(k, "sec-kid", [GRAPH], kid="nobody-knows"), "TOKEN_KEY_UNKNOWN"),
    ("expired", lambda k: "Bearer " + mint(k, "sec-old", [GRAPH], exp_in=-3600), "TOKEN_EXPIRED"),
    ("not_yet_valid", lambda k: "Bearer " + mint(k, "sec-early", [GRAPH], nbf_in=3600), "TOKEN_NOT_YET_VALID"),
    ("wrong_audience", lambda k: "Bearer " + mint(k, "sec-aud", [GRAPH], aud="someone-else"),
     "TOKEN_AUDIENCE_INVALID"),
    ("wrong_issuer", lambda k: "Bearer " + mint(k, "sec-iss", [GRAPH], iss="https://evil.example"),
     "TOKEN_ISSUER_INVALID"),
    ("no_exp", _without("exp"), "TOKEN_CLAIMS_INVALID"),
    ("no_sub", _without("sub"), "TOKEN_CLAIMS_INVALID"),
    ("graphs_not_a_list", lambda k: "Bearer " + sign(k, claims("sec-graphs", 42)), "TOKEN_CLAIMS_INVALID"),
]


def _header(value: str | None) -> str | None:
    return value if value is None or value.startswith("Bearer ") else "Bearer " + value


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case,make,reason", REFUSALS, ids=[c for c, _, _ in REFUSALS])
def test_bad_token_is_unauthenticated(stack, suite_keys, target, case, make, reason):
    header = _header(make(suite_keys))
    rpc, request = TARGETS[target]()
    metadata = [] if header is None else [("authorization", header)]
    outcome = invoke(stack, rpc, request, token=None, metadata=metadata)
    status = assert_refused(outcome, UNAUTHENTICATED, reason)
    visible = everything_visible(outcome)
    if header is not None:
        token = header.removeprefix("Bearer ")
        assert token not in visible
        signature = token.rsplit(".", 1)[-1]
        assert len(signature) < 8 or signature not in visible
    assert suite_keys.hs_secret not in visible
    assert status.domains == [DOMAIN]


# (case, token) for each key the services verify with
GOOD: list[tuple[str, Callable[[Keys], str]]] = [
    ("hs256_secret", lambda k: mint(k, "sec-hs", [GRAPH])),
    ("rs256_pem", lambda k: mint(k, "sec-rs", [GRAPH], alg="RS256")),
    ("es256_pem", lambda k: mint(k, "sec-es", [GRAPH], alg="ES256")),
    ("rs256_jwks", lambda k: mint(k, "sec-jwks", [GRAPH], alg="RS256", kid=k.jwks_kid)),
    ("expired_within_leeway", lambda k: mint(k, "sec-skew", [GRAPH], exp_in=-5)),
    ("nbf_within_leeway", lambda k: mint(k, "sec-skew2", [GRAPH], nbf_in=5)),
    ("graph_prefix", lambda k: mint(k, "sec-prefix", ["secj-*"])),
    ("every_graph", lambda k: mint(k, "sec-star", ["*"])),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case,make", GOOD, ids=[c for c, _ in GOOD])
def test_good_token_is_accepted(stack, suite_keys, target, case, make):
    token = make(suite_keys)
    subject = jwt.decode(token, options={"verify_signature": False})["sub"]
    rpc, request = TARGETS[target]()
    assert ok(invoke(stack, rpc, request, token=token, principal=subject, graph=GRAPH))


def test_graph_patterns_are_enforced(stack, suite_keys):
    prefixed = mint(suite_keys, "sec-prefix", ["secj-*"])
    exact = mint(suite_keys, "sec-exact", [GRAPH])
    for token in (prefixed, exact):
        rpc, request = _read(OTHER)
        assert_refused(call(stack, rpc, request, token=token), grpc.StatusCode.PERMISSION_DENIED,
                       "GRAPH_ACCESS_DENIED")
    # a prefix is a prefix of the graph id, not of the resource name
    literal = mint(suite_keys, "sec-literal", ["graphs/*"])
    assert_refused(call(stack, *_read(GRAPH), token=literal), grpc.StatusCode.PERMISSION_DENIED,
                   "GRAPH_ACCESS_DENIED")


@pytest.mark.parametrize("scopes,rpc", [
    ("graph.read", "CreateNode"),  # a reader writes
    ("graph.read", "ApplySchema"),
    ("graph.write", "GetSchema"),  # a writer reads
    ("graph.write graph.read", "ApplySchema"),  # schema needs schema.admin
    ("", "GetSchema"),
])
def test_missing_scope_is_permission_denied(stack, suite_keys, scopes, rpc):
    token = mint(suite_keys, "sec-scoped", [GRAPH], scopes)
    request = {
        "CreateNode": lambda: _write()[1],
        "ApplySchema": lambda: cmd.ApplySchemaRequest(graph=f"graphs/{GRAPH}", schema=schema(), expected_version=1,
                                                      request_id=request_id()),
        "GetSchema": lambda: _read()[1],
    }[rpc]()
    assert_refused(call(stack, rpc, request, token=token, principal="sec-scoped"), grpc.StatusCode.PERMISSION_DENIED,
                   "SCOPE_MISSING")


@pytest.mark.parametrize("which", ["command_addr", "query_addr"])
def test_health_and_reflection_need_no_token(stack, which):
    addr = getattr(stack, which)
    with grpc.insecure_channel(addr) as channel:
        for service in ("", "edgewise.graph.v1.GraphCommandService" if which == "command_addr"
                        else "edgewise.graph.v1.GraphQueryService"):
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert GRPCURL, "grpcurl is not installed in the virtualenv"
    listed = subprocess.run([GRPCURL, "-plaintext", "-max-time", "10", addr, "list"], capture_output=True,
                            text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert {"edgewise.graph.v1.GraphCommandService", "edgewise.graph.v1.GraphQueryService",
            "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = subprocess.run([GRPCURL, "-plaintext", "-max-time", "10", addr, "describe",
                                "edgewise.graph.v1.GraphQueryService"], capture_output=True, text=True, timeout=30)
    assert described.returncode == 0 and "rpc Traverse" in described.stdout, described.stderr
    # ...while the graph RPCs are closed to grpcurl without a token
    closed = subprocess.run([GRPCURL, "-plaintext", "-max-time", "10", "-d", json.dumps({"graph": f"graphs/{GRAPH}"}),
                             stack.query_addr, "edgewise.graph.v1.GraphQueryService/GetSchema"],
                            capture_output=True, text=True, timeout=30)
    assert closed.returncode != 0 and "Unauthenticated" in closed.stderr, closed.stderr


def test_cli_minted_token(stack, suite_keys):
    env = {**clean_environ(), "PYTHONPATH": str(ROOT),
           "EDGEWISE_JWT_HS256_SECRETS": f"{suite_keys.hs_kid}={suite_keys.hs_secret}"}
    minted = subprocess.run([sys.executable, "-m", "cli", "token", "mint", "--subject", "sec-cli", "--graph", GRAPH,
                             "--scope", "graph.read", "--raw"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert minted.returncode == 0, minted.stderr
    token = remember_token(minted.stdout.strip())
    assert minted.stdout.strip().count("\n") == 0 and token.count(".") == 2, "--raw prints the token only"
    assert suite_keys.hs_secret not in minted.stdout + minted.stderr
    ok(call(stack, *_read(), token=token, principal="sec-cli", graph=GRAPH))
    assert_refused(call(stack, *_write(), token=token, principal="sec-cli"), grpc.StatusCode.PERMISSION_DENIED,
                   "SCOPE_MISSING")
    assert_refused(call(stack, *_read(OTHER), token=token, principal="sec-cli"), grpc.StatusCode.PERMISSION_DENIED,
                   "GRAPH_ACCESS_DENIED")


@pytest.fixture(scope="module")
def strict_stack(tmp_path_factory, suite_keys):
    """No clock skew tolerated: a token's exp is the second it stops working."""
    s = start_stack(tmp_path_factory, "jwt-leeway0", suite_keys.env(EDGEWISE_JWT_LEEWAY_SECONDS="0"))
    try:
        ok(call(s, "ApplySchema", cmd.ApplySchemaRequest(graph=f"graphs/{GRAPH}", schema=schema(),
                                                         request_id=request_id()),
                token=mint(suite_keys, ADMIN, ["*"]), principal=ADMIN, graph=GRAPH))
        yield s
    finally:
        stop_stack(s)


def test_watch_events_ends_when_its_token_expires(strict_stack, suite_keys):
    lifetime = 3
    token = mint(suite_keys, "sec-watcher", [GRAPH], "graph.read", exp_in=lifetime)
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    stream = open_watch(strict_stack, q.WatchEventsRequest(parent=f"graphs/{GRAPH}", after_position=0),
                        token=token, timeout=lifetime + 20)
    events = []
    with pytest.raises(grpc.RpcError) as err:
        for resp in stream.call:  # bounded: the stream's deadline is lifetime + 20 s
            events.append(resp.event.type)
    ended_at = time.time()
    # authenticated at open, ended by its expiry: the access line names the principal
    record_stream(strict_stack, stream, err.value.code().name, "sec-watcher")
    assert events[:1] == ["SchemaApplied"], "the stream was open and delivering before the token expired"
    status = rich_status(err.value)
    assert (status.code, status.reason) == (UNAUTHENTICATED, "TOKEN_EXPIRED"), (status.code, status.reasons)
    assert ended_at >= expires_at - 1, "ended before the token expired"
    # the same token is refused at the door now
    assert_refused(call(strict_stack, *_read(), token=token), UNAUTHENTICATED, "TOKEN_EXPIRED")
