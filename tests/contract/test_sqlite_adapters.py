"""Every port contract suite (tests/contract/suites) run against the SQLite adapters."""

import pytest

from infrastructure.persistence.sqlite.connection import SqliteConnection, SqliteReaderPool
from infrastructure.persistence.sqlite.event_log import SHARD, SqliteEventLog
from infrastructure.persistence.sqlite.read_model import (
    HEAD_MIN,
    READ_MODEL_DDL,
    SqliteProjectionStore,
    SqliteReadModel,
)
from query_service.cache import CachingReadModel, ReadCache
from query_service.projection.cache_sync import InvalidatingProjectionStore
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from tests.contract.suites.cascade_job_queue import CascadeJobQueueContract
from tests.contract.suites.edge_repository import EdgeRepositoryContract
from tests.contract.suites.event_log import EventLogContract
from tests.contract.suites.idempotency_store import IdempotencyStoreContract
from tests.contract.suites.node_repository import NodeRepositoryContract
from tests.contract.suites.projection_store import ProjectionStoreContract
from tests.contract.suites.read_fixtures import ReadModelFixture
from tests.contract.suites.read_model import ReadModelContract
from tests.contract.suites.schema_repository import SchemaRepositoryContract
from tests.contract.suites.unit_of_work import UnitOfWorkContract
from tests.contract.suites.write_fixtures import WriteStoreFixture

pytestmark = pytest.mark.contract


class SqliteWriteStoreFixture(WriteStoreFixture):
    """A ``SqliteWriteStore`` on a fresh file; the event log is read as the query side reads
    it, through a read-only reader pool on the same file (query_service.bootstrap)."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.db_path = str(tmp_path / "edgewise.db")

    async def make_store(self):
        return await SqliteWriteStore.open(self.db_path)

    @pytest.fixture
    async def event_log(self, empty_store):
        readers = await SqliteReaderPool(self.db_path, size=2).open()
        yield SqliteEventLog(readers)
        await readers.close()


async def _sqlite_read_side(path: str):
    """A read-model writer and a reader pool over one file, tables created."""
    writer = await SqliteConnection(path).open()
    await writer.execute_script(READ_MODEL_DDL)
    return writer, await SqliteReaderPool(path, size=2).open()


class SqliteReadModelFixture(ReadModelFixture):
    def shard_of(self, graph: str) -> str:
        return SHARD

    @pytest.fixture
    async def adapters(self, tmp_path):
        writer, readers = await _sqlite_read_side(str(tmp_path / "rm.db"))
        yield SqliteReadModel(readers), SqliteProjectionStore(writer)
        await readers.close()
        await writer.close()


class CachingSqliteReadModelFixture(ReadModelFixture):
    """The read cache (as the query service composes it) over the SQLite read model."""

    def shard_of(self, graph: str) -> str:
        return SHARD

    @pytest.fixture
    async def adapters(self, tmp_path):
        writer, readers = await _sqlite_read_side(str(tmp_path / "rm.db"))
        cache = ReadCache(8 << 20)
        yield (CachingReadModel(SqliteReadModel(readers), cache, head_size=HEAD_MIN),
               InvalidatingProjectionStore(SqliteProjectionStore(writer), cache))
        await readers.close()
        await writer.close()


class TestSqliteSchemaRepository(SqliteWriteStoreFixture, SchemaRepositoryContract):
    pass


class TestSqliteNodeRepository(SqliteWriteStoreFixture, NodeRepositoryContract):
    pass


class TestSqliteEdgeRepository(SqliteWriteStoreFixture, EdgeRepositoryContract):
    pass


class TestSqliteIdempotencyStore(SqliteWriteStoreFixture, IdempotencyStoreContract):
    pass


class TestSqliteCascadeJobQueue(SqliteWriteStoreFixture, CascadeJobQueueContract):
    pass


class TestSqliteUnitOfWork(SqliteWriteStoreFixture, UnitOfWorkContract):
    pass


class TestSqliteEventLog(SqliteWriteStoreFixture, EventLogContract):
    pass


class TestSqliteReadModel(SqliteReadModelFixture, ReadModelContract):
    pass


class TestSqliteProjectionStore(SqliteReadModelFixture, ProjectionStoreContract):
    pass


class TestCachingSqliteReadModel(CachingSqliteReadModelFixture, ReadModelContract):
    pass


class TestInvalidatingSqliteProjectionStore(CachingSqliteReadModelFixture, ProjectionStoreContract):
    pass
