"""The read-side port contract suites (ReadModel, ProjectionStore) against the DynamoDB
adapters, on moto's server (tests/dynamodb_support.py): the suites run unchanged. The
log shard of a graph is ``keys.shard_id(graph, 0)``: one log bucket per graph (ADR 0010)."""

import pytest

from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.projection import DynamoProjectionStore
from infrastructure.persistence.dynamodb.read_model import DynamoReadModel
from tests.contract.suites.projection_store import ProjectionStoreContract
from tests.contract.suites.read_fixtures import ReadModelFixture
from tests.contract.suites.read_model import ReadModelContract

pytestmark = [pytest.mark.contract, pytest.mark.integration, pytest.mark.dynamodb]


class DynamoReadModelFixture(ReadModelFixture):
    def shard_of(self, graph: str) -> str:
        return keys.shard_id(graph, 0)

    @pytest.fixture
    async def adapters(self, dynamo):
        return DynamoReadModel(dynamo), DynamoProjectionStore(dynamo)


class TestDynamoReadModel(DynamoReadModelFixture, ReadModelContract):
    pass


class TestDynamoProjectionStore(DynamoReadModelFixture, ProjectionStoreContract):
    pass
