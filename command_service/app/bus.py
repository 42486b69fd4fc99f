"""The command bus: one registry {command type: handler}, one unit of work per command,
and cross-cutting decorators wrapped uniformly around every handler.

A handler only decides; the bus opens the unit of work, stamps the causation (time,
event ids, request id, trace context), commits, and attaches the consistency token.
Decorators have the handler's shape (``execute(uow, command, causation)``), so they
run inside the same transaction: ``Idempotent`` stores the response with the write.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Mapping

from domain.errors import DomainError, FieldViolation, Internal, Reason, ValidationFailed
from domain.events import Causation
from domain.ports import Clock, CommitResult, IdGenerator, PendingIdempotencyRecord

from command_service.app.codec import ResultCodec, fingerprint
from command_service.app.common import CommandHandler
from command_service.app.ports import ConsistencyTokens, UnitOfWorkFactory, WriteUnitOfWork

HandlerDecorator = Callable[[CommandHandler[Any, Any]], CommandHandler[Any, Any]]


class Idempotent:
    """AIP-155 inside the command's own transaction.

    Same (graph, request_id) and same fingerprint: return the stored response, write
    nothing. Different fingerprint: REQUEST_ID_REUSED. Otherwise run, then stage the
    response; ``commit()`` renders it with the token of its own positions and stores it
    in the same transaction (the token is a pure function of the positions and the graph, so the
    stored response and the one the bus returns carry the same token)."""

    def __init__(self, inner: CommandHandler[Any, Any], codec: ResultCodec, tokens: ConsistencyTokens) -> None:
        self._inner = inner
        self._codec = codec
        self._tokens = tokens

    async def execute(self, uow: WriteUnitOfWork, command: Any, causation: Causation) -> Any:
        request_id = getattr(command, "request_id", "")
        if not request_id:
            return await self._inner.execute(uow, command, causation)
        operation = type(command).__name__
        print_ = fingerprint(command)
        record = await uow.idempotency.get(command.graph, request_id)
        if record is not None:
            if record.operation != operation or record.fingerprint != print_:
                raise ValidationFailed(
                    f"request id {request_id!r} was already used for a different request",
                    reason=Reason.REQUEST_ID_REUSED,
                    violations=[FieldViolation("request_id", "already used for a different request; "
                                               "use a new UUID4 for a new request")],
                    metadata={"request_id": request_id, "operation": record.operation})
            return self._codec.decode(record.response)
        result = await self._inner.execute(uow, command, causation)
        codec, tokens, graph = self._codec, self._tokens, command.graph

        def render(committed: CommitResult) -> bytes:  # called by commit(), once its positions exist
            token = tokens.issue(committed.positions, [graph])
            return codec.encode(dataclasses.replace(result, consistency_token=token))

        await uow.idempotency.put(PendingIdempotencyRecord(
            graph=command.graph, request_id=request_id, operation=operation, fingerprint=print_,
            created_at=causation.occurred_at, render=render))
        return result  # the bus adds the same token from commit()


class Logged:
    """One structured log line per command: operation, graph, outcome, duration."""

    def __init__(self, inner: CommandHandler[Any, Any], logger: logging.Logger | None = None) -> None:
        self._inner = inner
        self._log = logger or logging.getLogger("edgewise.commands")

    async def execute(self, uow: WriteUnitOfWork, command: Any, causation: Causation) -> Any:
        started = time.perf_counter()
        operation = type(command).__name__
        try:
            result = await self._inner.execute(uow, command, causation)
        except DomainError as exc:
            self._log.info("command %s graph=%s failed reason=%s in %.1f ms", operation, command.graph, exc.reason,
                           (time.perf_counter() - started) * 1000,
                           extra={"fields": {"operation": operation, "graph": command.graph, "outcome": exc.reason}})
            raise
        self._log.info("command %s graph=%s ok in %.1f ms", operation, command.graph,
                       (time.perf_counter() - started) * 1000,
                       extra={"fields": {"operation": operation, "graph": command.graph, "outcome": "OK"}})
        return result


class CommandBus:
    def __init__(self, *, handlers: Mapping[type, CommandHandler[Any, Any]], uow_factory: UnitOfWorkFactory, clock: Clock,
                 ids: IdGenerator, tokens: ConsistencyTokens,
                 decorators: tuple[HandlerDecorator, ...] = ()) -> None:
        """``decorators`` are applied in order, so the last one is the outermost."""
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids
        self._tokens = tokens
        self._pipelines: dict[type, CommandHandler[Any, Any]] = {}
        for command_type, handler in handlers.items():
            for decorate in decorators:
                handler = decorate(handler)
            self._pipelines[command_type] = handler

    @property
    def command_types(self) -> tuple[type, ...]:
        return tuple(self._pipelines)

    def _causation(self, command: Any) -> Causation:
        # The idempotency key names the request best; the call's x-request-id otherwise.
        return Causation(occurred_at=self._clock.now(), new_event_id=self._ids.new_id,
                         request_id=command.request_id or command.meta.correlation_id,
                         trace_context=command.meta.traceparent)

    async def dispatch(self, command: Any) -> Any:
        pipeline = self._pipelines.get(type(command))
        if pipeline is None:
            raise Internal(f"no handler registered for {type(command).__name__}")
        causation = self._causation(command)
        async with self._uow_factory() as uow:
            result = await pipeline.execute(uow, command, causation)
            committed = await uow.commit()
        if not result.consistency_token:
            token = self._tokens.issue(committed.positions, [command.graph])
            result = dataclasses.replace(result, consistency_token=token)
        return result
