"""What a ``DynamoClient`` call raises besides the domain's errors.

The client maps every failure (infrastructure/persistence/dynamodb/client.py):

- ``Unavailable`` (domain, STORAGE_UNAVAILABLE, retryable): throttling, 5xx, a
  transaction conflict, connection and endpoint errors, missing credentials or tables.
- ``Internal`` (domain): a request DynamoDB refused as malformed (a bug of ours).
- ``ValidationFailed`` (domain, BATCH_TOO_LARGE): ``transact_write`` over 100 items.
- ``ConditionFailed``: a single-item write's ConditionExpression was false.
- ``TransactionCancelled``: a TransactWriteItems was cancelled for a reason that is not
  retryable — a condition, or a per-item validation error. Item *i*'s reason is
  ``reasons[i]``, so the adapter that built the transaction maps it to the domain error
  that item stands for (AlreadyExists, VersionConflict, RuleViolated...).

These two are outcomes an adapter must translate; neither is a ``DomainError``, so one
that escapes by mistake surfaces as INTERNAL, never as a misleading status. No botocore
type or AWS message is carried: codes and the items DynamoDB returned only.
"""

from __future__ import annotations

from dataclasses import dataclass

from infrastructure.persistence.dynamodb.attributes import Item

# Cancellation reason codes (TransactWriteItems / TransactGetItems).
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailed"
NO_REASON = "None"
# Codes that only say "try again": a transaction cancelled for these alone is Unavailable.
RETRYABLE_CANCELLATION_CODES = frozenset({
    "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded",
})


class DynamoOutcome(Exception):
    """Base of the outcomes a DynamoDB adapter translates into domain errors."""


class ConditionFailed(DynamoOutcome):
    """A single-item Put/Update/Delete whose ConditionExpression was false. ``item`` is
    the stored item when the call asked for it (``return_old_on_failure=True``)."""

    def __init__(self, operation: str, item: Item | None = None) -> None:
        super().__init__(f"{operation}: the condition was not met")
        self.operation = operation
        self.item = item


@dataclass(frozen=True)
class CancellationReason:
    """Why item ``index`` of a transaction was cancelled. ``code`` is DynamoDB's
    ("None" for an item that was fine, "ConditionalCheckFailed", "ValidationError"...);
    ``item`` is the stored item when that transaction item asked for it
    (``ReturnValuesOnConditionCheckFailure="ALL_OLD"``)."""

    index: int
    code: str
    item: Item | None = None

    @property
    def condition_failed(self) -> bool:
        return self.code == CONDITIONAL_CHECK_FAILED


class TransactionCancelled(DynamoOutcome):
    """A TransactWriteItems cancelled as a whole: nothing it held was written."""

    def __init__(self, reasons: list[CancellationReason]) -> None:
        failing = [r for r in reasons if r.code != NO_REASON]
        summary = ", ".join(f"item {r.index}: {r.code}" for r in failing[:5])
        more = f" (+{len(failing) - 5} more)" if len(failing) > 5 else ""
        super().__init__(f"transaction cancelled: {summary or 'no reason given'}{more}")
        self.reasons = reasons

    def failed(self) -> list[CancellationReason]:
        """The reasons whose code is not "None", in item order."""
        return [r for r in self.reasons if r.code != NO_REASON]

    def reason(self, index: int) -> CancellationReason | None:
        """Item ``index``'s reason (None when DynamoDB returned fewer reasons)."""
        return self.reasons[index] if 0 <= index < len(self.reasons) else None

    def condition_failed_at(self) -> list[int]:
        """The indexes of the items whose condition failed."""
        return [r.index for r in self.reasons if r.condition_failed]
