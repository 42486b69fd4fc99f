"""Ports the write side needs beyond domain.ports, declared beside the use cases.

``WriteUnitOfWork`` is the domain ``UnitOfWork`` plus the cascade-job queue (nodes
tombstoned with more edges than one transaction holds) and ``prefetch``. There is no
``flush``: log positions come out of ``commit()`` (a DynamoDB ``TransactWriteItems``
cannot be flushed half-way), and the idempotency record is completed with them there
(``PendingIdempotencyRecord``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, Self, Sequence

from domain.ports import CascadeJob, CascadeJobQueue, Positions, Prefetch, UnitOfWork

__all__ = ["CascadeJob", "CascadeJobQueue", "WriteUnitOfWork", "UnitOfWorkFactory", "ConsistencyTokens",
           "WriteStore"]


class WriteUnitOfWork(UnitOfWork, Protocol):
    @property
    def cascades(self) -> CascadeJobQueue: ...

    async def __aenter__(self) -> Self: ...

    async def prefetch(self, plan: Prefetch) -> None:
        """Load what ``plan`` names in a few set-based reads, ahead of the commands that
        read it. An optimisation only: may do nothing; what it skips is read on demand."""


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> WriteUnitOfWork: ...


class WriteStore(Protocol):
    """A write-side storage engine as the composition root wires it (command_service.bootstrap):
    ``SqliteWriteStore``, the DynamoDB store, the in-memory fake of the unit tests."""

    @property
    def max_edges_per_transaction(self) -> int:
        """The most edges one unit of work may add or remove (TransactionLimits): what one
        transaction of the engine holds (100 rows on SQLite; ~25 edges of several items
        each in DynamoDB's 100-item TransactWriteItems)."""

    def unit_of_work(self) -> WriteUnitOfWork:
        """A new unit of work (a ``UnitOfWorkFactory``); one per command or cascade batch."""

    async def purge_idempotency(self, older_than: datetime) -> int:
        """Delete the idempotency records created before ``older_than``; how many went."""

    async def close(self) -> None:
        """Release the engine's connections; the store is not used afterwards."""


class ConsistencyTokens(Protocol):
    def issue(self, positions: Positions, graphs: Sequence[str]) -> str:
        """An opaque signed token naming the log positions a write produced and the graphs it
        wrote (one: a command writes one graph)."""
