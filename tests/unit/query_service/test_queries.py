import asyncio

import pytest

from domain.edge import Direction
from domain.errors import NotFound, Reason, Unavailable, ValidationFailed
from query_service.app.consistency import Consistency
from query_service.app.queries.batch_get_nodes import BatchGetNodes
from query_service.app.queries.count_edges import CountEdges
from query_service.app.queries.get_edge import GetEdge
from query_service.app.queries.get_node import GetNode
from query_service.app.queries.get_schema import GetSchema
from query_service.app.queries.list_edges import ListEdges
from query_service.app.queries.list_nodes import ListNodes
from query_service.app.queries.watch_events import WatchEvents
from query_service.cache import ReadCache
from tests.unit.query_service.conftest import World


@pytest.fixture(params=["uncached", "cached", "tiny-cache"])
async def world(request):
    """Every query behaves the same through the read cache (a tiny one evicts all the time)."""
    cache = {"uncached": None, "cached": ReadCache(64 << 20), "tiny-cache": ReadCache(4096)}[request.param]
    w = World(cache=cache)
    await w.write(w.ev.schema())
    return w


async def people(w, n=30):
    await w.write(*[w.ev.create(f"u{i:02}", email=f"u{i}@x", age=i, city="paris" if i % 2 else "rome",
                                name=f"name{i % 7}") for i in range(n)])


async def test_get_node_and_not_found(world):
    await people(world, 2)
    view = await world.q.get_node(GetNode("g", "u01"))
    assert view.properties["age"] == 1 and view.version == 1
    with pytest.raises(NotFound) as err:
        await world.q.get_node(GetNode("g", "nope"))
    assert err.value.reason == Reason.NODE_NOT_FOUND
    assert err.value.resource_type == "edgewise.graph.v1/Node"
    assert err.value.resource_name == "graphs/g/nodes/nope"


async def test_batch_get_orders_and_fails_on_missing(world):
    await people(world, 5)
    views = await world.q.batch_get_nodes(BatchGetNodes("g", ("u03", "u01", "u03")))
    assert [v.id for v in views] == ["u03", "u01", "u03"]
    with pytest.raises(NotFound) as err:
        await world.q.batch_get_nodes(BatchGetNodes("g", ("u01", "x1", "x2")))
    assert err.value.metadata["missing"] == "graphs/g/nodes/x1,graphs/g/nodes/x2"
    with pytest.raises(ValidationFailed) as err:
        await world.q.batch_get_nodes(BatchGetNodes("g", tuple(f"n{i}" for i in range(1001))))
    assert err.value.reason == Reason.BATCH_TOO_LARGE


async def test_edges_counts_and_paging(world):
    await people(world, 12)
    await world.write(*[world.ev.link("u00", f"u{i:02}", weight=i) for i in range(1, 12)])
    assert await world.q.count_edges(CountEdges("g", "u00", "follows", Direction.OUT)) == 11
    assert await world.q.count_edges(CountEdges("g", "u05", "follows", Direction.IN)) == 1
    assert (await world.q.get_edge(GetEdge("g", "u00", "follows", "u03"))).properties == {"weight": 3}
    with pytest.raises(NotFound):
        await world.q.get_edge(GetEdge("g", "u03", "follows", "u00"))
    seen, token = [], ""
    while True:
        page = await world.q.list_edges(ListEdges("g", "u00", Direction.OUT, page_size=4, page_token=token,
                                                  include_neighbors=True))
        seen += [e.target for e in page.edges]
        assert [n.id for n in page.neighbors] == [e.target for e in page.edges]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"u{i:02}" for i in range(11, 0, -1)]  # newest first
    first = await world.q.list_edges(ListEdges("g", "u00", Direction.OUT, page_size=4))
    with pytest.raises(ValidationFailed) as err:  # same token, different arguments
        await world.q.list_edges(ListEdges("g", "u00", Direction.OUT, edge_type="follows", page_size=4,
                                           page_token=first.next_page_token))
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
    with pytest.raises(ValidationFailed) as err:
        await world.q.list_edges(ListEdges("g", "u00", Direction.OUT, page_token=first.next_page_token[:-2] + "xx"))
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
    with pytest.raises(NotFound):
        await world.q.list_edges(ListEdges("g", "ghost", Direction.OUT))
    assert (await world.q.list_edges(ListEdges("g", "u05", Direction.OUT))).edges == []


async def list_all(w, **kw):
    ids, token = [], ""
    while True:
        page = await w.q.list_nodes(ListNodes("g", "User", page_token=token, **kw))
        ids += [n.id for n in page.nodes]
        token = page.next_page_token
        if not token:
            return ids, page.plan


@pytest.mark.parametrize("flt,order,expected", [
    ("", "", [f"u{i:02}" for i in range(30)]),
    ('email = "u7@x"', "", ["u07"]),
    ('city = "paris" AND age < 8', "", ["u01", "u03", "u05", "u07"]),
    ("age >= 25", "", ["u25", "u26", "u27", "u28", "u29"]),
    ("age >= 25", "age desc", ["u29", "u28", "u27", "u26", "u25"]),
    ('name = "name3"', "age desc", ["u24", "u17", "u10", "u03"]),
    ("age < 3 OR age > 27", "", ["u00", "u01", "u02", "u28", "u29"]),
])
async def test_list_nodes_pages_through_every_plan(world, flt, order, expected):
    await people(world)
    for size in (1, 2, 50):
        ids, plan = await list_all(world, filter=flt, order_by=order, page_size=size, explain=True)
        assert ids == expected, plan
        assert plan


async def test_list_nodes_errors(world):
    await people(world, 3)
    with pytest.raises(ValidationFailed) as err:
        await world.q.list_nodes(ListNodes("g", "User", filter="age >"))
    assert err.value.reason == Reason.INVALID_FILTER
    with pytest.raises(ValidationFailed) as err:
        await world.q.list_nodes(ListNodes("g", "Nope"))
    assert err.value.reason == Reason.UNKNOWN_NODE_TYPE
    page = await world.q.list_nodes(ListNodes("g", "User", page_size=1))
    with pytest.raises(ValidationFailed) as err:
        await world.q.list_nodes(ListNodes("g", "User", filter="age > 0", page_size=1,
                                           page_token=page.next_page_token))
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
    with pytest.raises(ValidationFailed):
        await world.q.list_nodes(ListNodes("g", "User", page_size=-1))


async def test_deleted_and_updated_nodes_leave_the_indexes(world):
    await people(world, 4)
    await world.write(world.ev.update("u01", email="new@x", age=50), world.ev.delete("u02"))
    assert (await list_all(world, filter='email = "u1@x"'))[0] == []
    assert (await list_all(world, filter='email = "new@x"'))[0] == ["u01"]
    assert (await list_all(world, filter="age > 1"))[0] == ["u03", "u01"]
    assert (await world.q.get_schema(GetSchema("g"))).version == 1


async def test_consistency_tokens(world):
    await people(world, 1)
    head = world.log.head(world.log.shard_of("g"))
    await world.q.get_node(GetNode("g", "u00", Consistency(at_least_token=world.token(head))))
    with pytest.raises(ValidationFailed) as err:
        await world.q.get_node(GetNode("g", "u00", Consistency(at_least_token=world.token(head) + "x")))
    assert err.value.reason == Reason.INVALID_CONSISTENCY_TOKEN
    with pytest.raises(Unavailable) as err:
        await world.q.get_node(GetNode("g", "u00", Consistency(at_least_token=world.token(head + 5))))
    assert err.value.reason == Reason.CONSISTENCY_NOT_REACHED and err.value.retry_after_seconds > 0

    # read-your-writes: the write lands while the query waits
    pos = world.log.append(world.ev.create("late", age=1))
    waiting = asyncio.ensure_future(world.q.get_node(GetNode("g", "late", Consistency(at_least_token=world.token(pos)))))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await world.app.projector.catch_up()
    assert (await waiting).id == "late"

    world.log.append(world.ev.create("later"))
    with pytest.raises(Unavailable):
        await world.q.get_node(GetNode("g", "later", Consistency(fully_consistent=True)))
    await world.app.projector.catch_up()
    assert (await world.q.get_node(GetNode("g", "later", Consistency(fully_consistent=True)))).id == "later"


async def test_watch_events_streams_and_follows(world):
    await people(world, 3)
    stream = await world.q.watch_events(WatchEvents("g", after_position=1))
    got = [(await stream.__anext__()).position for _ in range(3)]
    assert got == [2, 3, 4]
    nxt = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.02)
    world.log.append(world.ev.create("new"))
    assert (await asyncio.wait_for(nxt, 1)).event.aggregate_id == "new"
    await stream.aclose()
