"""Consumed capacity, per operation name, for the process and per RPC (DESIGN §5, §8).

Every ``DynamoClient`` call passes ``ReturnConsumedCapacity="TOTAL"`` and records what
came back in its ``CapacityMeter``: the process totals, and every ``capacity_scope()``
open in the calling context. A scope is a contextvar, so tasks started inside it
(``asyncio.gather``, ``TaskGroup``) record into it too::

    with capacity_scope() as usage:
        await handler(request)
    log.info("rpc cost", extra={"capacity_units": usage.capacity_units, "calls": usage.calls})

A call is counted whether it succeeded or not (a throttled or condition-failed call is
a round trip too). ``unreported_calls`` counts calls whose response carried no
ConsumedCapacity: failed calls, control-plane calls (DescribeTable...), and on moto 5.2
every TransactWriteItems (it returns an empty list) — so capacity measured on moto is a
lower bound; measure costs on DynamoDB or DynamoDB Local.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass
class OperationUsage:
    """Calls of one operation (e.g. "BatchGetItem") and the capacity units they consumed."""

    calls: int = 0
    capacity_units: float = 0.0
    unreported_calls: int = 0


@dataclass
class CapacityUsage:
    """A sum of calls and capacity units by operation name."""

    operations: dict[str, OperationUsage] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(op.calls for op in self.operations.values())

    @property
    def capacity_units(self) -> float:
        return sum(op.capacity_units for op in self.operations.values())

    @property
    def unreported_calls(self) -> int:
        return sum(op.unreported_calls for op in self.operations.values())

    def calls_of(self, operation: str) -> int:
        usage = self.operations.get(operation)
        return usage.calls if usage else 0

    def capacity_of(self, operation: str) -> float:
        usage = self.operations.get(operation)
        return usage.capacity_units if usage else 0.0

    def add(self, operation: str, capacity_units: float | None) -> None:
        usage = self.operations.get(operation)
        if usage is None:
            usage = self.operations[operation] = OperationUsage()
        usage.calls += 1
        if capacity_units is None:
            usage.unreported_calls += 1
        else:
            usage.capacity_units += capacity_units

    def copy(self) -> "CapacityUsage":
        return CapacityUsage({name: OperationUsage(op.calls, op.capacity_units, op.unreported_calls)
                              for name, op in self.operations.items()})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: totals and per operation (logs, the benchmark, tests)."""
        return {"calls": self.calls, "capacity_units": self.capacity_units,
                "unreported_calls": self.unreported_calls,
                "operations": {name: {"calls": op.calls, "capacity_units": op.capacity_units,
                                      "unreported_calls": op.unreported_calls}
                               for name, op in sorted(self.operations.items())}}


_SCOPES: ContextVar[tuple[CapacityUsage, ...]] = ContextVar("edgewise_dynamodb_capacity_scopes", default=())


@contextmanager
def capacity_scope() -> Iterator[CapacityUsage]:
    """Sum every DynamoDB call made in this context (and tasks started in it) until exit.
    Scopes nest: a call records into every open scope."""
    usage = CapacityUsage()
    token = _SCOPES.set(_SCOPES.get() + (usage,))
    try:
        yield usage
    finally:
        try:
            _SCOPES.reset(token)
        except ValueError:  # closed from another Context (a cancelled response stream): nothing to restore
            pass


def current_scope() -> CapacityUsage | None:
    """The innermost open scope of this context, if any."""
    scopes = _SCOPES.get()
    return scopes[-1] if scopes else None


def consumed_units(consumed: Any) -> float | None:
    """Total CapacityUnits of a response's ConsumedCapacity (a dict for single-table
    calls, a list for batch and transaction calls); None when nothing was reported."""
    if isinstance(consumed, dict):
        units = consumed.get("CapacityUnits")
        return float(units) if units is not None else None
    if isinstance(consumed, list) and consumed:
        total, reported = 0.0, False
        for entry in consumed:
            units = entry.get("CapacityUnits") if isinstance(entry, dict) else None
            if units is not None:
                total += float(units)
                reported = True
        return total if reported else None
    return None


class CapacityMeter:
    """Process totals of one client's calls; also feeds every open ``capacity_scope``."""

    def __init__(self) -> None:
        self._totals = CapacityUsage()

    def record(self, operation: str, consumed: Any) -> None:
        """Count one call of ``operation`` with the response's ConsumedCapacity (or None)."""
        units = consumed_units(consumed)
        self._totals.add(operation, units)
        for scope in _SCOPES.get():
            scope.add(operation, units)

    def totals(self) -> CapacityUsage:
        """A snapshot of the process totals."""
        return self._totals.copy()

    def reset(self) -> None:
        self._totals = CapacityUsage()
