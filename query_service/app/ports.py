"""Ports the queries need, declared beside them (adapters: infrastructure/persistence/*).

Every method of ``ReadModel`` is ONE storage round trip, whatever the number of
keys it is given; adapters count them in ``round_trips`` so tests can assert that
a traversal costs O(depth) reads.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from domain.edge import Direction
from domain.ports import LoggedEvent
from domain.schema import Schema
from domain.views import AdjacencyKey, EdgeView, NeighbourIds, NodeAccess, NodeView


class ReadModel(Protocol):
    round_trips: int

    async def get_schema(self, graph: str) -> Schema | None: ...

    async def get_nodes(self, graph: str, ids: Sequence[str], *, properties: bool = True) -> dict[str, NodeView]:
        """Live nodes by id (with edge counts); missing and deleted ids are absent. Without
        ``properties`` the views carry an empty property map (nothing is parsed)."""

    async def neighbour_ids(self, graph: str, keys: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
        """Ids only: the newest ``limit`` neighbour ids of each list (all of them when None),
        newest first in the order the projection applied them, with each list's length.
        Every key names an edge type; empty lists are absent. Lists hold live nodes only
        (a node's deletion removes it from its neighbours' lists)."""

    async def get_edges(self, graph: str,
                        triples: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], EdgeView]:
        """Edges by (source, type, target); missing ones are absent."""

    async def get_edge(self, graph: str, source: str, edge_type: str, target: str) -> EdgeView | None: ...

    async def count_edges(self, graph: str, node: str, edge_type: str, direction: Direction) -> int: ...

    async def list_adjacency(self, graph: str, key: AdjacencyKey, *, limit: int,
                             after: tuple[int, str, str] | None = None,
                             created_after_us: int | None = None,
                             created_before_us: int | None = None) -> list[tuple[tuple[int, str, str], EdgeView]]:
        """One adjacency list, newest first (ties by edge type, neighbour), after ``after``.
        Each entry comes with its keyset cursor ``(create_us, edge_type, neighbour)``."""

    async def scan_nodes(self, graph: str, access: NodeAccess, *, after: tuple[Any, ...] | None,
                         limit: int) -> list[tuple[tuple[Any, ...], NodeView]]:
        """Nodes in ``access``'s order after the keyset cursor ``after``, each with its cursor."""


class Checkpoints(Protocol):
    async def positions(self, projector: str) -> dict[str, int]:
        """The projector's checkpoint in every shard it has applied (absent: 0)."""


Applier = Callable[[Any, Sequence[LoggedEvent]], Any]
"""Decides a batch's read-model changes: ``applier(tx, events)`` against a store's
``ProjectionTransaction`` view (query_service.projection.apply). It does no I/O of its own,
so a store can run it wherever it likes: SQLite on its writer thread inside the
transaction, DynamoDB over items it prefetched in batched reads, before writing the
result in ``TransactWriteItems``."""


class ProjectionStore(Checkpoints, Protocol):
    """The read model's write side, used only by the projector (the single writer of a shard)."""

    async def apply(self, projector: str, shard: str, events: Sequence[LoggedEvent], change: Applier) -> int:
        """Apply the events of ``shard`` that are newer than the shard's checkpoint and move the
        checkpoint to the last of them, atomically per event (a store that must split a batch
        does so at event boundaries, each part with its checkpoint). Returns the checkpoint."""

    async def reset(self, projector: str, positions: Mapping[str, int] | None = None) -> None:
        """Set the checkpoints (every shard back to 0 when None)."""


class ProjectionLease(Protocol):
    """Exactly one process projects a shard: a lease with an expiry that its holder renews."""

    async def acquire(self, shard: str) -> bool:
        """Take or renew the lease on ``shard``; True while this process holds it."""

    async def release(self, shard: str) -> None: ...


class TokenSigner(Protocol):
    def sign(self, payload: dict[str, Any]) -> str: ...

    def verify(self, token: str, *, field: str, reason: str) -> dict[str, Any]: ...


class ProjectionProgress(Protocol):
    def position(self, shard: str) -> int: ...

    def positions(self) -> dict[str, int]: ...

    def reached(self, required: Mapping[str, int]) -> bool: ...

    def behind(self, required: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """The shards not yet at ``required``: shard -> (required, projected)."""

    async def wait_for(self, required: Mapping[str, int], timeout: float) -> bool:
        """True once the projection reached every shard's position in ``required``; False
        after ``timeout`` seconds."""
