"""In-memory adapters implementing the same ports as the SQLite write store.

Kept honest: a unit of work works on a private copy of the state and publishes it
only on commit (rollback discards everything), transactions are serialised by a
lock like the single SQLite writer, and the table constraints (unique edges and
claims, conditional saves, non-negative counters) raise the same domain errors.
The contract suites in tests/contract run against these too.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Sequence

from domain.edge import Direction, Edge, edge_already_exists, edge_not_found
from domain.errors import FieldViolation, Internal, Reason, ValidationFailed, VersionConflict
from domain.node import Node, node_already_exists, node_not_found
from domain.ports import CascadeJob, CommitResult, IdempotencyRecord, LoggedEvent, PendingIdempotencyRecord
from domain.rules import UniqueValueFree, check_rule
from domain.schema import Schema, schema_from_dict, schema_to_dict
from domain.values import EdgeKey, PropertyValue, encode_value
from infrastructure.persistence.tracking import AggregateTracker, NodeIdentityMap

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class FakeClock:
    """Advances one millisecond per reading, so create times are distinct and ordered."""

    def __init__(self, start: datetime = START, step: timedelta = timedelta(milliseconds=1)) -> None:
        self.current = start
        self.step = step

    def now(self) -> datetime:
        self.current += self.step
        return self.current


class SequentialIds:
    def __init__(self, prefix: str = "id") -> None:
        self._n = itertools.count(1)
        self.prefix = prefix

    def new_id(self) -> str:
        return f"{self.prefix}-{next(self._n)}"


def _unique_key(value: PropertyValue) -> str:
    return json.dumps(encode_value(value), separators=(",", ":"), sort_keys=True)


def _copy_node(node: Node) -> Node:
    return dataclasses.replace(node, properties=dict(node.properties), events=[])


def _copy_edge(edge: Edge) -> Edge:
    return dataclasses.replace(edge, properties=dict(edge.properties), events=[])


@dataclass
class _State:
    schemas: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # graph -> schema_to_dict per version
    nodes: dict[tuple[str, str], Node] = field(default_factory=dict)
    edges: dict[EdgeKey, Edge] = field(default_factory=dict)
    counters: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    claims: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    cascades: dict[tuple[str, str], CascadeJob] = field(default_factory=dict)
    topology: dict[tuple[str, str], int] = field(default_factory=dict)  # (graph, edge type) -> version


class InMemoryWriteStore:
    max_edges_per_transaction = 100

    def __init__(self) -> None:
        self.state = _State()
        self.log: list[LoggedEvent] = []
        self.lock = asyncio.Lock()
        self.out_neighbour_calls = 0  # storage rounds cycle checks cost (tests)

    def unit_of_work(self) -> "InMemoryUnitOfWork":
        return InMemoryUnitOfWork(self)

    def event_log(self) -> "InMemoryEventLog":
        return InMemoryEventLog(self)

    def shard_head(self, shard: str) -> int:
        return sum(1 for e in self.log if e.shard == shard)

    async def head(self, graph: str | None = None) -> int:
        """The head of the graph's shard (the fake shards its log per graph, like DynamoDB);
        without a graph, how many events the log holds (what tests compare before and after)."""
        return len(self.log) if graph is None else self.shard_head(graph)

    async def purge_idempotency(self, older_than: datetime) -> int:
        async with self.lock:
            old = [k for k, r in self.state.idempotency.items() if r.created_at < older_than]
            for k in old:
                del self.state.idempotency[k]
            return len(old)

    async def close(self) -> None:
        pass


class InMemoryEventLog:
    """One shard per graph (as on DynamoDB), so the app code is tested with many shards."""

    def __init__(self, store: InMemoryWriteStore) -> None:
        self._store = store

    def shard_of(self, graph: str) -> str:
        return graph

    async def shards(self) -> list[str]:
        return sorted({e.shard for e in self._store.log})

    async def read_after(self, shard: str, position: int, limit: int, *,
                         graph: str | None = None) -> list[LoggedEvent]:
        out = [e for e in self._store.log if e.shard == shard and e.position > position
               and (graph is None or e.event.graph == graph)]
        return out[:limit]

    async def heads(self, shards: Sequence[str] | None = None) -> dict[str, int]:
        return {s: self._store.shard_head(s) for s in (shards if shards is not None else await self.shards())}


class _SchemaRepo:
    def __init__(self, uow: "InMemoryUnitOfWork") -> None:
        self._uow = uow
        self._seen: dict[str, Schema] = {}

    async def get(self, graph: str) -> Schema:
        if graph not in self._seen:
            versions = self._uow.state.schemas.get(graph)
            schema = schema_from_dict(copy.deepcopy(versions[-1])) if versions else Schema(graph)
            self._seen[graph] = schema
            self._uow.track(schema)
        return self._seen[graph]

    async def save(self, schema: Schema) -> None:
        versions = self._uow.state.schemas.setdefault(schema.graph, [])
        if len(versions) != schema.version - 1:
            raise VersionConflict(f"schema of graph {schema.graph!r} is at version {len(versions)}",
                                  reason=Reason.SCHEMA_VERSION_CONFLICT,
                                  metadata={"current_version": str(len(versions))})
        versions.append(schema_to_dict(schema))
        self._seen[schema.graph] = schema
        self._uow.track(schema)


class _NodeRepo:
    def __init__(self, uow: "InMemoryUnitOfWork") -> None:
        self._uow = uow
        self._identity = NodeIdentityMap(uow)

    async def get(self, graph: str, node_id: str) -> Node | None:
        known = self._identity.get(graph, node_id)
        if known is not None:
            return known
        stored = self._uow.state.nodes.get((graph, node_id))
        return self._identity.remember(_copy_node(stored)) if stored is not None else None

    async def get_many(self, graph: str, node_ids: Sequence[str]) -> dict[str, Node]:
        out = {}
        for node_id in node_ids:
            node = await self.get(graph, node_id)
            if node is not None:
                out[node_id] = node
        return out

    async def add(self, node: Node) -> None:
        key = (node.graph, node.id)
        if key in self._uow.state.nodes:
            raise node_already_exists(node.ref)
        self._uow.state.nodes[key] = _copy_node(node)
        self._identity.remember(node)

    async def save(self, node: Node) -> None:
        key = (node.graph, node.id)
        stored = self._uow.state.nodes.get(key)
        expected = self._identity.stored_version(node)
        if stored is None:
            raise node_not_found(node.ref)
        if stored.version != expected:
            raise VersionConflict(f"{node.name} changed concurrently", reason=Reason.VERSION_CONFLICT,
                                  metadata={"resource": node.name})
        self._uow.state.nodes[key] = _copy_node(node)
        self._identity.remember(node)

    async def count_of_type(self, graph: str, node_type: str) -> int:
        return sum(1 for (g, _), n in self._uow.state.nodes.items() if g == graph and n.type == node_type
                   and not n.deleted)

    async def unique_holder(self, graph: str, node_type: str, property_name: str,
                            value: PropertyValue) -> str | None:
        return self._uow.state.claims.get((graph, node_type, property_name, _unique_key(value)))

    async def claim_unique(self, graph: str, node_type: str, property_name: str,
                           value: PropertyValue, node_id: str) -> None:
        key = (graph, node_type, property_name, _unique_key(value))
        holder = self._uow.state.claims.setdefault(key, node_id)
        check_rule(UniqueValueFree(node_type, property_name, value, holder, node_id))

    async def release_unique(self, graph: str, node_type: str, property_name: str,
                             value: PropertyValue, node_id: str) -> None:
        key = (graph, node_type, property_name, _unique_key(value))
        if self._uow.state.claims.get(key) == node_id:
            del self._uow.state.claims[key]


class _EdgeRepo:
    def __init__(self, uow: "InMemoryUnitOfWork") -> None:
        self._uow = uow
        self._topology: dict[tuple[str, str], int] = {}  # as first read (or bumped from) here
        self.topology_bumps: dict[tuple[str, str], int] = {}  # -> expected, checked at commit

    def _bump(self, graph: str, node: str, edge_type: str, direction: str, delta: int) -> None:
        key = (graph, node, edge_type, direction)
        value = self._uow.state.counters.get(key, 0) + delta
        if value < 0:
            raise Internal(f"edge counter {key} would go negative")
        if value:
            self._uow.state.counters[key] = value
        else:
            self._uow.state.counters.pop(key, None)

    async def get(self, key: EdgeKey) -> Edge | None:
        stored = self._uow.state.edges.get(key)
        if stored is None:
            return None
        edge = _copy_edge(stored)
        self._uow.track(edge)
        return edge

    async def add(self, edge: Edge) -> None:
        if edge.key in self._uow.state.edges:
            raise edge_already_exists(edge.key)
        self._uow.state.edges[edge.key] = _copy_edge(edge)
        self._bump(edge.graph, edge.source, edge.type, "OUT", 1)
        self._bump(edge.graph, edge.target, edge.type, "IN", 1)
        self._uow.track(edge)

    async def remove_many(self, edges: Sequence[Edge]) -> None:
        for edge in edges:
            if self._uow.state.edges.pop(edge.key, None) is None:
                raise edge_not_found(edge.key)
            self._bump(edge.graph, edge.source, edge.type, "OUT", -1)
            self._bump(edge.graph, edge.target, edge.type, "IN", -1)
        for edge in edges:
            self._uow.track(edge)

    async def count(self, graph: str, node_id: str, edge_type: str, direction: Direction) -> int:
        if direction is Direction.BOTH:
            return (await self.count(graph, node_id, edge_type, Direction.OUT)
                    + await self.count(graph, node_id, edge_type, Direction.IN))
        return self._uow.state.counters.get((graph, node_id, edge_type, direction.value), 0)

    async def counts_for_node(self, graph: str, node_id: str) -> dict[tuple[str, Direction], int]:
        return {(t, Direction(d)): n for (g, node, t, d), n in self._uow.state.counters.items()
                if g == graph and node == node_id and n > 0}

    async def list_for_node(self, graph: str, node_id: str, direction: Direction,
                            edge_type: str | None = None, limit: int = 1000) -> list[Edge]:
        def newest_first(edges: list[Edge]) -> list[Edge]:
            edges.sort(key=lambda e: (e.source, e.type, e.target))
            edges.sort(key=lambda e: e.create_time, reverse=True)
            return edges

        out: list[Edge] = []
        all_edges = [e for e in self._uow.state.edges.values()
                     if e.graph == graph and (edge_type is None or e.type == edge_type)]
        if direction in (Direction.OUT, Direction.BOTH):
            out += newest_first([e for e in all_edges if e.source == node_id])[:limit]
        if direction in (Direction.IN, Direction.BOTH):
            out += newest_first([e for e in all_edges if e.target == node_id])[:limit - len(out)]
        copies = [_copy_edge(e) for e in out]
        for edge in copies:
            self._uow.track(edge)
        return copies

    async def out_neighbours(self, graph: str, edge_type: str, node_ids: Sequence[str]) -> dict[str, list[str]]:
        self._uow.store.out_neighbour_calls += 1
        wanted = set(node_ids)
        out: dict[str, list[str]] = {}
        for key in self._uow.state.edges:
            if key.graph == graph and key.type == edge_type and key.source in wanted:
                out.setdefault(key.source, []).append(key.target)
        return out

    async def topology_version(self, graph: str, edge_type: str) -> int:
        key = (graph, edge_type)
        if key not in self._topology:
            self._topology[key] = self._uow.state.topology.get(key, 0)
        return self._topology[key]

    def bump_topology(self, graph: str, edge_type: str, expected: int) -> None:
        _ = self._uow.state  # raises outside ``async with``, like every other call
        key = (graph, edge_type)
        staged = self.topology_bumps.setdefault(key, expected)
        if staged != expected:
            raise VersionConflict(f"topology of {edge_type!r} bumped from {staged}, not {expected}",
                                  reason=Reason.TOPOLOGY_VERSION_CONFLICT)
        self._topology.setdefault(key, expected)

    def apply_topology_bumps(self, committed: _State) -> None:
        """At commit: each bump's condition against the committed state (what another
        unit of work may have changed meanwhile), then the bumps into this one's copy."""
        for key, expected in self.topology_bumps.items():
            current = committed.topology.get(key, 0)
            if current != expected:
                raise VersionConflict(f"topology of {key[1]!r} in graph {key[0]!r} is at version {current}, "
                                      f"expected {expected}", reason=Reason.TOPOLOGY_VERSION_CONFLICT,
                                      metadata={"current_version": str(current), "expected_version": str(expected)})
        for key, expected in self.topology_bumps.items():
            self._uow.state.topology[key] = expected + 1

    async def count_of_type(self, graph: str, edge_type: str) -> int:
        return sum(1 for k in self._uow.state.edges if k.graph == graph and k.type == edge_type)


class _IdempotencyRepo:
    def __init__(self, uow: "InMemoryUnitOfWork") -> None:
        self._uow = uow

    async def get(self, graph: str, request_id: str) -> IdempotencyRecord | None:
        return self._uow.state.idempotency.get((graph, request_id))

    async def put(self, record: PendingIdempotencyRecord) -> None:
        key = (record.graph, record.request_id)
        if key in self._uow.state.idempotency or any((p.graph, p.request_id) == key for p in self._uow.pending):
            raise ValidationFailed("request id already used", reason=Reason.REQUEST_ID_REUSED,
                                   violations=[FieldViolation("request_id", "already used")])
        self._uow.pending.append(record)


class _CascadeQueue:
    def __init__(self, uow: "InMemoryUnitOfWork") -> None:
        self._uow = uow

    async def enqueue(self, job: CascadeJob) -> None:
        self._uow.state.cascades.setdefault((job.graph, job.node_id), job)

    async def next(self) -> CascadeJob | None:
        jobs = sorted(self._uow.state.cascades.values(), key=lambda j: j.created_at)
        return jobs[0] if jobs else None

    async def complete(self, graph: str, node_id: str) -> None:
        self._uow.state.cascades.pop((graph, node_id), None)


class InMemoryUnitOfWork:
    def __init__(self, store: InMemoryWriteStore) -> None:
        self._store = store
        self.store = store  # public for the repositories' diagnostics counters
        self._state: _State = _State()
        self._active = False
        self._used = False
        self._committed = False
        self._aggregates = AggregateTracker()
        self._staged_log: list[LoggedEvent] = []
        self.pending: list[PendingIdempotencyRecord] = []
        self.schemas = _SchemaRepo(self)
        self.nodes = _NodeRepo(self)
        self.edges = _EdgeRepo(self)
        self.idempotency = _IdempotencyRepo(self)
        self.cascades = _CascadeQueue(self)

    @property
    def state(self) -> _State:
        """The unit of work's private copy; like the SQLite transaction, only inside ``async with``."""
        if not self._active:
            raise Internal("the unit of work is not open (use `async with uow:`)")
        return self._state

    def track(self, aggregate: Any) -> None:
        self._aggregates.track(aggregate)

    async def __aenter__(self) -> "InMemoryUnitOfWork":
        if self._used:
            raise Internal("a unit of work is used once")
        self._used = True
        await self._store.lock.acquire()
        self._state = copy.deepcopy(self._store.state)
        self._active = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                await self.rollback()
        finally:
            self._active = False
            self._store.lock.release()

    def _stage_events(self) -> CommitResult:
        """Positions are allocated here, at commit: per shard (graph), gap-free."""
        known = {e.event.event_id for e in itertools.chain(self._store.log, self._staged_log)}
        heads: dict[str, int] = {}
        for event in self._aggregates.take_events():
            if event.event_id in known:
                raise Internal(f"duplicate event id {event.event_id}")
            known.add(event.event_id)
            shard = event.graph
            heads[shard] = heads.get(shard, self._store.shard_head(shard)) + 1
            self._staged_log.append(LoggedEvent(position=heads[shard], event=event, shard=shard))
        if not heads:  # wrote nothing: name the heads of the graphs it may have read
            graphs = {p.graph for p in self.pending} or {e.shard for e in self._store.log}
            heads = {g: self._store.shard_head(g) for g in graphs}
        return CommitResult(positions=heads)

    async def prefetch(self, plan: Any) -> None:
        """Everything is in memory already."""
        if not self._active:
            raise Internal("the unit of work is not open (use `async with uow:`)")

    async def commit(self) -> CommitResult:
        if not self._active:
            raise Internal("the unit of work is not open (use `async with uow:`)")
        self.edges.apply_topology_bumps(self._store.state)
        result = self._stage_events()
        for pending in self.pending:
            self._state.idempotency[(pending.graph, pending.request_id)] = pending.complete(result)
        self.pending.clear()
        self._store.state = self._state
        self._store.log.extend(self._staged_log)
        self._committed = True
        return result

    async def rollback(self) -> None:
        self._aggregates.discard()
        self._staged_log.clear()
        self.pending.clear()
        self._state = _State()
