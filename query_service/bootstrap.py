"""Composition root of the query service: the ONLY place adapters are chosen.

Runs inside the event loop (never at import). A missing setting has already failed
in ``Settings.from_env``; nothing here falls back silently.
"""

from __future__ import annotations

import logging
from typing import Callable

from domain.ports import EventLog
from infrastructure.config import Settings
from infrastructure.grpc.context import time_remaining
from infrastructure.persistence.sqlite.connection import SqliteConnection, SqliteReaderPool
from infrastructure.persistence.sqlite.event_log import EVENT_LOG_DDL, SqliteEventLog
from infrastructure.persistence.sqlite.projector_lock import SqliteProjectorLock, lock_path_for
from infrastructure.persistence.sqlite.read_model import (
    HEAD_MIN,
    SqliteProjectionStore,
    SqliteReadModel,
    prepare_read_model,
    relax_projection_durability,
)
from infrastructure.tokens import TokenSigner
from query_service.app.application import Queries, QueryApplication
from query_service.app.consistency import ConsistencyGate
from query_service.app.paging import PageTokens
from query_service.app.ports import ProjectionLease, ProjectionStore, ReadModel
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
from query_service.cache import DEFAULT_HEAD_SIZE, CachingReadModel, ReadCache
from query_service.planning.planner import QueryPlanner
from query_service.projection.cache_sync import CacheTailer, InvalidatingProjectionStore
from query_service.projection.progress import ProjectionProgress
from query_service.projection.projector import PROJECTOR_NAME, Projector

READER_POOL_SIZE = 4

_log = logging.getLogger("edgewise.query.bootstrap")


def build_application(*, read_model: ReadModel, store: ProjectionStore, event_log: EventLog, signer: TokenSigner,
                      projector_enabled: bool, poll_interval: float = 0.05,
                      time_remaining: Callable[[], float | None] = time_remaining,
                      traverse_engine: str = "batched", max_consistency_wait: float = 5.0,
                      cache: ReadCache | None = None, cache_head_size: int = DEFAULT_HEAD_SIZE,
                      lease: ProjectionLease | None = None) -> QueryApplication:
    """The same wiring for production and component tests (any adapters). With ``cache``, every
    handler reads through it, and the projector (or, in a process that does not project, a
    tailer of the event log) drops its entries before the projection progress moves. With
    ``lease`` (several processes project into one store, each shard by one of them), the
    projector follows the shards it does not hold through a tailer too."""
    tailer: CacheTailer | None = None
    follower: CacheTailer | None = None
    if cache is not None:
        read_model = CachingReadModel(read_model, cache, head_size=cache_head_size)
        store = InvalidatingProjectionStore(store, cache)
        if not projector_enabled or lease is not None:
            follower = CacheTailer(log=event_log, checkpoints=store, cache=cache, projector_name=PROJECTOR_NAME,
                                   poll_interval=poll_interval)
        if not projector_enabled:
            tailer = follower
    if projector_enabled:
        progress = ProjectionProgress()
    elif tailer is not None:  # another process projects: follow its checkpoint, dropping what it changed
        progress = ProjectionProgress(refresh=tailer.sync, poll_interval=poll_interval)
    else:  # another process projects: follow its stored checkpoint
        progress = ProjectionProgress(refresh=lambda: store.positions(PROJECTOR_NAME), poll_interval=poll_interval)
    projector = Projector(log=event_log, store=store, progress=progress, poll_interval=poll_interval,
                          lease=lease, follower=follower) if projector_enabled else None
    if projector is not None:
        progress.on_behind = projector.wake
    gate = ConsistencyGate(signer=signer, progress=progress, event_log=event_log, time_remaining=time_remaining,
                           max_wait=max_consistency_wait)
    tokens = PageTokens(signer)
    queries = Queries(
        get_schema=GetSchemaHandler(read_model, gate),
        get_node=GetNodeHandler(read_model, gate),
        batch_get_nodes=BatchGetNodesHandler(read_model, gate),
        get_edge=GetEdgeHandler(read_model, gate),
        count_edges=CountEdgesHandler(read_model, gate),
        list_edges=ListEdgesHandler(read_model, gate, tokens),
        list_nodes=ListNodesHandler(read_model, gate, tokens, QueryPlanner()),
        traverse=TraverseHandler(read_model, gate, time_remaining=time_remaining, engine=traverse_engine),
        find_path=FindPathHandler(read_model, gate, time_remaining=time_remaining),
        watch_events=WatchEventsHandler(event_log, poll_interval=max(poll_interval, 0.05)),
    )
    return QueryApplication(queries=queries, projector=projector, cache=cache, tailer=tailer,
                            progress=progress)


def metrics_shards(settings: Settings) -> Callable[[str], bool]:
    """Which log shards may be a metrics label value (the projection gauges): on SQLite the one
    shard "0"; on DynamoDB (a shard per graph) the shards of the graphs EDGEWISE_METRICS_GRAPHS
    lists, so graph ids are labels only where an operator asked for them."""
    if settings.store != "dynamodb":
        return lambda shard: True  # SQLite has exactly one shard
    from infrastructure.persistence.dynamodb.event_log import parse_shard

    graphs = frozenset(settings.metrics_graphs)

    def labelled(shard: str) -> bool:
        parsed = parse_shard(shard)
        return parsed is not None and parsed[0] in graphs

    return labelled


async def bootstrap(settings: Settings) -> QueryApplication:
    if settings.store == "dynamodb":
        return await bootstrap_dynamodb(settings)
    return await bootstrap_sqlite(settings)


async def bootstrap_dynamodb(settings: Settings) -> QueryApplication:
    # imported only when chosen: a SQLite process never loads the AWS SDK
    from infrastructure.persistence.dynamodb.client import DynamoClient
    from infrastructure.persistence.dynamodb.event_log import DynamoEventLog
    from infrastructure.persistence.dynamodb.lease import DynamoProjectionLease
    from infrastructure.persistence.dynamodb.projection import DynamoProjectionStore
    from infrastructure.persistence.dynamodb.read_items import HEAD_MIN as DYNAMO_HEAD_MIN
    from infrastructure.persistence.dynamodb.read_model import DynamoReadModel

    client = await DynamoClient.open(settings.dynamodb)
    try:
        await client.check_tables()  # unreachable endpoint, missing tables: one clear line
        # Every query process may project; the lease on each shard lets exactly one do it.
        lease = DynamoProjectionLease(client, projector=PROJECTOR_NAME) if settings.projector_enabled else None
        store = DynamoProjectionStore(client, lease=lease)
        cache = ReadCache(settings.read_cache_mb << 20) if settings.read_cache_mb > 0 else None
        app = build_application(
            read_model=DynamoReadModel(client), store=store, event_log=DynamoEventLog(client),
            signer=TokenSigner(settings.token_secret), projector_enabled=settings.projector_enabled,
            poll_interval=settings.projector_poll_interval_ms / 1000.0,
            traverse_engine=settings.traverse_engine, cache=cache, cache_head_size=DYNAMO_HEAD_MIN,
            lease=lease)
        if app.projector is not None:
            await app.projector.start_position()
        if app.tailer is not None:
            await app.tailer.start_position()
    except BaseException:
        await client.close()
        raise
    app.closers.append(client.close)
    return app


async def bootstrap_sqlite(settings: Settings) -> QueryApplication:
    # Query workers share the file: the one holding <db>.projector.lock projects, the others follow.
    lock = SqliteProjectorLock(lock_path_for(settings.db_path)) if settings.projector_enabled else None
    writer = await SqliteConnection(settings.db_path, name="sqlite-read-model-writer").open()
    await writer.run(relax_projection_durability)  # only this connection: the projector's
    # The query service may start before the command service: create what it reads.
    await writer.execute_script(EVENT_LOG_DDL)
    if await writer.run(prepare_read_model):
        _log.warning("the read model in %s had an older table layout: dropped, the projector rebuilds it "
                     "from the event log", settings.db_path)
    readers = await SqliteReaderPool(settings.db_path, size=READER_POOL_SIZE).open()
    store = SqliteProjectionStore(writer)
    cache = ReadCache(settings.read_cache_mb << 20) if settings.read_cache_mb > 0 else None
    app = build_application(
        read_model=SqliteReadModel(readers), store=store, event_log=SqliteEventLog(readers),
        signer=TokenSigner(settings.token_secret), projector_enabled=settings.projector_enabled,
        poll_interval=settings.projector_poll_interval_ms / 1000.0,
        traverse_engine=settings.traverse_engine, cache=cache, cache_head_size=HEAD_MIN, lease=lock)
    if app.projector is not None:
        await app.projector.start_position()
    if app.tailer is not None:
        await app.tailer.start_position()
    app.closers += [writer.close, readers.close]
    if lock is not None:
        app.closers.append(lock.close)  # closed first (closers run in reverse): another worker takes over
    return app
