"""Storage round trips per request, pinned for every query that reads more than one thing.

The read model counts one round trip per port call whatever the number of keys, so
these numbers only grow with what a request cannot know in advance (a traversal's
depth, a sparse filter's scan length), never with fan-out or batch size.
"""

from domain.edge import Direction
from query_service.app.queries.batch_get_nodes import BatchGetNodes
from query_service.app.queries.find_path import FindPath
from query_service.app.queries.get_node import GetNode
from query_service.app.queries.list_edges import ListEdges
from query_service.app.queries.list_nodes import ListNodes


async def cost(world, query) -> int:
    world.rm.round_trips = 0
    await query
    return world.rm.round_trips


async def star(world, n: int) -> None:
    """hub -> s0..s{n-1} -> tail, all `follows`, plus hub -> d0..d{n-1} `owns`."""
    await world.write(world.ev.create("hub"), world.ev.create("tail"),
                      *[world.ev.create(f"s{i}", age=i) for i in range(n)],
                      *[world.ev.create(f"d{i}", "Doc") for i in range(n)],
                      *[world.ev.link("hub", f"s{i}") for i in range(n)],
                      *[world.ev.link(f"s{i}", "tail") for i in range(n)],
                      *[world.ev.link("hub", f"d{i}", "owns") for i in range(n)])


async def test_point_reads_and_batches_cost_one_round_trip(world):
    await star(world, 40)
    assert await cost(world, world.q.get_node(GetNode("g", "hub"))) == 1
    ids = tuple(f"s{i}" for i in range(40)) * 25  # 1000 names, duplicates included
    assert await cost(world, world.q.batch_get_nodes(BatchGetNodes("g", ids))) == 1


async def test_list_edges_with_neighbours_costs_two_whatever_the_page_size(world):
    await star(world, 40)
    for size in (1, 10, 100):
        query = ListEdges("g", "hub", Direction.OUT, page_size=size, include_neighbors=True)
        assert await cost(world, world.q.list_edges(query)) == 2  # the page, then all its neighbours
    assert await cost(world, world.q.list_edges(ListEdges("g", "tail", Direction.OUT))) == 2  # empty: does it exist?


async def test_find_path_costs_one_read_per_round_whatever_the_fanout(world):
    await star(world, 40)
    for types in ((), ("follows",), ("follows", "owns")):
        # hub's side and tail's side once each (they meet among the 40), then the path's edge
        # rows; no types given costs the schema read that lists every type. A found path
        # proves both ends exist, so they are not read.
        expected = 3 + (1 if not types else 0)
        assert await cost(world, world.q.find_path(FindPath("g", "hub", "tail", edge_types=types))) == expected


async def test_list_nodes_costs_schema_plus_one_scan_per_chunk(world):
    await world.write(*[world.ev.create(f"u{i:04}", email=f"{i}@x", age=i, name="rare" if i == 2999 else "x")
                        for i in range(3000)])
    assert await cost(world, world.q.list_nodes(ListNodes("g", "User", filter='email = "7@x"'))) == 2
    assert await cost(world, world.q.list_nodes(ListNodes("g", "User", filter="age >= 10 AND age < 20"))) == 2
    # a residual filter that matches only the last of 3000 rows: chunks of 100, 200, 400, 800,
    # then 1000 until the end, instead of thirty reads of 100
    page = await world.q.list_nodes(ListNodes("g", "User", filter='name = "rare"'))
    assert [n.id for n in page.nodes] == ["u2999"]
    assert await cost(world, world.q.list_nodes(ListNodes("g", "User", filter='name = "rare"'))) == 1 + 6
