"""What the DynamoDB read side costs, in storage calls, through the real query handlers
(``query_service.bootstrap.build_application`` over DynamoReadModel / DynamoProjectionStore
and an in-test event log). Calls are counted per operation by the client's capacity meter
(``capacity_scope``): they are behaviour, pinned here.

One graph is projected once for the module (moto is slow to fill): a tree (root -> 120
children -> 2 grandchildren each -> 1 leaf each) and a hub with 2,100 out-neighbours, so its
list has a head and a sealed chunk."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from typing import Any, AsyncIterator, Sequence

import pytest
import pytest_asyncio

from deploy.dynamodb.tables import READ
from domain.edge import Direction
from domain.ports import LoggedEvent
from domain.views import AdjacencyKey, Detail
from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.admin import create_tables, delete_tables
from infrastructure.persistence.dynamodb.capacity import capacity_scope
from infrastructure.persistence.dynamodb.client import DynamoClient
from infrastructure.persistence.dynamodb.projection import DynamoProjectionStore
from infrastructure.persistence.dynamodb.read_items import HEAD_MAX, HEAD_MIN
from infrastructure.persistence.dynamodb.read_model import DynamoReadModel
from infrastructure.tokens import TokenSigner
from query_service.app.queries.batch_get_nodes import BatchGetNodes
from query_service.app.queries.find_path import FindPath
from query_service.app.queries.list_edges import ListEdges
from query_service.app.queries.traverse import Traverse, TraversalBudget, TraversalStep
from query_service.bootstrap import build_application
from tests.dynamodb_support import open_test_client, unique_prefix
from tests.query_support import SECRET, Events

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb, pytest.mark.asyncio(loop_scope="module")]

G = "costs"
CHILDREN = 120
HUB_FANOUT = 2100  # > HEAD_MAX: the hub's list has a sealed chunk


class ListEventLog:
    """The EventLog port over a list, one shard per graph as on DynamoDB."""

    def __init__(self) -> None:
        self.items: list[LoggedEvent] = []

    def shard_of(self, graph: str) -> str:
        return keys.shard_id(graph, 0)

    def append(self, events: Sequence[Any]) -> None:
        for event in events:
            shard = self.shard_of(event.graph)
            position = sum(1 for e in self.items if e.shard == shard) + 1
            self.items.append(LoggedEvent(position=position, event=event, shard=shard))

    async def shards(self) -> list[str]:
        return sorted({e.shard for e in self.items})

    async def read_after(self, shard: str, position: int, limit: int, *, graph: str | None = None) -> list[LoggedEvent]:
        return [e for e in self.items if e.shard == shard and e.position > position][:limit]

    async def heads(self, shards: Sequence[str] | None = None) -> dict[str, int]:
        names = shards if shards is not None else await self.shards()
        return {s: sum(1 for e in self.items if e.shard == s) for s in names}


class World:
    def __init__(self, client: DynamoClient) -> None:
        self.client = client
        self.rm = DynamoReadModel(client)
        self.store = DynamoProjectionStore(client)
        self.log = ListEventLog()
        self.app = build_application(read_model=self.rm, store=self.store, event_log=self.log,
                                     signer=TokenSigner(SECRET), projector_enabled=True, poll_interval=0.01)
        self.q = self.app.queries
        self.ev = Events(G)
        self.hub_order: list[str] = []  # the hub's neighbours in the order they were linked
        self.hub_by_time: list[str] = []  # ... newest create time first (ListEdges' order)

    async def write(self, events: Sequence[Any]) -> None:
        self.log.append(events)
        assert self.app.projector is not None
        await self.app.projector.catch_up()

    async def build(self) -> None:
        ev = self.ev
        children = [f"c{i}" for i in range(CHILDREN)]
        grandchildren = [f"g{i}_{j}" for i in range(CHILDREN) for j in range(2)]
        leaves = [f"l{g}" for g in grandchildren]
        spokes = [f"s{i:04}" for i in range(HUB_FANOUT)]
        await self.write([ev.schema(), ev.create("root"), ev.create("hub"),
                          *[ev.create(n, age=i % 50) for i, n in enumerate(children + grandchildren + leaves)],
                          *[ev.create(s) for s in spokes]])
        await self.write([*[ev.link("root", c) for c in children],
                          *[ev.link(f"c{i}", f"g{i}_{j}") for i in range(CHILDREN) for j in range(2)],
                          *[ev.link(g, f"l{g}") for g in grandchildren]])
        links = [ev.link("hub", s, weight=i) for i, s in enumerate(spokes)]
        # the command side's clock stepped back for every tenth edge: ListEdges' order (create
        # time) is not the list's (projection order), and the page walk must still be exact
        links = [replace(e, create_time=e.create_time - timedelta(hours=1)) if i % 10 == 3 else e
                 for i, e in enumerate(links)]
        await self.write(links)
        self.hub_order = spokes
        self.hub_by_time = [e.target for e in sorted(links, key=lambda e: (-e.create_time.timestamp(), e.target))]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(moto_server: Any) -> AsyncIterator[World]:
    client = await open_test_client(moto_server.settings(prefix=unique_prefix()))
    try:
        await create_tables(client, tables=(READ,))
        w = World(client)
        await w.build()
        yield w
        await delete_tables(client, tables=(READ,))
    finally:
        await client.close()


def calls(usage: Any) -> dict[str, int]:
    return {name: op.calls for name, op in usage.operations.items()}


async def test_the_hub_list_has_a_head_and_a_sealed_chunk(world: World) -> None:
    head = await world.client.get_item(world.client.tables.read,
                                       keys.adjacency_head_key(G, "hub", Direction.OUT, "follows"))
    assert head is not None
    assert int(head["n"]["N"]) == HUB_FANOUT and int(head["nc"]["N"]) == 1
    assert HEAD_MIN <= len(head["ids"]["S"].split(" ")) <= HEAD_MAX


@pytest.mark.parametrize("detail", [Detail.NAMES, Detail.BASIC])
async def test_a_traversal_costs_a_batch_get_per_100_frontier_lists_per_level_and_no_query(world: World,
                                                                                             detail: Detail) -> None:
    query = Traverse(G, "root", (TraversalStep("follows", Direction.OUT, repeat=True),),
                     TraversalBudget(max_depth=3, max_nodes=10_000, per_node_fanout=1000), detail=detail)
    with capacity_scope() as usage:
        result = await world.q.traverse(query)
    sizes = [len(level.node_ids) for level in result.levels]
    assert sizes == [1, CHILDREN, 2 * CHILDREN, 2 * CHILDREN] and not result.truncated
    frontier_lists = sizes[:-1]  # each level reads the lists of the level before
    level_reads = sum(math.ceil(n / 100) for n in frontier_lists)
    node_loads = 1 + (math.ceil(len(result.node_ids) / 100) if detail is not Detail.NAMES else 0)  # start + views
    assert calls(usage) == {"GetItem": 1, "BatchGetItem": level_reads + node_loads}  # GetItem: the schema
    assert usage.calls_of("Query") == 0


async def test_a_supernode_in_the_frontier_costs_its_head_only(world: World) -> None:
    query = Traverse(G, "hub", (TraversalStep("follows", Direction.OUT),),
                     TraversalBudget(max_nodes=10_000, per_node_fanout=1000), detail=Detail.NAMES)
    with capacity_scope() as usage:
        result = await world.q.traverse(query)
    assert result.node_ids[1:] == world.hub_order[::-1][:1000]  # the newest 1,000, newest first
    assert result.truncated and result.truncated_reason == "per_node_fanout"
    assert calls(usage) == {"GetItem": 1, "BatchGetItem": 2}  # schema; start node; the hub's head


async def test_batch_get_nodes_of_1000_ids_is_10_batch_gets(world: World) -> None:
    ids = tuple(world.hub_order[:1000])
    with capacity_scope() as usage:
        nodes = await world.q.batch_get_nodes(BatchGetNodes(G, ids))
    assert [n.id for n in nodes] == list(ids)
    assert calls(usage) == {"BatchGetItem": 10}


async def test_unprocessed_keys_are_retried_until_served(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = world.client._client
    real = raw.batch_get_item
    unprocessed_rounds = 0

    async def stingy(**params: Any) -> Any:
        """Serve only the first 30 keys of each request: the rest come back unprocessed,
        as DynamoDB does when throttled or past 16 MB."""
        nonlocal unprocessed_rounds
        (table, request), = params["RequestItems"].items()
        served, left = request["Keys"][:30], request["Keys"][30:]
        response = await real(**{**params, "RequestItems": {table: {**request, "Keys": served}}})
        if left:
            unprocessed_rounds += 1
            response["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return response

    monkeypatch.setattr(raw, "batch_get_item", stingy)
    ids = tuple(world.hub_order[1000:1250])
    with capacity_scope() as usage:
        nodes = await world.q.batch_get_nodes(BatchGetNodes(G, ids))
    assert [n.id for n in nodes] == list(ids)
    assert unprocessed_rounds > 0
    # 3 requests of <= 100 keys, each served 30 at a time: 4 + 4 + 2 calls
    assert calls(usage) == {"BatchGetItem": 10}


async def test_a_list_longer_than_its_head_is_read_whole_and_prefix_limited(world: World) -> None:
    key = AdjacencyKey("hub", Direction.OUT, "follows")
    newest_first = world.hub_order[::-1]
    for limit, expected_calls in ((None, 2), (HUB_FANOUT + 5, 2), (1500, 2), (1000, 1), (3, 1)):
        with capacity_scope() as usage:
            got = (await world.rm.neighbour_ids(G, [key], limit))[key]
        wanted = newest_first if limit is None else newest_first[:limit]
        assert got.ids == wanted and got.total == HUB_FANOUT, limit
        assert calls(usage) == {"BatchGetItem": expected_calls}, limit  # the head, then the sealed chunk


async def test_list_edges_pages_read_chunks_only_past_the_head(world: World) -> None:
    newest_first = world.hub_by_time
    with capacity_scope() as usage:
        page = await world.q.list_edges(ListEdges(G, "hub", Direction.OUT, "follows", page_size=50))
    assert [e.target for e in page.edges] == newest_first[:50]
    assert page.edges[0].properties == {"weight": int(newest_first[0][1:])}
    assert calls(usage) == {"BatchGetItem": 2}  # the head, the page's edge views

    # walk every page: the whole list in order; the pages past the head read its sealed chunk
    token, seen, pages = "", [], 0
    with capacity_scope() as usage:
        while True:
            page = await world.q.list_edges(ListEdges(G, "hub", Direction.OUT, "follows", page_size=500,
                                                      page_token=token))
            seen += [e.target for e in page.edges]
            pages += 1
            token = page.next_page_token
            if not token:
                break
    assert seen == newest_first and pages == math.ceil(HUB_FANOUT / 500)
    assert usage.calls_of("Query") == 0
    # per page: the head and its 500 edge views (5 calls); the pages past the ~988 newest (by
    # create time) entries the head holds (pages 2-5) also read the directory and the chunk
    assert calls(usage) == {"BatchGetItem": pages * (1 + 5) + 4 * 2}

    # a time range over old entries only: served from the sealed chunk (the directory says which)
    bound = await world.rm.get_edge(G, "hub", "follows", "s0100")
    assert bound is not None and bound.create_time is not None
    with capacity_scope() as usage:
        old = await world.q.list_edges(ListEdges(G, "hub", Direction.OUT, "follows", page_size=5,
                                                 created_before=bound.create_time))
    assert [e.target for e in old.edges] == ["s0099", "s0098", "s0097", "s0096", "s0095"]
    assert calls(usage) == {"BatchGetItem": 4}  # head; directory; the chunk; the page's edge views


async def test_list_edges_without_edge_type_reads_the_view_then_the_heads(world: World) -> None:
    with capacity_scope() as usage:
        page = await world.q.list_edges(ListEdges(G, "c3", Direction.OUT, page_size=10))
    assert sorted(e.target for e in page.edges) == ["g3_0", "g3_1"]
    assert calls(usage) == {"GetItem": 1, "BatchGetItem": 2}  # the node's counts, its heads, the edge views


async def test_find_path_reads_whole_lists_and_no_query(world: World) -> None:
    with capacity_scope() as usage:
        path = await world.q.find_path(FindPath(G, "root", "lg7_1", edge_types=("follows",)))
    assert path.found and path.node_ids == ["root", "c7", "g7_1", "lg7_1"]
    assert usage.calls_of("Query") == 0
