"""Concurrent callers over the wire: invariants hold, exactly one racer wins."""

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import resources_pb2 as pb
from tests.e2e.stack import rich_error

# Races need a store that isolates concurrent requests: moto does not (DESIGN §5), so on
# DynamoDB each condition expression is tested on its own (tests/integration/dynamodb).
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sqlite_only")]

RACERS = 16


def race(calls):
    """Run the calls at once; return (successes, reasons of the failures)."""
    def attempt(call):
        try:
            return call(), None
        except grpc.RpcError as err:
            return None, rich_error(err).reason

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        outcomes = list(pool.map(attempt, calls))
    return [ok for ok, _ in outcomes if ok is not None], [reason for _, reason in outcomes if reason is not None]


def test_many_to_one_slot_goes_to_exactly_one_racer(graph):
    graph.create_user("a")
    for i in range(RACERS):
        graph.create("Group", f"g{i}")
    wins, reasons = race([lambda i=i: graph.add_edge("a", "member_of", f"g{i}") for i in range(RACERS)])
    assert len(wins) == 1 and reasons == ["CARDINALITY_VIOLATED"] * (RACERS - 1)
    count = graph.queries.CountEdges(q.CountEdgesRequest(name=graph.name("a"), edge_type="member_of",
                                                         direction=pb.DIRECTION_OUT,
                                                         consistency=pb.ReadConsistency(fully_consistent=True)))
    assert count.count == 1


def test_unique_value_goes_to_exactly_one_racer(graph):
    wins, reasons = race([lambda i=i: graph.create_user(f"u{i}", email="same@example.com") for i in range(RACERS)])
    assert len(wins) == 1 and reasons == ["UNIQUE_VIOLATED"] * (RACERS - 1)
    listed = graph.queries.ListNodes(q.ListNodesRequest(parent=graph.parent, type="User",
                                                        filter='email = "same@example.com"',
                                                        consistency=pb.ReadConsistency(fully_consistent=True)))
    assert [n.name for n in listed.nodes] == [wins[0].name]


def test_opposite_acyclic_edges_never_form_a_cycle(graph):
    for n in ("a", "b"):
        graph.create_user(n)
    for _ in range(5):
        wins, reasons = race([lambda: graph.add_edge("a", "manages", "b"), lambda: graph.add_edge("b", "manages", "a")])
        assert len(wins) == 1 and reasons == ["CYCLE_DETECTED"]
        won = wins[0].edge
        graph.commands.RemoveEdge(cmd.RemoveEdgeRequest(parent=graph.parent, source=won.source, type=won.type,
                                                        target=won.target))
