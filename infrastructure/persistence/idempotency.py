"""The staging half of an IdempotencyStore, the same on every engine: what a unit of work
read or staged is remembered per (graph, request id); a staged record is completed and
written by the commit (``take_pending``); a request id used twice is REQUEST_ID_REUSED.
An adapter says only how to check its unit of work is open and how to read one record."""

from __future__ import annotations

from abc import ABC, abstractmethod

from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.ports import IdempotencyRecord, PendingIdempotencyRecord


class StagedIdempotencyStore(ABC):
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], IdempotencyRecord | PendingIdempotencyRecord | None] = {}
        self._pending: list[PendingIdempotencyRecord] = []

    @abstractmethod
    def _ensure_open(self, graph: str) -> None:
        """Raise Internal unless the unit of work is open (for ``graph``)."""

    @abstractmethod
    async def _load(self, graph: str, request_id: str) -> IdempotencyRecord | None:
        """The stored, still live record, or None."""

    async def get(self, graph: str, request_id: str) -> IdempotencyRecord | None:
        self._ensure_open(graph)
        key = (graph, request_id)
        if key not in self._records:
            self._records[key] = await self._load(graph, request_id)
        record = self._records[key]
        return record if isinstance(record, IdempotencyRecord) else None

    async def put(self, record: PendingIdempotencyRecord) -> None:
        key = (record.graph, record.request_id)
        if await self.get(*key) is not None or self._records.get(key) is not None:
            raise ValidationFailed(
                f"request id {record.request_id!r} was already used", reason=Reason.REQUEST_ID_REUSED,
                violations=[FieldViolation("request_id", "already used for another request")])
        self._records[key] = record
        self._pending.append(record)

    def take_pending(self) -> list[PendingIdempotencyRecord]:
        """The staged records, for the commit to complete with its positions and write."""
        pending, self._pending = self._pending, []
        return pending
