"""What the security suite shares: keys, token minting, stacks in jwt mode, one way to call an
RPC (with its x-request-id and traceparent, recorded for the access-log check) and a registry of
everything that must never appear in a log (tokens, secrets, property values).

Every stack the suite starts, every token it mints and every property value it sends is
registered here; tests/security/test_log_scan.py scans the logs of those stacks at the end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.process import die_with_parent
from tests.e2e.stack import ROOT, SECRET as TOKEN_SECRET, Service, Stack, free_port

ISSUER = "edgewise"
AUDIENCE = "edgewise"
DOMAIN = "edgewise.graph.v1"
COMMAND = "edgewise.graph.v1.GraphCommandService"
QUERY = "edgewise.graph.v1.GraphQueryService"
COMMAND_RPCS = ("ApplySchema", "CreateNode", "UpdateNode", "DeleteNode", "AddEdge", "RemoveEdge", "BatchWrite")
QUERY_RPCS = ("GetSchema", "GetNode", "BatchGetNodes", "GetEdge", "CountEdges", "ListEdges", "ListNodes",
              "Traverse", "FindPath", "WatchEvents")
ALL_SCOPES = "graph.read graph.write schema.admin"
ACCESS_LOGGER = "edgewise.access"


def full_method(rpc: str) -> str:
    return f"/{COMMAND if rpc in COMMAND_RPCS else QUERY}/{rpc}"


# ---------------------------------------------------------------------------------------------
# The registry: what the log scan checks at the end of the suite.


@dataclass
class CallRecord:
    stack: "SecureStack"
    rpc: str
    x_request_id: str
    trace_id: str
    code: str  # the status the client saw
    principal: str  # the subject the server should have logged ("" = none: unauthenticated)
    graph: str  # the graph an accepted call is about ("" = not checked)
    idempotency_request_id: str  # a command's body request_id ("" = not checked)


@dataclass
class Registry:
    tokens: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    markers: set[str] = field(default_factory=set)
    stacks: list["SecureStack"] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)


REGISTRY = Registry()
REGISTRY.secrets.add(TOKEN_SECRET)


def marker(label: str) -> str:
    """A distinctive property value; registered so the log scan looks for it."""
    value = f"mk{label}{secrets.token_hex(6)}"
    REGISTRY.markers.add(value)
    return value


# ---------------------------------------------------------------------------------------------
# Keys: one HS256 secret, an RSA and a P-256 key as PEM files, an RSA key in a JWKS file.


@dataclass(frozen=True)
class Keys:
    directory: Path
    hs_kid: str
    hs_secret: str
    rsa_kid: str
    rsa_private: rsa.RSAPrivateKey
    rsa_public_pem: bytes
    ec_kid: str
    ec_private: ec.EllipticCurvePrivateKey
    jwks_kid: str
    jwks_private: rsa.RSAPrivateKey
    jwks_file: Path
    rsa_pem_file: Path
    ec_pem_file: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a jwt-mode stack verifying with all four keys."""
        env = {
            "EDGEWISE_AUTH_MODE": "jwt",
            "EDGEWISE_JWT_HS256_SECRETS": f"{self.hs_kid}={self.hs_secret}",
            "EDGEWISE_JWT_PUBLIC_KEYS": f"{self.rsa_kid}={self.rsa_pem_file},{self.ec_kid}={self.ec_pem_file}",
            "EDGEWISE_JWT_JWKS_FILE": str(self.jwks_file),
        }
        env.update(overrides)
        return env


_KEYS: Keys | None = None


def _public_pem(private: Any) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)


def keys(directory: Path) -> Keys:
    """The suite's keys (made once per session, written under ``directory`` the first time)."""
    global _KEYS
    if _KEYS is None:
        directory.mkdir(parents=True, exist_ok=True)
        hs_secret = "hs-" + secrets.token_hex(24)
        rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ec_private = ec.generate_private_key(ec.SECP256R1())
        jwks_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_pem_file = directory / "rsa-1.pem"
        rsa_pem_file.write_bytes(_public_pem(rsa_private))
        ec_pem_file = directory / "ec-1.pem"
        ec_pem_file.write_bytes(_public_pem(ec_private))
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(jwks_private.public_key()))
        jwk.update({"kid": "jwks-rsa-1", "alg": "RS256", "use": "sig"})
        jwks_file = directory / "jwks.json"
        jwks_file.write_text(json.dumps({"keys": [jwk]}))
        _KEYS = Keys(directory=directory, hs_kid="hs-1", hs_secret=hs_secret, rsa_kid="rsa-1",
                     rsa_private=rsa_private, rsa_public_pem=_public_pem(rsa_private), ec_kid="ec-1",
                     ec_private=ec_private, jwks_kid="jwks-rsa-1", jwks_private=jwks_private,
                     jwks_file=jwks_file, rsa_pem_file=rsa_pem_file, ec_pem_file=ec_pem_file)
        REGISTRY.secrets.add(hs_secret)
    return _KEYS


def remember_token(token: str) -> str:
    REGISTRY.tokens.add(token)
    return token


def claims(subject: str, graphs: Iterable[str] | Any, scope: str | Any = ALL_SCOPES, *,
           exp_in: float | None = 600, nbf_in: float | None = None, iss: str | None = ISSUER,
           aud: str | None = AUDIENCE, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {"sub": subject, "graphs": list(graphs) if isinstance(graphs, (list, tuple)) else graphs,
                            "scope": scope, "iat": now}
    if exp_in is not None:
        body["exp"] = now + int(exp_in)
    if nbf_in is not None:
        body["nbf"] = now + int(nbf_in)
    if iss is not None:
        body["iss"] = iss
    if aud is not None:
        body["aud"] = aud
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def sign(k: Keys, body: dict[str, Any], *, alg: str = "HS256", kid: str | None = None) -> str:
    """A token signed with the suite's key for ``alg`` (HS256: the HS secret; RS256: the PEM RSA
    key, or the JWKS key when ``kid`` is the JWKS key's; ES256: the P-256 key)."""
    if alg == "HS256":
        key: Any = k.hs_secret
        kid = kid or k.hs_kid
    elif alg == "RS256":
        kid = kid or k.rsa_kid
        key = k.jwks_private if kid == k.jwks_kid else k.rsa_private
    elif alg == "ES256":
        key = k.ec_private
        kid = kid or k.ec_kid
    else:
        raise ValueError(alg)
    return remember_token(jwt.encode(body, key, algorithm=alg, headers={"kid": kid}))


def mint(k: Keys, subject: str, graphs: Iterable[str], scope: str = ALL_SCOPES, *, alg: str = "HS256",
         kid: str | None = None, **claim_args: Any) -> str:
    return sign(k, claims(subject, list(graphs), scope, **claim_args), alg=alg, kid=kid)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_signed(header: dict[str, Any], body: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token PyJWT refuses to make: ``alg: none`` (hmac_key None: empty signature) or HS256
    with an arbitrary byte string (an RSA public PEM) as the secret."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    signature = "" if hmac_key is None else _b64(hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest())
    return remember_token(f"{signing_input}.{signature}")


def bearer(token: str | None) -> list[tuple[str, str]]:
    return [] if token is None else [("authorization", f"Bearer {token}")]


# ---------------------------------------------------------------------------------------------
# Stacks


_OWN_SETTINGS = ("EDGEWISE_JWT_", "EDGEWISE_RATE_LIMIT_", "EDGEWISE_METRICS_", "EDGEWISE_DYNAMODB_")


def clean_environ() -> dict[str, str]:
    """os.environ without the settings the suite decides itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}


class SecureStack(Stack):
    """tests/e2e's Stack in jwt mode, with an environment per service (the metrics ports differ)
    and registered for the log scan."""

    def __init__(self, workdir: Path, name: str, extra_env: dict[str, str],
                 service_env: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__(workdir, extra_env)
        # Only what this suite sets: an operator's own EDGEWISE_JWT_*, limits or metrics port in the
        # environment of `make test` must not change what the tests see. Security is the
        # transport's, the same on either engine: SQLite.
        inherited = [k for k in self.env if k.startswith(_OWN_SETTINGS) and k not in extra_env]
        for key in inherited:
            del self.env[key]
        self.env["EDGEWISE_STORE"] = "sqlite"
        self.name = name
        self.service_env = service_env or {}
        self.metrics_ports: dict[str, int] = {}
        REGISTRY.stacks.append(self)

    def start(self) -> "SecureStack":
        for module, addr in (("command_service", self.command_addr), ("query_service", self.query_addr)):
            log = self.workdir / f"{module}.log"
            env = {**self.env, **self.service_env.get(module, {})}
            if env.get("EDGEWISE_METRICS_PORT"):
                self.metrics_ports[module] = int(env["EDGEWISE_METRICS_PORT"])
            proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env,
                                    preexec_fn=die_with_parent,
                                    stdout=log.open("wb"), stderr=subprocess.STDOUT)
            self.services.append(Service(module, proc, addr, log))
        try:
            for svc in self.services:
                self._wait_healthy(svc)
        except BaseException:
            self.stop()
            raise
        self.connect()
        return self

    def log_path(self, rpc: str) -> Path:
        return self.workdir / ("command_service.log" if rpc in COMMAND_RPCS else "query_service.log")

    def logs(self) -> dict[str, str]:
        return {svc.name: svc.log.read_text(errors="replace") for svc in self.services}

    def stub(self, rpc: str) -> Any:
        return getattr(self.commands if rpc in COMMAND_RPCS else self.queries, rpc)


def metrics_env() -> dict[str, dict[str, str]]:
    return {"command_service": {"EDGEWISE_METRICS_PORT": str(free_port())},
            "query_service": {"EDGEWISE_METRICS_PORT": str(free_port())}}


def start_stack(tmp_path_factory: Any, name: str, env: dict[str, str],
                service_env: dict[str, dict[str, str]] | None = None) -> SecureStack:
    return SecureStack(tmp_path_factory.mktemp(f"sec-{name}"), name, env, service_env).start()


def stop_stack(stack: SecureStack) -> None:
    codes = stack.stop()
    assert codes == {"command_service": 0, "query_service": 0}, codes


# ---------------------------------------------------------------------------------------------
# Calls


def _trace_id() -> str:
    return secrets.token_hex(16)


@dataclass
class Outcome:
    rpc: str
    response: Any = None
    error: grpc.RpcError | None = None
    x_request_id: str = ""
    trace_id: str = ""

    @property
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK if self.error is None else self.error.code()

    def rich(self) -> "RichStatus":
        assert self.error is not None, f"{self.rpc} succeeded: {self.response}"
        return rich_status(self.error)


def call(stack: SecureStack, rpc: str, request: pb_message.Message, *, token: str | None = None,
         principal: str = "", graph: str = "", timeout: float = 10,
         metadata: Iterable[tuple[str, str]] = ()) -> Outcome:
    """One unary RPC with a bearer token (None: no authorization header), a fresh x-request-id
    and traceparent; recorded for the access-log check. ``principal`` is the subject the server
    should log if it accepts the token."""
    x_request_id = f"sec-{uuid.uuid4().hex}"
    trace_id = _trace_id()
    md = [("x-request-id", x_request_id), ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),
          *bearer(token), *metadata]
    outcome = Outcome(rpc, x_request_id=x_request_id, trace_id=trace_id)
    try:
        outcome.response = stack.stub(rpc)(request, metadata=md, timeout=timeout)
    except grpc.RpcError as err:
        outcome.error = err
    idem = getattr(request, "request_id", "") if rpc in COMMAND_RPCS else ""
    REGISTRY.calls.append(CallRecord(stack, rpc, x_request_id, trace_id, outcome.code.name,
                                     principal if outcome.code not in (grpc.StatusCode.UNAUTHENTICATED,) else "",
                                     graph if outcome.error is None else "", idem if outcome.error is None else ""))
    return outcome


def ok(outcome: Outcome) -> Any:
    assert outcome.error is None, f"{outcome.rpc}: {outcome.error.code()} {outcome.error.details()}"
    return outcome.response


@dataclass
class Stream:
    """A WatchEvents call in progress."""

    call: Any
    x_request_id: str
    trace_id: str


def open_watch(stack: SecureStack, request: Any, *, token: str | None, timeout: float = 10,
               metadata: Iterable[tuple[str, str]] = ()) -> Stream:
    x_request_id = f"sec-{uuid.uuid4().hex}"
    trace_id = _trace_id()
    md = [("x-request-id", x_request_id), ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),
          *bearer(token), *metadata]
    return Stream(stack.queries.WatchEvents(request, metadata=md, timeout=timeout), x_request_id, trace_id)


def record_stream(stack: SecureStack, stream: Stream, code: str, principal: str = "", graph: str = "") -> None:
    REGISTRY.calls.append(CallRecord(stack, "WatchEvents", stream.x_request_id, stream.trace_id, code,
                                     principal, graph, ""))


def watch(stack: SecureStack, request: Any, *, token: str | None, principal: str = "", graph: str = "",
          max_events: int = 1000, timeout: float = 10, metadata: Iterable[tuple[str, str]] = ()) -> Outcome:
    """Read a WatchEvents stream until it ends with a status (or ``max_events``)."""
    stream = open_watch(stack, request, token=token, timeout=timeout, metadata=metadata)
    events = []
    outcome = Outcome("WatchEvents", x_request_id=stream.x_request_id, trace_id=stream.trace_id)
    try:
        for resp in stream.call:
            events.append(resp)
            if len(events) >= max_events:
                stream.call.cancel()
                break
    except grpc.RpcError as err:
        outcome.error = err
    outcome.response = events
    # the server sees a stream we stopped reading as CANCELLED
    code = outcome.code.name if outcome.error is not None else "CANCELLED"
    record_stream(stack, stream, code, principal if code != "UNAUTHENTICATED" else "",
                  graph if outcome.error is None else "")
    return outcome


# ---------------------------------------------------------------------------------------------
# Rich statuses


@dataclass
class RichStatus:
    code: grpc.StatusCode
    message: str
    reasons: list[str]
    domains: list[str]
    metadata: dict[str, str]
    retry_delay: float | None
    quota_violations: list[tuple[str, str]]
    details: list[Any]
    raw: bytes

    @property
    def reason(self) -> str:
        assert len(self.reasons) == 1, f"exactly one ErrorInfo expected, got {self.reasons} ({self.message})"
        return self.reasons[0]


def rich_status(err: grpc.RpcError) -> RichStatus:
    raw = b""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            raw = value if isinstance(value, bytes) else value.encode()
    status: status_pb2.Status | None = rpc_status.from_call(err)
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    reasons, domains, metadata, quota, details = [], [], {}, [], []
    retry: float | None = None
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.QuotaFailure,
                     error_details_pb2.BadRequest, error_details_pb2.ResourceInfo,
                     error_details_pb2.PreconditionFailure, error_details_pb2.DebugInfo):
            if detail.Is(kind.DESCRIPTOR):
                msg = kind()
                detail.Unpack(msg)
                details.append(msg)
                if isinstance(msg, error_details_pb2.ErrorInfo):
                    reasons.append(msg.reason)
                    domains.append(msg.domain)
                    metadata.update(msg.metadata)
                elif isinstance(msg, error_details_pb2.RetryInfo):
                    retry = msg.retry_delay.seconds + msg.retry_delay.nanos / 1e9
                elif isinstance(msg, error_details_pb2.QuotaFailure):
                    quota += [(v.subject, v.description) for v in msg.violations]
    return RichStatus(err.code(), err.details() or "", reasons, domains, metadata, retry, quota, details, raw)


def assert_refused(outcome: Outcome, code: grpc.StatusCode, reason: str) -> RichStatus:
    assert outcome.error is not None, f"{outcome.rpc} was accepted: {str(outcome.response)[:300]}"
    status = rich_status(outcome.error)
    assert (status.code, status.reason) == (code, reason), (outcome.rpc, status.code, status.reasons, status.message)
    assert status.domains == [DOMAIN]
    return status


def everything_visible(outcome: Outcome) -> str:
    """All a caller can see of an answer: the response, message, details and all metadata."""
    parts: list[str] = []
    if outcome.response is not None:
        parts.append(str(outcome.response))
    if outcome.error is not None:
        err = outcome.error
        parts.append(err.details() or "")
        for md in (err.initial_metadata() or (), err.trailing_metadata() or ()):
            for key, value in md:
                parts.append(f"{key}={value.decode('latin-1') if isinstance(value, bytes) else value}")
        status = rpc_status.from_call(err)
        if status is not None:
            parts.append(str(status))
            for d in rich_status(err).details:
                parts.append(str(d))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Protobuf helpers


def prop(value: Any) -> pb.PropertyValue:
    if isinstance(value, bool):
        return pb.PropertyValue(bool_value=value)
    if isinstance(value, int):
        return pb.PropertyValue(int_value=value)
    return pb.PropertyValue(string_value=value)


def node(type_name: str, **props: Any) -> pb.Node:
    n = pb.Node(type=type_name)
    for k, v in props.items():
        n.properties[k].CopyFrom(prop(v))
    return n


def schema(node_type: str = "User", edge_type: str = "follows") -> pb.Schema:
    P = pb.PropertyDefinition
    return pb.Schema(
        node_types=[pb.NodeType(name=node_type, properties=[
            P(name="name", kind=pb.PROPERTY_KIND_STRING, required=True),
            P(name="secret", kind=pb.PROPERTY_KIND_STRING, indexed=True),
        ])],
        edge_types=[pb.EdgeType(name=edge_type, source_type=node_type, target_type=node_type,
                                cardinality=pb.CARDINALITY_MANY_TO_MANY, on_delete=pb.ON_DELETE_CASCADE)],
    )


def request_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------
# Logs and metrics


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def access_lines(text: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(text) if e.get("logger") == ACCESS_LOGGER]


def wait_for_access_line(stack: SecureStack, rpc: str, x_request_id: str, timeout: float = 10) -> dict[str, Any]:
    """The access line of one call (a stream's is written when the server sees it end)."""
    deadline = time.monotonic() + timeout
    path = stack.log_path(rpc)
    while True:
        for entry in access_lines(path.read_text(errors="replace")):
            if entry.get("x_request_id") == x_request_id:
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line for {rpc} x-request-id {x_request_id} in {path}")
        time.sleep(0.05)


def scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(snapshot: Samples, name: str, **labels: str) -> float:
    return snapshot.get((name, frozenset(labels.items())), 0.0)


def graph_name_of(text: str) -> str:
    """``graphs/x`` or ``x`` → ``x``."""
    return re.sub(r"^graphs/", "", text or "")
