import itertools
from datetime import datetime, timezone

import pytest

from domain.events import Causation
from domain.schema import Schema
from tests.unit.domain.samples import FOLLOWS, FRIEND, GROUP, MANAGES, MEMBER_OF, USER

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def causation() -> Causation:
    ids = itertools.count(1)
    return Causation(occurred_at=NOW, new_event_id=lambda: f"evt-{next(ids)}", request_id="req-1",
                     trace_context="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


@pytest.fixture
def schema(causation: Causation) -> Schema:
    s = Schema("g1")
    s.apply([USER, GROUP], [FOLLOWS, MEMBER_OF, MANAGES, FRIEND], expected_version=0,
            type_in_use=lambda kind, name: False, causation=causation)
    s.events.clear()
    return s
