"""The "make a store" fixture and helpers every write-side port suite shares.

Each suite inherits ``WriteStoreFixture``; an adapter supplies a mixin that implements
``make_store`` (an object with ``unit_of_work()``, ``event_log()``, ``head()``,
``purge_idempotency()``, ``close()``) and may override the ``event_log`` fixture with
the reader its query side really uses. An adapter test module then only says e.g.
``class TestSqliteNodeRepository(SqliteWriteStoreFixture, NodeRepositoryContract): pass``.

The suites are engine-neutral: a log shard is always found with ``shard_of(graph)``
(SQLite has one, "0"; the fake and DynamoDB one per graph), and positions are compared
per shard.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from domain.edge import Edge
from domain.events import Causation
from domain.node import Node
from domain.ports import LoggedEvent
from domain.schema import Schema
from tests.command_samples import BORN, EDGE_TYPES, GRAPH, NODE_TYPES

T0 = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
_EVENT_IDS = itertools.count(1)


def causation(at: datetime = T0, request_id: str = "req", trace_context: str = TRACEPARENT) -> Causation:
    return Causation(occurred_at=at, new_event_id=lambda: f"evt-{next(_EVENT_IDS)}",
                     request_id=request_id, trace_context=trace_context)


def schema(graph: str = GRAPH) -> Schema:
    s = Schema(graph)
    s.apply(NODE_TYPES, EDGE_TYPES, expected_version=0, type_in_use=lambda k, n: False, causation=causation())
    return s


FULL_PROPS = {"name": "Zoë 🚀 名前", "email": "zoe@example.com", "age": -(2**63), "score": 0.1 + 0.2,
              "active": False, "born": BORN, "badge": 2**63 - 1}


class WriteStoreFixture:
    """Abstract: ``make_store`` per adapter. ``store`` has the sample schema applied to GRAPH."""

    async def make_store(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture
    async def empty_store(self):
        store = await self.make_store()
        yield store
        await store.close()

    @pytest.fixture
    async def store(self, empty_store):
        async with empty_store.unit_of_work() as uow:
            await uow.schemas.save(schema())
            await uow.commit()
        return empty_store

    @pytest.fixture
    async def event_log(self, empty_store):
        """The EventLog port over the store; adapters override it with their query side's reader."""
        return empty_store.event_log()

    async def add_node(self, store, node_id: str, graph: str = GRAPH, **props) -> Node:
        async with store.unit_of_work() as uow:
            node = Node.create(graph=graph, node_id=node_id, type_name="User",
                               properties={"name": node_id, **props}, schema=await uow.schemas.get(graph),
                               causation=causation())
            await uow.nodes.add(node)
            await uow.commit()
        return node

    async def add_edge(self, store, source: str, edge_type: str, target: str, at: datetime = T0) -> None:
        async with store.unit_of_work() as uow:
            e = Edge.create(graph=GRAPH, source=source, type_name=edge_type, target=target, properties={},
                            schema=await uow.schemas.get(GRAPH), causation=causation(at))
            await uow.edges.add(e)
            await uow.commit()

    @staticmethod
    async def shard_head(store, graph: str = GRAPH) -> int:
        """The head of the log shard that holds ``graph``'s events (read outside a unit of work)."""
        log = store.event_log()
        shard = log.shard_of(graph)
        return (await log.heads([shard]))[shard]

    @staticmethod
    async def graph_events(store, graph: str = GRAPH, after: int = 0) -> list[LoggedEvent]:
        """``graph``'s committed events after ``after`` in its shard, in order."""
        log = store.event_log()
        return await log.read_after(log.shard_of(graph), after, 10_000, graph=graph)
