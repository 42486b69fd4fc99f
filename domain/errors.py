"""One error taxonomy for the whole system.

Every error carries a stable ``reason`` code (UPPER_SNAKE_CASE, never renamed once
shipped), a message for humans and string metadata. Only the transport layer turns
these into gRPC statuses (see infrastructure/grpc/errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field in a request (maps to google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition (maps to google.rpc.PreconditionFailure.Violation)."""

    type: str
    subject: str
    description: str


class DomainError(Exception):
    """Base of every error Edgewise raises on purpose."""

    default_reason = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class ValidationFailed(DomainError):
    """The request is malformed or breaks the schema. INVALID_ARGUMENT."""

    default_reason = "VALIDATION_FAILED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        violations: list[FieldViolation] | tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)

    @classmethod
    def of(cls, field_path: str, description: str, *, reason: str | None = None,
           metadata: dict[str, str] | None = None) -> "ValidationFailed":
        return cls(description, reason=reason, metadata=metadata,
                   violations=[FieldViolation(field_path, description)])


class NotFound(DomainError):
    """NOT_FOUND. ``resource_type`` / ``resource_name`` fill google.rpc.ResourceInfo."""

    default_reason = "NOT_FOUND"

    def __init__(self, message: str, *, resource_type: str, resource_name: str,
                 reason: str | None = None, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.resource_type = resource_type
        self.resource_name = resource_name


class AlreadyExists(DomainError):
    """ALREADY_EXISTS."""

    default_reason = "ALREADY_EXISTS"

    def __init__(self, message: str, *, resource_type: str, resource_name: str,
                 reason: str | None = None, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.resource_type = resource_type
        self.resource_name = resource_name


class VersionConflict(DomainError):
    """A stale etag / expected version. ABORTED; the write changed nothing."""

    default_reason = "VERSION_CONFLICT"


class RuleViolated(DomainError):
    """A graph invariant (cardinality, cycle, restrict, schema evolution...). FAILED_PRECONDITION."""

    default_reason = "RULE_VIOLATED"

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: dict[str, str] | None = None,
                 violations: list[PreconditionViolation] | tuple[PreconditionViolation, ...] = ()) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations: tuple[PreconditionViolation, ...] = tuple(violations) or (
            PreconditionViolation(type=self.reason, subject=self.metadata.get("subject", ""),
                                  description=message),
        )


class Unauthenticated(DomainError):
    """UNAUTHENTICATED: no credentials, or credentials that do not verify."""

    default_reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """PERMISSION_DENIED: the caller is known but may not do this (scope, graph)."""

    default_reason = "PERMISSION_DENIED"


@dataclass(frozen=True)
class QuotaViolation:
    """One exhausted quota (maps to google.rpc.QuotaFailure.Violation)."""

    subject: str
    description: str


class RateLimited(DomainError):
    """RESOURCE_EXHAUSTED with RetryInfo (and QuotaFailure when ``violations`` are given)."""

    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_seconds: float = 1.0,
                 reason: str | None = None, metadata: dict[str, str] | None = None,
                 violations: list[QuotaViolation] | tuple[QuotaViolation, ...] = ()) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds
        self.violations: tuple[QuotaViolation, ...] = tuple(violations)


class Unavailable(DomainError):
    """UNAVAILABLE with RetryInfo (storage down, projection behind a consistency token...)."""

    default_reason = "UNAVAILABLE"

    def __init__(self, message: str, *, retry_after_seconds: float = 0.5,
                 reason: str | None = None, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds


class DeadlineExceeded(DomainError):
    default_reason = "DEADLINE_EXCEEDED"


class Unimplemented(DomainError):
    """UNIMPLEMENTED: a method this process does not serve (another process does, or nobody)."""

    default_reason = "UNIMPLEMENTED"


class Internal(DomainError):
    default_reason = "INTERNAL"


class Reason:
    """Stable reason codes used across the system (ErrorInfo.reason). Never rename one."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_NAME = "INVALID_NAME"
    INVALID_PROPERTY = "INVALID_PROPERTY"
    UNKNOWN_NODE_TYPE = "UNKNOWN_NODE_TYPE"
    UNKNOWN_EDGE_TYPE = "UNKNOWN_EDGE_TYPE"
    PROPERTY_TOO_LARGE = "PROPERTY_TOO_LARGE"
    INVALID_SCHEMA = "INVALID_SCHEMA"
    INVALID_FILTER = "INVALID_FILTER"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    INVALID_CONSISTENCY_TOKEN = "INVALID_CONSISTENCY_TOKEN"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    GRAPH_NOT_FOUND = "GRAPH_NOT_FOUND"
    NODE_NOT_FOUND = "NODE_NOT_FOUND"
    EDGE_NOT_FOUND = "EDGE_NOT_FOUND"
    NODE_ALREADY_EXISTS = "NODE_ALREADY_EXISTS"
    EDGE_ALREADY_EXISTS = "EDGE_ALREADY_EXISTS"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    SCHEMA_VERSION_CONFLICT = "SCHEMA_VERSION_CONFLICT"
    ENDPOINT_MISSING = "ENDPOINT_MISSING"
    ENDPOINT_TYPE_MISMATCH = "ENDPOINT_TYPE_MISMATCH"
    CARDINALITY_VIOLATED = "CARDINALITY_VIOLATED"
    CYCLE_DETECTED = "CYCLE_DETECTED"
    CYCLE_CHECK_TOO_LARGE = "CYCLE_CHECK_TOO_LARGE"
    TOPOLOGY_VERSION_CONFLICT = "TOPOLOGY_VERSION_CONFLICT"
    UNIQUE_VIOLATED = "UNIQUE_VIOLATED"
    RESTRICT_VIOLATED = "RESTRICT_VIOLATED"
    SCHEMA_CHANGE_NOT_ADDITIVE = "SCHEMA_CHANGE_NOT_ADDITIVE"
    TYPE_IN_USE = "TYPE_IN_USE"
    NODE_DELETED = "NODE_DELETED"
    CONSISTENCY_NOT_REACHED = "CONSISTENCY_NOT_REACHED"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    # UNIMPLEMENTED: a port answers only its own service; metadata names the right address
    SERVICE_NOT_SERVED_HERE = "SERVICE_NOT_SERVED_HERE"
    METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
    # UNAUTHENTICATED (infrastructure/security): the bearer token is absent or does not verify
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_MALFORMED = "TOKEN_MALFORMED"
    TOKEN_SIGNATURE_INVALID = "TOKEN_SIGNATURE_INVALID"
    TOKEN_ALGORITHM_NOT_ALLOWED = "TOKEN_ALGORITHM_NOT_ALLOWED"
    TOKEN_KEY_UNKNOWN = "TOKEN_KEY_UNKNOWN"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
    TOKEN_AUDIENCE_INVALID = "TOKEN_AUDIENCE_INVALID"
    TOKEN_ISSUER_INVALID = "TOKEN_ISSUER_INVALID"
    TOKEN_CLAIMS_INVALID = "TOKEN_CLAIMS_INVALID"
    # PERMISSION_DENIED: the principal lacks the method's scope, or may not use a graph
    SCOPE_MISSING = "SCOPE_MISSING"
    GRAPH_ACCESS_DENIED = "GRAPH_ACCESS_DENIED"
    # RESOURCE_EXHAUSTED: the (principal, graph) token bucket of the method's class is empty
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL = "INTERNAL"

