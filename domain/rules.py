"""The graph invariants as named rules (DESIGN.md section 2).

A rule reads like the business language: ``check_rule(CardinalityRespected(...))``.
Rules are evaluated by handlers against state read *inside* the write transaction,
so the store's atomicity (SQLite's single writer, DynamoDB's conditions) makes the
check-then-write race free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domain.errors import PreconditionViolation, Reason, RuleViolated
from domain.node import Node
from domain.schema import Cardinality, EdgeType, OnDelete
from domain.values import PropertyValue


class BusinessRule(Protocol):
    @property
    def reason(self) -> str: ...  # read-only, so frozen dataclass rules conform

    def is_broken(self) -> bool: ...

    @property
    def message(self) -> str: ...

    @property
    def subject(self) -> str: ...


def check_rule(rule: BusinessRule) -> None:
    if rule.is_broken():
        raise RuleViolated(
            rule.message,
            reason=rule.reason,
            metadata={"rule": type(rule).__name__, "subject": rule.subject},
            violations=[PreconditionViolation(type=rule.reason, subject=rule.subject, description=rule.message)],
        )


@dataclass(frozen=True)
class EndpointExists:
    """Invariant 1a: both endpoints exist and are not deleted."""

    role: str  # "source" or "target"
    node_name: str
    node: Node | None
    reason: str = Reason.ENDPOINT_MISSING

    def is_broken(self) -> bool:
        return self.node is None or self.node.deleted

    @property
    def message(self) -> str:
        return f"edge {self.role} {self.node_name} does not exist"

    @property
    def subject(self) -> str:
        return self.node_name


@dataclass(frozen=True)
class EndpointHasType:
    """Invariant 1b: endpoints have the types the edge type names."""

    role: str
    node: Node
    edge_type: EdgeType
    reason: str = Reason.ENDPOINT_TYPE_MISMATCH

    @property
    def expected(self) -> str:
        return self.edge_type.source_type if self.role == "source" else self.edge_type.target_type

    def is_broken(self) -> bool:
        return self.node.type != self.expected

    @property
    def message(self) -> str:
        return (f"edge type {self.edge_type.name!r} needs a {self.expected!r} {self.role}, "
                f"{self.node.name} is a {self.node.type!r}")

    @property
    def subject(self) -> str:
        return self.node.name


@dataclass(frozen=True)
class CardinalityRespected:
    """Invariant 2: MANY_TO_ONE caps a source's outgoing edges of the type at one,
    ONE_TO_MANY a target's incoming, ONE_TO_ONE both."""

    edge_type: EdgeType
    node_name: str
    direction: str  # "OUT" (counting the source's edges) or "IN" (the target's)
    existing: int
    reason: str = Reason.CARDINALITY_VIOLATED

    @property
    def limit(self) -> int | None:
        return self.edge_type.cardinality.max_out if self.direction == "OUT" else self.edge_type.cardinality.max_in

    def is_broken(self) -> bool:
        return self.limit is not None and self.existing >= self.limit

    @property
    def message(self) -> str:
        side = "outgoing" if self.direction == "OUT" else "incoming"
        return (f"{self.edge_type.cardinality.value} edge type {self.edge_type.name!r} allows at most "
                f"{self.limit} {side} edge per node; {self.node_name} already has {self.existing}")

    @property
    def subject(self) -> str:
        return self.node_name


@dataclass(frozen=True)
class NoCycle:
    """Invariant 3: an acyclic edge type never forms a cycle.

    ``target_reaches_source``: whether a path of this type already leads from the new
    edge's target back to its source (a self-loop counts).
    """

    edge_type: EdgeType
    source_name: str
    target_name: str
    target_reaches_source: bool
    reason: str = Reason.CYCLE_DETECTED

    def is_broken(self) -> bool:
        return self.edge_type.acyclic and self.target_reaches_source

    @property
    def message(self) -> str:
        return (f"acyclic edge type {self.edge_type.name!r}: {self.source_name} -> {self.target_name} "
                f"would close a cycle")

    @property
    def subject(self) -> str:
        return self.source_name


@dataclass(frozen=True)
class CycleCheckWithinBound:
    """Invariant 3 is never answered wrongly: a cycle check that would visit more than
    ``max_visited`` nodes refuses the write instead of guessing (FAILED_PRECONDITION)."""

    edge_type_name: str
    visited: int
    max_visited: int
    reason: str = Reason.CYCLE_CHECK_TOO_LARGE

    def is_broken(self) -> bool:
        return self.visited > self.max_visited

    @property
    def message(self) -> str:
        return (f"the cycle check for acyclic edge type {self.edge_type_name!r} would visit more than "
                f"{self.max_visited} nodes; the edge is refused rather than risk a cycle")

    @property
    def subject(self) -> str:
        return self.edge_type_name


@dataclass(frozen=True)
class UniqueValueFree:
    """Invariant 5: unique properties are unique per (graph, node type)."""

    node_type: str
    property_name: str
    value: PropertyValue
    holder_id: str | None  # node currently holding the value, if any
    claimant_id: str
    reason: str = Reason.UNIQUE_VIOLATED

    def is_broken(self) -> bool:
        return self.holder_id is not None and self.holder_id != self.claimant_id

    @property
    def message(self) -> str:
        return (f"{self.node_type}.{self.property_name} = {self.value!r} is already taken by node "
                f"{self.holder_id!r}")

    @property
    def subject(self) -> str:
        return f"{self.node_type}.{self.property_name}"


@dataclass(frozen=True)
class NoRestrictingEdges:
    """Invariant 6: deleting a node is refused while RESTRICT edges touch it."""

    node_name: str
    edge_type: EdgeType
    count: int
    reason: str = Reason.RESTRICT_VIOLATED

    def is_broken(self) -> bool:
        return self.edge_type.on_delete is OnDelete.RESTRICT and self.count > 0

    @property
    def message(self) -> str:
        return (f"{self.node_name} still has {self.count} {self.edge_type.name!r} edge(s) whose type "
                f"is ON DELETE RESTRICT")

    @property
    def subject(self) -> str:
        return self.node_name


def needs_mirror(edge_type: EdgeType) -> bool:
    """Invariant 4: symmetric edge types are always present in both directions."""
    return edge_type.symmetric


__all__ = [
    "BusinessRule", "check_rule", "EndpointExists", "EndpointHasType", "CardinalityRespected", "NoCycle",
    "CycleCheckWithinBound", "UniqueValueFree", "NoRestrictingEdges", "needs_mirror", "Cardinality",
]
