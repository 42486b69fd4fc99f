"""Per-request loaders over the read model: every node and adjacency read of a
request goes through these, so reads issued together cost one round trip."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from domain.views import AdjacencyKey, EdgeView, NodeView
from query_service.app.ports import ReadModel
from query_service.loading.dataloader import DataLoader

# (adjacency list, per-list limit): the limit is part of the key so one loader
# serves steps with different fan-outs.
AdjacencyRequest = tuple[AdjacencyKey, int]


class RequestLoaders:
    """Batched: loads issued in the same tick become one ``get_nodes`` / ``adjacency_many`` call.

    The adapters split huge key lists into statements themselves (still one round
    trip), so the cap here only guards memory: it is above any traversal budget.
    """

    def __init__(self, read_model: ReadModel, graph: str, *, max_batch_size: int = 20_000) -> None:
        self._rm = read_model
        self.graph = graph
        self.nodes: DataLoader[str, NodeView] = DataLoader(self._load_nodes, max_batch_size=max_batch_size)
        self.adjacency: DataLoader[AdjacencyRequest, list[EdgeView]] = DataLoader(
            self._load_adjacency, max_batch_size=max_batch_size)

    async def _load_nodes(self, ids: list[str]) -> dict[str, NodeView]:
        return await self._rm.get_nodes(self.graph, ids)

    async def _load_adjacency(self, requests: list[AdjacencyRequest]) -> dict[AdjacencyRequest, list[EdgeView]]:
        by_limit: dict[int, list[AdjacencyKey]] = defaultdict(list)
        for key, limit in requests:
            by_limit[limit].append(key)
        out: dict[AdjacencyRequest, list[EdgeView]] = {}
        for limit, keys in by_limit.items():  # one read per distinct limit (normally one)
            found = await self._rm.adjacency_many(self.graph, keys, limit)
            for key in keys:
                out[(key, limit)] = found.get(key, [])
        return out

    async def get_nodes(self, ids: Sequence[str]) -> dict[str, NodeView]:
        values = await self.nodes.load_many(ids)
        return {i: v for i, v in zip(ids, values) if v is not None}

    async def get_adjacency(self, requests: Sequence[AdjacencyRequest]) -> list[list[EdgeView]]:
        return [v or [] for v in await self.adjacency.load_many(requests)]


class NaiveLoaders:
    """The legacy path (``traverse_engine = naive``): one read per node and per list.

    Kept as the benchmark baseline and the rollback switch; never the default.
    """

    def __init__(self, read_model: ReadModel, graph: str) -> None:
        self._rm = read_model
        self.graph = graph

    async def get_nodes(self, ids: Sequence[str]) -> dict[str, NodeView]:
        out: dict[str, NodeView] = {}
        for i in ids:
            out.update(await self._rm.get_nodes(self.graph, [i]))
        return out

    async def get_adjacency(self, requests: Sequence[AdjacencyRequest]) -> list[list[EdgeView]]:
        out = []
        for key, limit in requests:
            found = await self._rm.adjacency_many(self.graph, [key], limit)
            out.append(found.get(key, []))
        return out
