import pytest

from command_service.app.common import TransactionLimits
from command_service.bootstrap import build_for_tests
from tests.command_samples import apply_sample_schema
from tests.fakes import FakeClock, InMemoryWriteStore, SequentialIds

SMALL_LIMITS = TransactionLimits(max_edges_per_transaction=6, max_batch_operations=100)


@pytest.fixture
def store() -> InMemoryWriteStore:
    return InMemoryWriteStore()


@pytest.fixture
def app(store):
    return build_for_tests(store, clock=FakeClock(), ids=SequentialIds(), limits=SMALL_LIMITS)


@pytest.fixture
async def graph_app(app):
    await app.dispatch(apply_sample_schema())
    return app
