"""Ports the write side needs beyond domain.ports, declared beside the use cases.

``WriteUnitOfWork`` is the domain ``UnitOfWork`` plus the cascade-job queue (nodes
tombstoned with more edges than one transaction holds) and ``flush``, which appends
the events recorded so far inside the open transaction so that the idempotency
record can carry the consistency token of the very commit it is part of.
"""

from __future__ import annotations

from typing import Protocol

from domain.ports import CascadeJob, CascadeJobQueue, CommitResult, Prefetch, UnitOfWork

__all__ = ["CascadeJob", "CascadeJobQueue", "WriteUnitOfWork", "UnitOfWorkFactory", "ConsistencyTokens"]


class WriteUnitOfWork(UnitOfWork, Protocol):
    cascades: CascadeJobQueue

    async def flush(self) -> CommitResult:
        """Append the events recorded so far to the log (inside the transaction).

        Returns the last position this unit of work has written, or the log head when
        it wrote none. ``commit`` flushes too and returns the same positions."""

    async def prefetch(self, plan: Prefetch) -> None:
        """Load what ``plan`` names in a few set-based reads, ahead of the commands that
        read it. An optimisation only: may do nothing; what it skips is read on demand."""


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> WriteUnitOfWork: ...


class ConsistencyTokens(Protocol):
    def issue(self, positions: dict[str, int]) -> str:
        """An opaque signed token naming the log positions a write produced."""
