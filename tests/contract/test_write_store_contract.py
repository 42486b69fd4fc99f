"""The write-store contract, run against every adapter: SQLite and the in-memory fakes."""

import pytest

from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from tests.contract.write_store_suite import WriteStoreContract
from tests.fakes import InMemoryWriteStore

pytestmark = pytest.mark.contract


class TestSqliteWriteStore(WriteStoreContract):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp_path = tmp_path

    async def make_store(self):
        return await SqliteWriteStore.open(str(self.tmp_path / "edgewise.db"))


class TestInMemoryWriteStore(WriteStoreContract):
    async def make_store(self):
        return InMemoryWriteStore()
