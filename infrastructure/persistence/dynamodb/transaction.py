"""One TransactWriteItems request being built, and what each item's condition stands for.

A unit of work renders everything it staged into a ``TransactionBuilder``: each item with
its condition expression and a ``Guard`` — the domain error that explains a failure of
that very condition (a stale version is a VersionConflict, a taken claim UNIQUE_VIOLATED,
an existing edge EDGE_ALREADY_EXISTS...). When DynamoDB cancels the transaction it says
which items failed (``TransactionCancelled.reasons``, by index), and ``explain`` turns the
first failing one into its domain error. Guards marked ``log`` stand for the log-sequence
condition: losing only those means another writer of the graph appended first, which the
unit of work answers by re-reading the head and retrying.

DynamoDB refuses a transaction that touches one item twice: ``add`` refuses it here
(Internal: a bug of the adapter), so every caller merges first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from domain.errors import DomainError, Internal

from infrastructure.persistence.dynamodb.attributes import AttributeValue, Item, Key, key_of, key_tuple
from infrastructure.persistence.dynamodb.errors import RETRYABLE_CANCELLATION_CODES, TransactionCancelled

Operation = Literal["Put", "Update", "Delete", "ConditionCheck"]

# DynamoDB's limits for one TransactWriteItems.
MAX_ITEMS = 100
MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Guard:
    """Why an item carries a condition: ``explain(stored item or None)`` is the domain
    error its failure means (the stored item comes back with ``return_old``)."""

    explain: Callable[[Item | None], DomainError]
    log: bool = False  # the log head's sequence condition: retryable by the unit of work
    what: str = ""  # for messages and tests: "node", "edge", "counter", "claim", ...


@dataclass
class TransactionBuilder:
    items: list[dict[str, Any]] = field(default_factory=list)
    guards: list[Guard | None] = field(default_factory=list)
    _keys: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _bytes: int = 0

    def __len__(self) -> int:
        return len(self.items)

    def copy(self) -> "TransactionBuilder":
        """A builder holding the same items so far (items themselves are shared, not copied)."""
        return TransactionBuilder(list(self.items), list(self.guards), dict(self._keys), self._bytes)

    @property
    def estimated_bytes(self) -> int:
        """Roughly what DynamoDB counts against the 4 MB request limit (names + values)."""
        return self._bytes

    def touches(self, table: str, key: Key) -> bool:
        return (table, *key_tuple(key)) in self._keys

    def what_at(self, index: int) -> str:
        guard = self.guards[index]
        return guard.what if guard is not None else ""

    def add(self, operation: Operation, table: str, *, key: Key | None = None, item: Item | None = None,
            update: str | None = None, condition: str | None = None, names: Mapping[str, str] | None = None,
            values: Mapping[str, AttributeValue] | None = None, guard: Guard | None = None,
            return_old: bool = False) -> None:
        if operation == "Put":
            if item is None:
                raise Internal("a transaction Put needs an item")
            key = key_of(item)
        if key is None:
            raise Internal(f"a transaction {operation} needs a key")
        identity = (table, *key_tuple(key))
        if identity in self._keys:
            raise Internal(f"the transaction touches {identity[1]}/{identity[2]} twice (merge first)")
        if condition is not None and guard is None:
            raise Internal("a conditional transaction item needs a guard to explain its failure")
        body: dict[str, Any] = {"TableName": table}
        if operation == "Put":
            body["Item"] = item
        else:
            body["Key"] = key
        if update is not None:
            body["UpdateExpression"] = update
        if condition is not None:
            body["ConditionExpression"] = condition
        if names:
            body["ExpressionAttributeNames"] = dict(names)
        if values:
            body["ExpressionAttributeValues"] = dict(values)
        if return_old and condition is not None:
            body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self._keys[identity] = len(self.items)
        self.items.append({operation: body})
        self.guards.append(guard)
        self._bytes += _size(item if item is not None else key) + _size(values or {})

    def explain(self, cancelled: TransactionCancelled) -> DomainError | None:
        """The domain error of the first item whose condition failed and that is not the log
        head's, or None when only the log head's condition failed and/or items conflicted
        with another transaction (another writer got there first: retry)."""
        failed = cancelled.failed()
        for reason in failed:
            guard = self.guards[reason.index] if 0 <= reason.index < len(self.guards) else None
            if reason.code in RETRYABLE_CANCELLATION_CODES or (guard is not None and guard.log
                                                               and reason.condition_failed):
                continue
            if guard is None or not reason.condition_failed:
                return Internal(f"DynamoDB refused item {reason.index} of the transaction ({reason.code})",
                                metadata={"item": str(reason.index), "code": reason.code})
            return guard.explain(reason.item)
        if not failed:
            return Internal("DynamoDB cancelled the transaction without naming an item")
        return None


def _size(value: Any) -> int:
    """Bytes of an item / attribute value in the wire format, approximately as DynamoDB
    sizes them (UTF-8 names and strings, raw binary, numbers as their digits)."""
    if isinstance(value, dict):
        return sum(len(str(k).encode("utf-8")) + _size(v) for k, v in value.items())
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, list):
        return sum(_size(v) for v in value) + 3
    return 1
