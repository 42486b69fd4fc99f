"""Ports the domain and the command side need from the outside world.

Adapters live in infrastructure/persistence/*; one contract suite per port
(tests/contract) runs against every adapter. Query-side ports (ReadModel,
Checkpoints, Cache) are declared beside the queries that use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Callable, Mapping, Protocol, Self, Sequence

from domain.edge import Direction, Edge
from domain.events import DomainEvent
from domain.node import Node
from domain.schema import Schema
from domain.values import EdgeKey, PropertyValue


class Clock(Protocol):
    def now(self) -> datetime: ...


class IdGenerator(Protocol):
    def new_id(self) -> str: ...


class SchemaRepository(Protocol):
    async def get(self, graph: str) -> Schema:
        """The graph's schema; an empty version-0 schema when none was applied."""

    async def save(self, schema: Schema) -> None:
        """Store the schema; the store refuses a version it did not expect (VersionConflict)."""


class NodeRepository(Protocol):
    async def get(self, graph: str, node_id: str) -> Node | None:
        """The node (tombstoned nodes come back with ``deleted=True``) or None."""

    async def get_many(self, graph: str, node_ids: Sequence[str]) -> dict[str, Node]:
        """The nodes that exist (tombstones included), by id, FOR READING ONLY (rule
        checks): an adapter may hand out shared copies. Change a node through ``get``."""

    async def add(self, node: Node) -> None:
        """Insert a new node; AlreadyExists (NODE_ALREADY_EXISTS) if the id is taken."""

    async def save(self, node: Node) -> None:
        """Store a changed node, conditional on the version it was loaded at."""

    async def count_of_type(self, graph: str, node_type: str) -> int: ...

    async def unique_holder(self, graph: str, node_type: str, property_name: str,
                            value: PropertyValue) -> str | None:
        """The id of the node holding a unique value, if any."""

    async def claim_unique(self, graph: str, node_type: str, property_name: str,
                           value: PropertyValue, node_id: str) -> None:
        """Atomically claim a unique value; RuleViolated (UNIQUE_VIOLATED) if held by another node."""

    async def release_unique(self, graph: str, node_type: str, property_name: str,
                             value: PropertyValue, node_id: str) -> None: ...


class EdgeRepository(Protocol):
    async def get(self, key: EdgeKey) -> Edge | None: ...

    async def add(self, edge: Edge) -> None:
        """Store the edge, its mirror entry and bump both endpoint counters atomically.
        AlreadyExists (EDGE_ALREADY_EXISTS) if (source, type, target) exists."""

    async def remove_many(self, edges: Sequence[Edge]) -> None:
        """Delete the edges (one storage call for all of them) with their mirror entries
        and decrement the counters. NotFound (EDGE_NOT_FOUND) if one of them is missing."""

    async def count(self, graph: str, node_id: str, edge_type: str, direction: Direction) -> int:
        """From the per-node per-type counter: O(1)."""

    async def counts_for_node(self, graph: str, node_id: str) -> dict[tuple[str, Direction], int]: ...

    async def list_for_node(self, graph: str, node_id: str, direction: Direction,
                            edge_type: str | None = None, limit: int = 1000) -> list[Edge]:
        """Edges touching the node, newest first. ``Direction.BOTH`` lists OUT then IN."""

    async def out_neighbours(self, graph: str, edge_type: str, node_ids: Sequence[str]) -> dict[str, list[str]]:
        """The targets of the OUT edges of ``edge_type`` leaving each of ``node_ids``, as
        this unit of work sees them: edges it added or removed count, written or not.

        ONE storage round for the whole frontier, whatever its size (SQLite: one
        ``source IN (...)`` read; an engine without multi-key queries issues its reads
        concurrently). A node without such edges may be left out of the answer. The
        acyclicity check (``command_service.app.acyclicity``) walks the graph with it,
        one call per level, so it needs no recursive query from the engine."""

    async def topology_version(self, graph: str, edge_type: str) -> int:
        """The topology version of (graph, edge type): 0 until an edge of an acyclic type
        was first added. It is the version stored when this unit of work first read it
        (or the ``expected`` it bumped with): its own pending bump is not visible.

        Invariant 3 under concurrent writers: a write that adds an edge of an acyclic
        type reads this BEFORE its cycle check and calls ``bump_topology`` with it, so
        two writes that each saw no cycle cannot both commit a cycle between them."""

    def bump_topology(self, graph: str, edge_type: str, expected: int) -> None:
        """Stage ``version := expected + 1`` for (graph, edge type), applied atomically
        with the unit of work's other changes on condition that the stored version still
        is ``expected`` (SQLite: a conditional UPDATE in the transaction; DynamoDB: a
        condition expression in TransactWriteItems). If it is not, the commit fails with
        VersionConflict (TOPOLOGY_VERSION_CONFLICT, ABORTED: retry the command) and writes
        nothing. Costs no storage call. At most one bump per (graph, edge type) per unit
        of work: another call with the same ``expected`` is a no-op, with a different one
        a VersionConflict. Removing edges needs no bump (a removal cannot close a cycle)."""

    async def count_of_type(self, graph: str, edge_type: str) -> int: ...


@dataclass(frozen=True)
class IdempotencyRecord:
    """AIP-155: the first response to a request id, kept at least 24 hours."""

    graph: str
    request_id: str
    operation: str
    fingerprint: str  # hash of the request without its request id
    response: bytes
    created_at: datetime


@dataclass(frozen=True)
class PendingIdempotencyRecord:
    """An idempotency record whose response is rendered at commit.

    The response carries the consistency token of the very commit it is stored with, and
    the log positions of that commit exist only once the unit of work allocates them,
    inside ``commit()`` (a DynamoDB transaction cannot be flushed half-way). So the
    record is staged with ``render``, which the unit of work calls once with the
    commit's positions before it writes the record in the same transaction."""

    graph: str
    request_id: str
    operation: str
    fingerprint: str
    created_at: datetime
    render: Callable[["CommitResult"], bytes]

    def complete(self, committed: "CommitResult") -> IdempotencyRecord:
        return IdempotencyRecord(graph=self.graph, request_id=self.request_id, operation=self.operation,
                                 fingerprint=self.fingerprint, response=self.render(committed),
                                 created_at=self.created_at)


class IdempotencyStore(Protocol):
    async def get(self, graph: str, request_id: str) -> IdempotencyRecord | None: ...

    async def put(self, record: PendingIdempotencyRecord) -> None:
        """Stage the record; the unit of work completes it with the positions of its commit
        and writes it in that commit's transaction. REQUEST_ID_REUSED if the id is taken."""


@dataclass
class Prefetch:
    """What a batch of commands is about to read, so that a unit of work can load it
    in a few set-based reads before the commands run (ADR 0006).

    Purely an optimisation: a unit of work may ignore it, and whatever it did not
    load is still read on demand. Counters are (graph, node, edge type, "OUT"|"IN");
    unique values are (graph, node type, property, value)."""

    nodes: set[tuple[str, str]] = field(default_factory=set)
    edges: set[EdgeKey] = field(default_factory=set)
    counters: set[tuple[str, str, str, str]] = field(default_factory=set)
    unique_values: list[tuple[str, str, str, PropertyValue]] = field(default_factory=list)


Positions = Mapping[str, int]
"""Log positions by shard: a consistency token, a checkpoint, a projection's progress."""


@dataclass(frozen=True)
class CommitResult:
    """Log positions the commit produced, per log shard ("0" on SQLite; the graph on
    DynamoDB). A commit that wrote no event names its shard's head instead."""

    positions: dict[str, int] = field(default_factory=dict)


class UnitOfWork(Protocol):
    """One per command. ``async with uow:`` rolls back unless ``commit()`` was called.

    Commit stores state changes, every event the aggregates recorded (the outbox)
    and the idempotency record in ONE atomic transaction.

    The repositories are read-only properties, so an adapter's own repository classes
    (a plain attribute ``self.nodes = SqliteNodeRepository(...)``) satisfy the protocol.
    """

    @property
    def schemas(self) -> SchemaRepository: ...

    @property
    def nodes(self) -> NodeRepository: ...

    @property
    def edges(self) -> EdgeRepository: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    async def commit(self) -> CommitResult: ...

    async def rollback(self) -> None: ...


@dataclass(frozen=True)
class LoggedEvent:
    """An event at its position in the ordered event log."""

    position: int
    event: DomainEvent
    shard: str = "0"


class EventLog(Protocol):
    """Read side of the transactional outbox, a set of shards (ADR 0010).

    Each shard is an ordered, gap-free log of its own (positions 1, 2, ...). Every event
    of a graph lives in the graph's shard, ``shard_of(graph)``: one shard "0" for every
    graph on SQLite, one shard per graph on DynamoDB (a single global sequence would be
    one hot item there)."""

    def shard_of(self, graph: str) -> str:
        """The shard holding the graph's events."""

    async def shards(self) -> list[str]:
        """Every shard that may hold events, in a stable order."""

    async def read_after(self, shard: str, position: int, limit: int, *,
                         graph: str | None = None) -> list[LoggedEvent]:
        """Up to ``limit`` committed events of ``shard`` after ``position``, in order (counted
        after the ``graph`` filter)."""

    async def heads(self, shards: Sequence[str] | None = None) -> dict[str, int]:
        """The highest position written in each shard (0 when empty); every shard when None."""


@dataclass(frozen=True)
class CascadeJob:
    """Invariant 6: a node tombstoned with more edges than one transaction holds;
    its edges are removed in bounded background batches. Carries the causing
    command's request id and trace context for the EdgeRemoved events."""

    graph: str
    node_id: str
    request_id: str
    trace_context: str
    created_at: datetime


class CascadeJobQueue(Protocol):
    async def enqueue(self, job: CascadeJob) -> None: ...

    async def next(self) -> CascadeJob | None:
        """The oldest pending job, or None."""

    async def complete(self, graph: str, node_id: str) -> None: ...
