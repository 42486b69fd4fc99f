"""Per-request loaders over the read model: every node and adjacency read of a
traversal goes through one of these.

``RequestLoaders`` is the batched engine: the walk hands it a whole level at once,
so each call is ONE read-model round trip, and it memoises node views for the rest
of the request (a view read at one consistency point is reused, never re-read).
There is no future per key: a level is already a batch, so coalescing across tasks
(``DataLoader``) would only add overhead on this path.

``NaiveLoaders`` is the legacy path (``traverse_engine = naive``): one read per
list and per node. It is the benchmark baseline and the rollback switch.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from domain.views import AdjacencyKey, EdgeView, NeighbourIds, NodeView
from query_service.app.ports import ReadModel

EdgeTriple = tuple[str, str, str]


class Loaders(Protocol):
    round_trips: int

    async def neighbour_ids(self, keys: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]: ...

    async def get_nodes(self, ids: Sequence[str], *, properties: bool) -> dict[str, NodeView]: ...

    async def get_edges(self, triples: Sequence[EdgeTriple]) -> dict[EdgeTriple, EdgeView]: ...


class RequestLoaders:
    def __init__(self, read_model: ReadModel, graph: str) -> None:
        self._rm = read_model
        self.graph = graph
        self._full: dict[str, NodeView | None] = {}  # views with properties (None: not live)
        self.round_trips = 0
        self.nodes_loaded = 0  # node views read from the store: tests bound it

    async def neighbour_ids(self, keys: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
        if not keys:
            return {}
        self.round_trips += 1
        return await self._rm.neighbour_ids(self.graph, keys, limit)

    async def get_nodes(self, ids: Sequence[str], *, properties: bool) -> dict[str, NodeView]:
        missing = [i for i in dict.fromkeys(ids) if i not in self._full]
        if missing:
            self.round_trips += 1
            self.nodes_loaded += len(missing)
            found = await self._rm.get_nodes(self.graph, missing, properties=properties)
            if properties:  # only views with properties may serve later reads of either kind
                for i in missing:
                    self._full[i] = found.get(i)
            else:
                return {**{i: v for i in ids if (v := self._full.get(i)) is not None}, **found}
        return {i: v for i in ids if (v := self._full.get(i)) is not None}

    async def get_edges(self, triples: Sequence[EdgeTriple]) -> dict[EdgeTriple, EdgeView]:
        if not triples:
            return {}
        self.round_trips += 1
        return await self._rm.get_edges(self.graph, triples)


class NaiveLoaders:
    """One read per adjacency list and per node: never the default."""

    def __init__(self, read_model: ReadModel, graph: str) -> None:
        self._rm = read_model
        self.graph = graph
        self.round_trips = 0
        self.nodes_loaded = 0

    async def neighbour_ids(self, keys: Sequence[AdjacencyKey],
                            limit: int | None) -> dict[AdjacencyKey, NeighbourIds]:
        out: dict[AdjacencyKey, NeighbourIds] = {}
        for key in keys:
            self.round_trips += 1
            out.update(await self._rm.neighbour_ids(self.graph, [key], limit))
        return out

    async def get_nodes(self, ids: Sequence[str], *, properties: bool) -> dict[str, NodeView]:
        out: dict[str, NodeView] = {}
        for i in ids:
            self.round_trips += 1
            self.nodes_loaded += 1
            out.update(await self._rm.get_nodes(self.graph, [i], properties=properties))
        return out

    async def get_edges(self, triples: Sequence[EdgeTriple]) -> dict[EdgeTriple, EdgeView]:
        out: dict[EdgeTriple, EdgeView] = {}
        for triple in triples:
            self.round_trips += 1
            out.update(await self._rm.get_edges(self.graph, [triple]))
        return out
