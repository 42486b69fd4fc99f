"""The query application: a typed registry of every query handler (what ports call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

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

if TYPE_CHECKING:  # the parts bootstrap composes beside the queries; no import of them at run time
    from query_service.cache import ReadCache
    from query_service.projection.cache_sync import CacheTailer
    from query_service.projection.progress import ProjectionProgress
    from query_service.projection.projector import Projector


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
    progress: ProjectionProgress
    projector: Projector | None = None  # when projecting in-process
    cache: ReadCache | None = None  # when reads are cached
    tailer: CacheTailer | None = None  # a cache without the projector: follows another process's checkpoint
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()
