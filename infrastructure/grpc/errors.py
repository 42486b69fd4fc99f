"""The one place where errors become gRPC statuses (DESIGN §6).

Every status carries a canonical code and exactly one google.rpc.ErrorInfo
(reason, domain ``edgewise.graph.v1``, metadata), plus BadRequest, ResourceInfo,
PreconditionFailure or RetryInfo where relevant. Unexpected exceptions become
INTERNAL with only the trace id in the message: their text never leaves the process.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domain.errors import (
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    NotFound,
    PermissionDenied,
    RateLimited,
    Reason,
    RuleViolated,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    ValidationFailed,
    VersionConflict,
)
from infrastructure.grpc.context import current_context

ERROR_DOMAIN = "edgewise.graph.v1"

_log = logging.getLogger("edgewise.grpc.errors")

# Checked in order; the first matching class wins (so subclasses map like parents).
_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ValidationFailed, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (VersionConflict, grpc.StatusCode.ABORTED),
    (RuleViolated, grpc.StatusCode.FAILED_PRECONDITION),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
)


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The canonical gRPC code for an exception (INTERNAL for anything unexpected)."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, NotImplementedError):
        # What generated servicer base classes raise for an RPC nobody implemented yet.
        return grpc.StatusCode.UNIMPLEMENTED
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:  # any protobuf message (untyped here)
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def _retry_delay(seconds: float) -> duration_pb2.Duration:
    seconds = max(0.0, float(seconds)) if math.isfinite(seconds) else 1.0
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int(round((seconds - whole) * 1e9)))


def _resolve_trace_id(trace_id: str) -> str:
    if trace_id:
        return trace_id
    ctx = current_context()
    return ctx.trace_id or ctx.request_id


# The status travels in trailing metadata: the message as grpc-message (percent-encoded) and
# the whole Status as grpc-status-details-bin (base64). gRPC clients refuse metadata past
# 8-16 KiB by default, so an error that echoes a huge request value would reach the caller
# as a bare RESOURCE_EXHAUSTED with no ErrorInfo at all. Every text is clipped, and the
# limits tighten until the serialised Status fits MAX_STATUS_BYTES.
MAX_STATUS_BYTES = 3072
_LIMITS = ((512, 256, 20), (256, 96, 5), (96, 48, 1))  # (message bytes, other text bytes, violations)


def _clip(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore") + f"... ({len(data) - limit} more bytes)"


def rich_status(exc: BaseException, *, trace_id: str = "") -> status_pb2.Status:
    """Build the google.rpc.Status for ``exc`` (bounded in size, see MAX_STATUS_BYTES)."""
    trace_id = _resolve_trace_id(trace_id)
    request_id = current_context().request_id
    code = code_for(exc)

    if isinstance(exc, DomainError) and code is not grpc.StatusCode.INTERNAL:
        message = exc.message
        reason = exc.reason
        metadata = dict(exc.metadata)
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        # A bare asyncio/builtin timeout: say what happened, not where.
        message = "deadline exceeded"
        reason = "DEADLINE_EXCEEDED"
        metadata = {}
    elif code is grpc.StatusCode.UNIMPLEMENTED:
        message = "method not implemented"
        reason = "UNIMPLEMENTED"
        metadata = {}
    else:
        # Unexpected: log with traceback, return nothing but the trace id.
        _log.error("unexpected error (trace id %s)", trace_id or "-",
                   exc_info=(type(exc), exc, exc.__traceback__))
        message = f"internal error (trace id {trace_id or 'unknown'})"
        reason = exc.reason if isinstance(exc, DomainError) else Reason.INTERNAL
        metadata = {}
    if trace_id:
        metadata.setdefault("trace_id", trace_id)
    if request_id:
        metadata.setdefault("request_id", request_id)

    status = status_pb2.Status()
    for message_limit, text_limit, max_items in _LIMITS:
        status = _status(exc, code, _clip(message, message_limit), reason, metadata, text_limit, max_items)
        if status.ByteSize() <= MAX_STATUS_BYTES:
            break
    return status


def _status(exc: BaseException, code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str],
            limit: int, max_items: int) -> status_pb2.Status:
    def clip(text: str) -> str:
        return _clip(text, limit)

    details: list[Any] = []  # google.rpc error detail messages (protobuf: untyped here)
    if isinstance(exc, DomainError) and code is not grpc.StatusCode.INTERNAL:
        if isinstance(exc, ValidationFailed) and exc.violations:
            violations = [(clip(v.field), clip(v.description)) for v in exc.violations[:max_items]]
            if len(exc.violations) > max_items:
                violations.append(("...", f"and {len(exc.violations) - max_items} more violation(s)"))
            details.append(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations]))
        elif isinstance(exc, (NotFound, AlreadyExists)):
            details.append(error_details_pb2.ResourceInfo(
                resource_type=exc.resource_type, resource_name=clip(exc.resource_name),
                description=clip(exc.message)))
        elif isinstance(exc, RuleViolated):
            details.append(error_details_pb2.PreconditionFailure(violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=v.type, subject=clip(v.subject), description=clip(v.description))
                for v in exc.violations[:max_items]
            ]))
        elif isinstance(exc, (RateLimited, Unavailable)):
            details.append(error_details_pb2.RetryInfo(
                retry_delay=_retry_delay(exc.retry_after_seconds)))
            if isinstance(exc, RateLimited) and exc.violations:
                details.append(error_details_pb2.QuotaFailure(violations=[
                    error_details_pb2.QuotaFailure.Violation(subject=clip(v.subject), description=clip(v.description))
                    for v in exc.violations[:max_items]]))
    error_info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN,
                                             metadata={k: clip(v) for k, v in metadata.items()})
    return status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=message,
        details=[_pack(error_info)] + [_pack(d) for d in details],
    )


def status_for(exc: BaseException, *, trace_id: str = "") -> grpc.Status:
    """The grpc.Status (code, details, trailing metadata with the rich status) for ``exc``;
    pass it to ``context.abort_with_status``."""
    return rpc_status.to_status(rich_status(exc, trace_id=trace_id))
