"""Helpers for query-side tests: build events and write them straight into an event log."""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from datetime import datetime, timedelta, timezone

from domain.events import (
    DomainEvent, EdgeAdded, EdgeRemoved, NodeCreated, NodeDeleted, NodeUpdated, SchemaApplied,
)
from domain.ports import LoggedEvent
from domain.schema import Cardinality, EdgeType, NodeType, OnDelete, PropertyDef, Schema, schema_to_dict
from domain.values import PropertyKind
from infrastructure.persistence.sqlite.event_log import EVENT_LOG_DDL, append_events
from infrastructure.persistence.sqlite.read_model import READ_MODEL_DDL

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
SECRET = b"test-secret-0123456789abcdef"

USER = NodeType("User", (
    PropertyDef("email", PropertyKind.STRING, unique=True),
    PropertyDef("name", PropertyKind.STRING),
    PropertyDef("age", PropertyKind.INT, indexed=True),
    PropertyDef("score", PropertyKind.DOUBLE),
    PropertyDef("active", PropertyKind.BOOL),
    PropertyDef("born", PropertyKind.TIMESTAMP, indexed=True),
    PropertyDef("city", PropertyKind.STRING, indexed=True),
))
DOC = NodeType("Doc", (PropertyDef("title", PropertyKind.STRING),))
FOLLOWS = EdgeType("follows", "User", "User", Cardinality.MANY_TO_MANY, on_delete=OnDelete.CASCADE,
                   properties=(PropertyDef("weight", PropertyKind.INT),))
OWNS = EdgeType("owns", "User", "Doc", on_delete=OnDelete.CASCADE)


def schema(graph: str = "g", version: int = 1, node_types=(USER, DOC), edge_types=(FOLLOWS, OWNS)) -> Schema:
    return Schema(graph=graph, version=version, node_types={t.name: t for t in node_types},
                  edge_types={t.name: t for t in edge_types}, update_time=T0)


class Events:
    """Builds events with increasing timestamps and node versions."""

    def __init__(self, graph: str = "g") -> None:
        self.graph = graph
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self.versions: dict[str, int] = {}
        self.schema_version = 0

    def _common(self, aggregate_id: str, version: int) -> dict:
        at = T0 + timedelta(seconds=next(self._clock))
        return dict(event_id=f"e{next(self._ids)}", graph=self.graph, aggregate_id=aggregate_id,
                    aggregate_version=version, occurred_at=at)

    def schema(self, s: Schema | None = None) -> SchemaApplied:
        self.schema_version += 1
        body = schema_to_dict(s or schema(self.graph, self.schema_version))
        body["version"] = self.schema_version
        return SchemaApplied(**self._common("schema", self.schema_version), schema=body)

    def create(self, node_id: str, node_type: str = "User", **props) -> NodeCreated:
        self.versions[node_id] = self.versions.get(node_id, 0) + 1
        return NodeCreated(**self._common(node_id, self.versions[node_id]), node_type=node_type, properties=props)

    def update(self, node_id: str, node_type: str = "User", **props) -> NodeUpdated:
        self.versions[node_id] += 1
        return NodeUpdated(**self._common(node_id, self.versions[node_id]), node_type=node_type, properties=props,
                           changed=tuple(props))

    def delete(self, node_id: str, node_type: str = "User") -> NodeDeleted:
        self.versions[node_id] += 1
        return NodeDeleted(**self._common(node_id, self.versions[node_id]), node_type=node_type)

    def link(self, source: str, target: str, edge_type: str = "follows", **props) -> EdgeAdded:
        common = self._common(f"{source}/{edge_type}/{target}", 1)
        return EdgeAdded(**common, source=source, edge_type=edge_type, target=target, properties=props,
                         create_time=common["occurred_at"])

    def unlink(self, source: str, target: str, edge_type: str = "follows") -> EdgeRemoved:
        return EdgeRemoved(**self._common(f"{source}/{edge_type}/{target}", 2), source=source, edge_type=edge_type,
                           target=target)


def logged(events: list[DomainEvent], start: int = 1, shard: str = "0") -> list[LoggedEvent]:
    """The events at positions ``start``, ``start + 1``, ... of ``shard``."""
    return [LoggedEvent(position=start + i, event=e, shard=shard) for i, e in enumerate(events)]


def init_db(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(EVENT_LOG_DDL + READ_MODEL_DDL)
    conn.close()


def write_events(path: str, events: list[DomainEvent]) -> int:
    """Append events to the file's event log (as the command side would); the last position."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        last = append_events(conn, events)
        conn.execute("COMMIT")
        return last
    finally:
        conn.close()


@asynccontextmanager
async def query_app(path: str, **settings: Any) -> AsyncIterator[Any]:
    """The real query application (``bootstrap``) on a SQLite file; ``app.path`` is set."""
    from infrastructure.config import Settings
    from query_service.bootstrap import bootstrap

    init_db(path)
    app = await bootstrap(Settings(db_path=path, token_secret=SECRET, **settings))
    app.path = path
    try:
        yield app
    finally:
        if app.projector is not None:
            app.projector.stop()
        await app.close()


@asynccontextmanager
async def served_query_stub(path: str, events: list[DomainEvent], interceptors: list[Any] | None = None
                            ) -> AsyncIterator[Any]:
    """A GraphQueryService stub talking over loopback to the real servicer, interceptors
    (``interceptors``, else the default chain) and query application, after ``events`` were
    written and projected."""
    import grpc

    from edgewise.graph.v1 import query_service_pb2_grpc as qgrpc
    from infrastructure.grpc.chain import default_interceptors
    from infrastructure.grpc.server import start_server
    from query_service.entrypoints.grpc.servicer import SERVICE_NAME, register

    init_db(path)
    write_events(path, events)
    async with query_app(path) as app:
        await app.projector.catch_up()
        running = await start_server(address="127.0.0.1:0", register=register(app), service_names=[SERVICE_NAME],
                                     interceptors=default_interceptors() if interceptors is None else interceptors)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        try:
            yield qgrpc.GraphQueryServiceStub(channel)
        finally:
            await channel.close()
            await running.stop(0)
