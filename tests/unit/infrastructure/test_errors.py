import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from domain.errors import (AlreadyExists, DeadlineExceeded, FieldViolation, Internal, NotFound,
                           PermissionDenied, PreconditionViolation, RateLimited, Reason,
                           RuleViolated, Unauthenticated, Unavailable, ValidationFailed,
                           VersionConflict)
from infrastructure.grpc.context import RequestContext, request_scope
from infrastructure.grpc.errors import ERROR_DOMAIN, code_for, rich_status, status_for

DETAIL_TYPES = {
    "ErrorInfo": error_details_pb2.ErrorInfo,
    "BadRequest": error_details_pb2.BadRequest,
    "ResourceInfo": error_details_pb2.ResourceInfo,
    "PreconditionFailure": error_details_pb2.PreconditionFailure,
    "RetryInfo": error_details_pb2.RetryInfo,
}


def unpack(status):
    out = {}
    for any_detail in status.details:
        name = any_detail.type_url.rsplit(".", 1)[-1]
        message = DETAIL_TYPES[name]()
        assert any_detail.Unpack(message)
        out.setdefault(name, []).append(message)
    return out


CASES = [
    (ValidationFailed("bad", violations=[FieldViolation("node.name", "is required")]),
     code_pb2.INVALID_ARGUMENT, {"ErrorInfo", "BadRequest"}),
    (NotFound("no node", resource_type="edgewise.graph.v1/Node", resource_name="graphs/g/nodes/a",
              reason=Reason.NODE_NOT_FOUND), code_pb2.NOT_FOUND, {"ErrorInfo", "ResourceInfo"}),
    (AlreadyExists("exists", resource_type="edgewise.graph.v1/Node",
                   resource_name="graphs/g/nodes/a"), code_pb2.ALREADY_EXISTS,
     {"ErrorInfo", "ResourceInfo"}),
    (VersionConflict("stale etag"), code_pb2.ABORTED, {"ErrorInfo"}),
    (RuleViolated("cycle", reason=Reason.CYCLE_DETECTED), code_pb2.FAILED_PRECONDITION,
     {"ErrorInfo", "PreconditionFailure"}),
    (RateLimited("slow down", retry_after_seconds=1.5), code_pb2.RESOURCE_EXHAUSTED,
     {"ErrorInfo", "RetryInfo"}),
    (Unavailable("behind", retry_after_seconds=0.25), code_pb2.UNAVAILABLE,
     {"ErrorInfo", "RetryInfo"}),
    (DeadlineExceeded("too slow"), code_pb2.DEADLINE_EXCEEDED, {"ErrorInfo"}),
    (Unauthenticated("who are you"), code_pb2.UNAUTHENTICATED, {"ErrorInfo"}),
    (PermissionDenied("no"), code_pb2.PERMISSION_DENIED, {"ErrorInfo"}),
    (RuntimeError("boom"), code_pb2.INTERNAL, {"ErrorInfo"}),
]


@pytest.mark.parametrize("exc,code,details", CASES, ids=lambda x: type(x).__name__)
def test_each_error_maps_to_its_code_with_exactly_one_error_info(exc, code, details):
    status = rich_status(exc, trace_id="t-1")
    assert status.code == code
    unpacked = unpack(status)
    assert set(unpacked) == details
    assert len(unpacked["ErrorInfo"]) == 1
    info = unpacked["ErrorInfo"][0]
    assert info.domain == ERROR_DOMAIN == "edgewise.graph.v1"
    assert info.reason
    assert info.metadata["trace_id"] == "t-1"


def test_domain_error_carries_its_reason_message_and_metadata():
    exc = NotFound("node graphs/g/nodes/a not found", resource_type="edgewise.graph.v1/Node",
                   resource_name="graphs/g/nodes/a", reason=Reason.NODE_NOT_FOUND,
                   metadata={"graph": "g"})
    status = rich_status(exc)
    assert status.message == "node graphs/g/nodes/a not found"
    details = unpack(status)
    info = details["ErrorInfo"][0]
    assert info.reason == "NODE_NOT_FOUND" and info.metadata["graph"] == "g"
    resource = details["ResourceInfo"][0]
    assert (resource.resource_type, resource.resource_name) == (
        "edgewise.graph.v1/Node", "graphs/g/nodes/a")


def test_bad_request_lists_every_field_violation():
    exc = ValidationFailed("bad", reason=Reason.INVALID_NAME, violations=[
        FieldViolation("parent", "is required"), FieldViolation("node.type", "bad type")])
    details = unpack(rich_status(exc))
    assert [(v.field, v.description) for v in details["BadRequest"][0].field_violations] == [
        ("parent", "is required"), ("node.type", "bad type")]
    assert details["ErrorInfo"][0].reason == "INVALID_NAME"


def test_precondition_failure_carries_the_violations():
    exc = RuleViolated("cardinality", reason=Reason.CARDINALITY_VIOLATED, violations=[
        PreconditionViolation("CARDINALITY_VIOLATED", "graphs/g/nodes/a", "only one parent")])
    violation = unpack(rich_status(exc))["PreconditionFailure"][0].violations[0]
    assert (violation.type, violation.subject, violation.description) == (
        "CARDINALITY_VIOLATED", "graphs/g/nodes/a", "only one parent")


def test_retry_info_carries_the_delay():
    retry = unpack(rich_status(RateLimited("x", retry_after_seconds=1.5)))["RetryInfo"][0]
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)


@pytest.mark.parametrize("exc", [RuntimeError("password=hunter2 at /secret/path"),
                                 Internal("db file /secret/path corrupt"),
                                 KeyError("secret")])
def test_unexpected_errors_leak_nothing_but_the_trace_id(exc, caplog):
    status = rich_status(exc, trace_id="abc123")
    assert status.code == code_pb2.INTERNAL
    assert status.message == "internal error (trace id abc123)"
    assert "secret" not in str(status)
    # ...but they are logged, with the traceback, never swallowed.
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)


def test_trace_and_request_id_default_to_the_current_request():
    with request_scope(RequestContext(request_id="req-7")):
        status = rich_status(RuntimeError("x"))
    assert status.message == "internal error (trace id req-7)"
    info = unpack(status)["ErrorInfo"][0]
    assert info.metadata["request_id"] == "req-7"


def test_status_for_returns_a_grpc_status_with_the_rich_details():
    status = status_for(VersionConflict("stale"))
    assert status.code == grpc.StatusCode.ABORTED
    assert status.details == "stale"
    keys = [k for k, _ in status.trailing_metadata]
    assert "grpc-status-details-bin" in keys


def test_timeouts_are_deadline_exceeded():
    assert code_for(TimeoutError()) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert rich_status(TimeoutError("secret")).message == "deadline exceeded"


def test_not_implemented_is_unimplemented():
    status = rich_status(NotImplementedError("Method not implemented!"))
    assert status.code == code_pb2.UNIMPLEMENTED
    assert status.message == "method not implemented"


@pytest.mark.parametrize("exc", [
    ValidationFailed("x" * 100_000, violations=[FieldViolation(f"names[{i}]", "ü" * 5000) for i in range(1000)]),
    NotFound("n" * 50_000, resource_type="t", resource_name="r" * 50_000),
    RuleViolated("💥" * 50_000, metadata={"subject": "s" * 50_000}),
])
def test_a_status_stays_small_enough_for_the_trailers(exc):
    """gRPC clients refuse trailers past 8 KiB: a status echoing huge input must still arrive."""
    status = rich_status(exc)
    assert status.ByteSize() <= 3072 and len(status.message.encode()) <= 600
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    if isinstance(exc, ValidationFailed):
        br = error_details_pb2.BadRequest()
        next(d for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)).Unpack(br)
        assert br.field_violations and br.field_violations[0].field == "names[0]"
