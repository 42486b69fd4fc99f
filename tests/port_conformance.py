"""Static checks only: the adapters and test doubles have the shape of the ports they
stand in for. mypy reads this module (pyproject.toml ``[tool.mypy] files``; `make mypy`
and tests/architecture/test_mypy.py); nothing imports it and pytest does not collect it.

Ports are Protocols, matched structurally: an adapter never imports the port it
implements (infrastructure may not import a service package). The composition roots
check the adapters they wire; this module checks the rest, and the in-memory fakes.
A new adapter (DynamoDB ...) adds a line here.
"""

from __future__ import annotations

from command_service.app.ports import WriteStore, WriteUnitOfWork
from domain.ports import Clock, EventLog, IdGenerator
from infrastructure.persistence.memory.read_model import InMemoryReadModel
from infrastructure.persistence.memory.read_model import _Tx as InMemoryProjectionTransaction
from infrastructure.persistence.sqlite.event_log import SqliteEventLog
from infrastructure.persistence.sqlite.read_model import (
    SqliteProjectionStore,
    SqliteProjectionTransaction,
    SqliteReadModel,
)
from infrastructure.persistence.sqlite.write_store import SqliteUnitOfWork, SqliteWriteStore
from query_service.app.ports import ProjectionStore, ReadModel
from query_service.projection.apply import ProjectionTransaction
from tests.fakes import FakeClock, InMemoryEventLog, InMemoryUnitOfWork, InMemoryWriteStore, SequentialIds


def write_side(sqlite: SqliteWriteStore, sqlite_uow: SqliteUnitOfWork, sqlite_log: SqliteEventLog,
               fake: InMemoryWriteStore, fake_uow: InMemoryUnitOfWork, fake_log: InMemoryEventLog,
               clock: FakeClock, ids: SequentialIds,
               ) -> tuple[WriteStore, WriteUnitOfWork, EventLog, WriteStore, WriteUnitOfWork, EventLog, Clock,
                          IdGenerator]:
    return sqlite, sqlite_uow, sqlite_log, fake, fake_uow, fake_log, clock, ids


def read_side(sqlite: SqliteReadModel, sqlite_store: SqliteProjectionStore, sqlite_tx: SqliteProjectionTransaction,
              memory: InMemoryReadModel, memory_tx: InMemoryProjectionTransaction,
              ) -> tuple[ReadModel, ProjectionStore, ProjectionTransaction, ReadModel, ProjectionStore,
                         ProjectionTransaction]:
    return sqlite, sqlite_store, sqlite_tx, memory, memory, memory_tx
