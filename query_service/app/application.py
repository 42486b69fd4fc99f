"""The query application: a typed registry of every query handler (what ports call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable

from query_service.app.queries.batch_get_nodes import BatchGetNodesHandler
from query_service.app.queries.count_edges import CountEdgesHandler
from query_service.app.queries.find_path import FindPathHandler
from query_service.app.queries.get_edge import GetEdgeHandler
from query_service.app.queries.get_node import GetNodeHandler
from query_service.app.queries.get_schema import GetSchemaHandler
from query_service.app.queries.list_edges import ListEdgesHandler
from query_service.app.queries.list_nodes import ListNodesHandler
from query_service.app.queries.traverse import TraverseHandler
from query_service.app.queries.watch_events import WatchEventsHandler


@dataclass
class Queries:
    get_schema: GetSchemaHandler
    get_node: GetNodeHandler
    batch_get_nodes: BatchGetNodesHandler
    get_edge: GetEdgeHandler
    count_edges: CountEdgesHandler
    list_edges: ListEdgesHandler
    list_nodes: ListNodesHandler
    traverse: TraverseHandler
    find_path: FindPathHandler
    watch_events: WatchEventsHandler


@dataclass
class QueryApplication:
    queries: Queries
    projector: object | None = None  # query_service.projection.projector.Projector when projecting in-process
    cache: object | None = None  # query_service.cache.ReadCache when reads are cached
    tailer: object | None = None  # query_service.projection.cache_sync.CacheTailer: a cache without the projector
    progress: object | None = None  # query_service.projection.progress.ProjectionProgress
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()
