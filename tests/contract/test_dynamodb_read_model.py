"""The read-side port contract suites (ReadModel, ProjectionStore) against the DynamoDB
adapters, on moto's server (tests/dynamodb_support.py): the suites run unchanged. The
log shard of a graph is ``keys.shard_id(graph, 0)``: one log bucket per graph (ADR 0010)."""

import pytest

from deploy.dynamodb.tables import READ
from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.admin import create_tables, delete_tables
from infrastructure.persistence.dynamodb.projection import DynamoProjectionStore
from infrastructure.persistence.dynamodb.read_model import DynamoReadModel
from tests.contract.suites.projection_store import ProjectionStoreContract
from tests.contract.suites.read_fixtures import ReadModelFixture
from tests.contract.suites.read_model import ReadModelContract
from tests.dynamodb_support import open_test_client

pytestmark = [pytest.mark.contract, pytest.mark.integration, pytest.mark.dynamodb]


class DynamoReadModelFixture(ReadModelFixture):
    def shard_of(self, graph: str) -> str:
        return keys.shard_id(graph, 0)

    @pytest.fixture
    async def adapters(self, dynamo_settings):
        """The read side needs the read table only (creating all three per test costs more)."""
        client = await open_test_client(dynamo_settings)
        try:
            await create_tables(client, tables=(READ,))
            yield DynamoReadModel(client), DynamoProjectionStore(client)
            await delete_tables(client, tables=(READ,))
        finally:
            await client.close()


class TestDynamoReadModel(DynamoReadModelFixture, ReadModelContract):
    pass


class TestDynamoProjectionStore(DynamoReadModelFixture, ProjectionStoreContract):
    pass
