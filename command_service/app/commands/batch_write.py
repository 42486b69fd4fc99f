"""BatchWrite: up to 100 node/edge operations, all or nothing, in ONE unit of work.

Each operation runs the very same use-case logic as its single RPC (the handlers'
``execute``), sharing one WriteBudget: a batch whose expanded writes (mirrors,
cascades) do not fit one transaction is refused with BATCH_TOO_LARGE, never split.

Before they run, every handler names what its operation will read (``plan``) and the
unit of work loads all of it in a few set-based reads (``prefetch``); the rules then
run against that state and the writes are flushed as multi-row statements at commit
(ADR 0006). The prefetch only saves round trips: it changes no outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, TypeVar, Union

from domain.errors import DomainError, FieldViolation, Reason, ValidationFailed
from domain.events import Causation
from domain.ports import Prefetch
from domain.schema import Schema

from command_service.app.commands.add_edge import AddEdge, AddEdgeResult
from command_service.app.commands.create_node import CreateNode, CreateNodeResult
from command_service.app.commands.delete_node import DeleteNode, DeleteNodeResult
from command_service.app.commands.remove_edge import RemoveEdge, RemoveEdgeResult
from command_service.app.commands.update_node import UpdateNode, UpdateNodeResult
from command_service.app.common import CommandMeta, TransactionLimits, WriteBudget, require_schema
from command_service.app.ports import WriteUnitOfWork

BatchOperation = Union[CreateNode, UpdateNode, DeleteNode, AddEdge, RemoveEdge]
BatchOperationResult = Union[CreateNodeResult, UpdateNodeResult, DeleteNodeResult, AddEdgeResult, RemoveEdgeResult]
BATCH_OPERATION_TYPES = (CreateNode, UpdateNode, DeleteNode, AddEdge, RemoveEdge)
# The BatchWriteOperation oneof field each operation arrives in (for error field paths).
_OPERATION_FIELD = {CreateNode: "create_node", UpdateNode: "update_node", DeleteNode: "delete_node",
                    AddEdge: "add_edge", RemoveEdge: "remove_edge"}


@dataclass(frozen=True)
class BatchWrite:
    graph: str
    operations: tuple[BatchOperation, ...]
    request_id: str = ""
    meta: CommandMeta = CommandMeta()


@dataclass(frozen=True)
class BatchWriteResult:
    results: tuple[BatchOperationResult, ...]
    consistency_token: str = ""


O = TypeVar("O")  # one operation's command type (``plan`` takes and returns it)
OR = TypeVar("OR", covariant=True)  # its result type


class BatchOperationHandler(Protocol[O, OR]):
    """A single-operation handler (``CreateNodeHandler`` ...) as a batch runs it. Each one
    handles its own command type only: the batch picks it by ``type(operation)``."""

    def plan(self, command: O, schema: Schema, reads: Prefetch) -> O:
        """Add what ``execute`` will read to ``reads``; return the command to execute
        (the same one, or one with a generated id filled in). Never raises."""

    async def execute(self, uow: WriteUnitOfWork, command: O, causation: Causation,
                      budget: WriteBudget | None = None) -> OR: ...


class BatchWriteHandler:
    command_type = BatchWrite
    result_type = BatchWriteResult

    def __init__(self, handlers: Mapping[type, BatchOperationHandler[Any, Any]],
                 limits: TransactionLimits = TransactionLimits()) -> None:
        """``handlers``: the undecorated single-operation handlers, by command type."""
        self._handlers = dict(handlers)
        self._limits = limits

    def _validate(self, command: BatchWrite) -> None:
        n = len(command.operations)
        if n == 0:
            raise ValidationFailed.of("operations", "at least one operation is required",
                                      reason=Reason.INVALID_ARGUMENT)
        if n > self._limits.max_batch_operations:
            raise ValidationFailed.of("operations", f"at most {self._limits.max_batch_operations} operations, got {n}",
                                      reason=Reason.BATCH_TOO_LARGE,
                                      metadata={"limit": str(self._limits.max_batch_operations), "size": str(n)})
        violations = []
        for i, op in enumerate(command.operations):
            if type(op) not in self._handlers:
                violations.append(FieldViolation(f"operations[{i}]", f"unsupported operation {type(op).__name__}"))
            elif op.graph != command.graph:
                violations.append(FieldViolation(f"operations[{i}]",
                                                 f"targets graph {op.graph!r}, the batch is for {command.graph!r}"))
        if violations:
            raise ValidationFailed("invalid batch: " + "; ".join(v.description for v in violations),
                                   reason=Reason.INVALID_ARGUMENT, violations=violations)

    async def execute(self, uow: WriteUnitOfWork, command: BatchWrite, causation: Causation,
                      budget: WriteBudget | None = None) -> BatchWriteResult:
        self._validate(command)
        budget = budget or WriteBudget.batch(self._limits)
        operations = await self._prefetch(uow, command)
        results = []
        for i, op in enumerate(operations):
            try:
                results.append(await self._handlers[type(op)].execute(uow, op, causation, budget=budget))
            except DomainError as exc:
                exc.metadata.setdefault("operation_index", str(i))
                if isinstance(exc, ValidationFailed):
                    # name the field as the caller sent it: inside operations[i]
                    prefix = f"operations[{i}].{_OPERATION_FIELD[type(op)]}."
                    exc.violations = tuple(FieldViolation(prefix + v.field, v.description) for v in exc.violations)
                raise
        return BatchWriteResult(results=tuple(results))

    async def _prefetch(self, uow: WriteUnitOfWork, command: BatchWrite) -> list[BatchOperation]:
        operations = list(command.operations)
        try:
            schema = await require_schema(uow, command.graph)
        except DomainError:
            return operations  # the first operation reports it, with its index
        reads = Prefetch()
        for i, op in enumerate(operations):
            operations[i] = self._handlers[type(op)].plan(op, schema, reads)
        await uow.prefetch(reads)
        return operations
