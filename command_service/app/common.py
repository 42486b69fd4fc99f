"""What every write use case shares: command metadata, the handler shape, the
per-transaction write budget and the lookups that turn "absent" into NotFound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from domain.errors import FieldViolation, NotFound, Reason, ValidationFailed
from domain.events import Causation
from domain.node import Node, node_not_found
from domain.rules import UniqueValueFree, check_rule
from domain.schema import Schema
from domain.values import GRAPH_RESOURCE_TYPE, NodeRef, PropertyValue, check_graph_id

from command_service.app.acyclicity import DEFAULT_MAX_VISITED
from command_service.app.ports import WriteUnitOfWork

# One transaction adds or removes at most this many edge entries (mirrors and
# cascades included): DynamoDB's TransactWriteItems holds 100 items.
MAX_EDGES_PER_TRANSACTION = 100
MAX_BATCH_OPERATIONS = 100


@dataclass(frozen=True)
class CommandMeta:
    """Transport context of a command (not part of its identity or fingerprint):
    the x-request-id of the call and its W3C traceparent."""

    correlation_id: str = ""
    traceparent: str = ""


@dataclass(frozen=True)
class TransactionLimits:
    max_edges_per_transaction: int = MAX_EDGES_PER_TRANSACTION
    max_batch_operations: int = MAX_BATCH_OPERATIONS
    # the most nodes one acyclicity check may visit before the write is refused
    max_cycle_check_nodes: int = DEFAULT_MAX_VISITED


class WriteBudget:
    """Counts edge entries written in one transaction.

    A single DeleteNode whose cascade does not fit is deferred to the background
    (``defer_cascades``); inside a BatchWrite nothing is deferred or split: the
    batch is refused with BATCH_TOO_LARGE."""

    def __init__(self, max_edges: int, *, defer_cascades: bool) -> None:
        self.max_edges = max_edges
        self.defer_cascades = defer_cascades
        self.used = 0

    @classmethod
    def single(cls, limits: TransactionLimits) -> "WriteBudget":
        return cls(limits.max_edges_per_transaction, defer_cascades=True)

    @classmethod
    def batch(cls, limits: TransactionLimits) -> "WriteBudget":
        return cls(limits.max_edges_per_transaction, defer_cascades=False)

    @property
    def remaining(self) -> int:
        return self.max_edges - self.used

    def fits(self, edges: int) -> bool:
        return edges <= self.remaining

    def spend(self, edges: int, what: str) -> None:
        if not self.fits(edges):
            raise ValidationFailed(
                f"{what} needs {edges} edge writes; only {self.remaining} of {self.max_edges} remain in this "
                "transaction. Split the batch (writes are never split by the server).",
                reason=Reason.BATCH_TOO_LARGE,
                violations=[FieldViolation("operations", f"expands past {self.max_edges} edge writes")],
                metadata={"limit": str(self.max_edges), "needed": str(self.used + edges)},
            )
        self.used += edges


C = TypeVar("C", contravariant=True)
R = TypeVar("R", covariant=True)


class CommandHandler(Protocol[C, R]):
    """A use case: runs inside the caller's unit of work; never commits."""

    async def execute(self, uow: WriteUnitOfWork, command: C, causation: Causation) -> R: ...


async def require_schema(uow: WriteUnitOfWork, graph: str) -> Schema:
    check_graph_id(graph)
    schema = await uow.schemas.get(graph)
    if schema.version == 0:
        raise NotFound(f"graph graphs/{graph} does not exist (apply a schema first)",
                       resource_type=GRAPH_RESOURCE_TYPE, resource_name=f"graphs/{graph}",
                       reason=Reason.GRAPH_NOT_FOUND)
    return schema


async def require_node(uow: WriteUnitOfWork, graph: str, node_id: str) -> Node:
    node = await uow.nodes.get(graph, node_id)
    if node is None or node.deleted:
        raise node_not_found(NodeRef(graph, node_id))
    return node


async def claim_unique_value(uow: WriteUnitOfWork, node: Node, property_name: str, value: PropertyValue) -> None:
    """Invariant 5: check the rule, then claim the value (the store's claim backs the rule)."""
    holder = await uow.nodes.unique_holder(node.graph, node.type, property_name, value)
    check_rule(UniqueValueFree(node.type, property_name, value, holder, node.id))
    await uow.nodes.claim_unique(node.graph, node.type, property_name, value, node.id)
