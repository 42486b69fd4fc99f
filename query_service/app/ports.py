"""Ports the queries need, declared beside them (adapters: infrastructure/persistence/*).

Every method of ``ReadModel`` is ONE storage round trip, whatever the number of
keys it is given; adapters count them in ``round_trips`` so tests can assert that
a traversal costs O(depth) reads.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

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

    async def scan_nodes(self, graph: str, access: NodeAccess, *, after: tuple | None,
                         limit: int) -> list[tuple[tuple, NodeView]]: ...


class Checkpoints(Protocol):
    async def position(self, projector: str) -> int: ...


class ProjectionStore(Checkpoints, Protocol):
    """The read model's write side, used only by the projector."""

    async def apply(self, projector: str, events: Sequence[LoggedEvent],
                    change: Callable[[Any, Sequence[LoggedEvent]], Any]) -> int:
        """In ONE transaction: ``change(tx, events)`` then checkpoint := last position.
        Returns the new checkpoint."""

    async def reset(self, projector: str, position: int = 0) -> None: ...


class TokenSigner(Protocol):
    def sign(self, payload: dict) -> str: ...

    def verify(self, token: str, *, field: str, reason: str) -> dict: ...


class ProjectionProgress(Protocol):
    def position(self) -> int: ...

    async def wait_for(self, position: int, timeout: float) -> bool:
        """True once the projection reached ``position``; False after ``timeout`` seconds."""
