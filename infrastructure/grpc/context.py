"""Per-call request context (request id, trace parent, deadline) in a contextvar.

Set by RequestContextInterceptor for the duration of one RPC; readable anywhere
below it (handlers, storage adapters, log formatter) without threading arguments.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallFacts:
    """What the interceptors below the access log learn about a call, for the access log and
    the metrics above them: who called (set by authentication), which graph the call is about
    (authorization) and a command's idempotency key (validation). Never a token or a value."""

    principal: Any = None  # infrastructure.security.principal.Principal once authenticated
    graph: str = ""
    idempotency_request_id: str = ""
    # the ErrorInfo reason of the error the call ended with (set by error mapping, read by the metrics)
    error_reason: str = ""

    @property
    def principal_name(self) -> str:
        return getattr(self.principal, "subject", "") if self.principal is not None else ""


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    traceparent: str = ""
    method: str = ""
    # time.monotonic() value after which the caller has given up; None = no deadline.
    deadline: float | None = None
    # filled in by the interceptors inside the access log (one object per call)
    facts: CallFacts = field(default_factory=CallFacts, compare=False)

    @property
    def trace_id(self) -> str:
        """The W3C trace id from ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
        parts = self.traceparent.split("-")
        return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else ""

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


_EMPTY = RequestContext()
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "edgewise_request_context", default=_EMPTY
)


def current_context() -> RequestContext:
    return _current.get()


def current_request_id() -> str:
    return _current.get().request_id


def current_traceparent() -> str:
    return _current.get().traceparent


def current_trace_id() -> str:
    return _current.get().trace_id


def current_facts() -> CallFacts:
    """The current call's facts; outside a call a throwaway object (writes go nowhere)."""
    ctx = _current.get()
    return ctx.facts if ctx is not _EMPTY else CallFacts()


def current_method() -> str:
    return _current.get().method


def current_deadline() -> float | None:
    """The call's deadline as a ``time.monotonic()`` value, or None."""
    return _current.get().deadline


def time_remaining() -> float | None:
    """Seconds left before the caller's deadline, or None when it set none."""
    return _current.get().time_remaining()


@contextmanager
def request_scope(ctx: RequestContext) -> Iterator[RequestContext]:
    """Make ``ctx`` the current request context inside the block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        try:
            _current.reset(token)
        except ValueError:
            # A response stream's generator closed from another task (grpc ends a cancelled or
            # timed-out stream with athrow in a task of its own, in a copy of the Context): that
            # Context's value dies with it, nothing to restore. Raising here turned a CANCELLED
            # stream into INTERNAL and a "Task exception was never retrieved".
            pass
