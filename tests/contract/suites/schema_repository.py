"""Contract of domain.ports.SchemaRepository: versioned schemas, refused when stale."""

from __future__ import annotations

import pytest

from domain.errors import VersionConflict
from tests.command_samples import GRAPH
from tests.contract.suites.write_fixtures import T0, WriteStoreFixture, schema


class SchemaRepositoryContract(WriteStoreFixture):
    async def test_schema_round_trips_and_is_version_checked(self, store):
        async with store.unit_of_work() as uow:
            loaded = await uow.schemas.get(GRAPH)
            assert loaded.version == 1 and loaded.node_types == schema().node_types
            assert loaded.edge_types == schema().edge_types and loaded.update_time == T0
            assert (await uow.schemas.get("empty")).version == 0
            stale = schema()  # version 1 again
            with pytest.raises(VersionConflict):
                await uow.schemas.save(stale)

