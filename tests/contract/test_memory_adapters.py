"""Every port contract suite (tests/contract/suites) run against the in-memory adapters:
``tests.fakes.InMemoryWriteStore`` (write side, event log) and
``infrastructure.persistence.memory.InMemoryReadModel`` (read model + projection store)."""

import pytest

from infrastructure.persistence.memory.read_model import InMemoryReadModel
from query_service.cache import CachingReadModel, ReadCache
from query_service.projection.cache_sync import InvalidatingProjectionStore
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
from tests.fakes import InMemoryWriteStore

pytestmark = pytest.mark.contract


class InMemoryWriteStoreFixture(WriteStoreFixture):
    async def make_store(self):
        return InMemoryWriteStore()


class InMemoryReadModelFixture(ReadModelFixture):
    def shard_of(self, graph: str) -> str:
        return graph  # as tests.fakes.InMemoryEventLog (and DynamoDB) shard the log

    @pytest.fixture
    async def adapters(self):
        rm = InMemoryReadModel()
        return rm, rm


class CachingInMemoryReadModelFixture(ReadModelFixture):
    """The read cache over the in-memory read model: a roomy cache, and a tiny one that evicts
    all the time (both must answer exactly as the bare adapter)."""

    def shard_of(self, graph: str) -> str:
        return graph

    @pytest.fixture(params=[8 << 20, 3000], ids=["roomy", "tiny"])
    async def adapters(self, request):
        rm, cache = InMemoryReadModel(), ReadCache(request.param)
        return CachingReadModel(rm, cache, head_size=1001), InvalidatingProjectionStore(rm, cache)


class TestInMemorySchemaRepository(InMemoryWriteStoreFixture, SchemaRepositoryContract):
    pass


class TestInMemoryNodeRepository(InMemoryWriteStoreFixture, NodeRepositoryContract):
    pass


class TestInMemoryEdgeRepository(InMemoryWriteStoreFixture, EdgeRepositoryContract):
    pass


class TestInMemoryIdempotencyStore(InMemoryWriteStoreFixture, IdempotencyStoreContract):
    pass


class TestInMemoryCascadeJobQueue(InMemoryWriteStoreFixture, CascadeJobQueueContract):
    pass


class TestInMemoryUnitOfWork(InMemoryWriteStoreFixture, UnitOfWorkContract):
    pass


class TestInMemoryEventLog(InMemoryWriteStoreFixture, EventLogContract):
    pass


class TestInMemoryReadModel(InMemoryReadModelFixture, ReadModelContract):
    pass


class TestInMemoryProjectionStore(InMemoryReadModelFixture, ProjectionStoreContract):
    pass


class TestCachingReadModel(CachingInMemoryReadModelFixture, ReadModelContract):
    pass


class TestInvalidatingProjectionStore(CachingInMemoryReadModelFixture, ProjectionStoreContract):
    pass
