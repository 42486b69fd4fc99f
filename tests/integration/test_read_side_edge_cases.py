"""Read-side edge cases on a real SQLite file: plans changing under a page token, a value
the index cannot hold, and consistency waits bounded by the call's deadline."""

from __future__ import annotations

import time
from dataclasses import replace

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from domain.errors import Reason, ValidationFailed
from edgewise.graph.v1 import query_service_pb2 as qpb
from edgewise.graph.v1 import resources_pb2 as pb
from infrastructure.persistence.sqlite.event_log import SHARD
from infrastructure.tokens import TokenSigner
from query_service.app.queries.get_node import GetNode
from query_service.app.queries.list_nodes import ListNodes
from tests.query_support import DOC, SECRET, USER, Events, query_app, schema, served_query_stub, write_events

pytestmark = pytest.mark.integration


@pytest.fixture
async def app(tmp_path):
    async with query_app(str(tmp_path / "edgewise.db"), projector_poll_interval_ms=10) as application:
        yield application


async def test_a_page_token_from_before_a_plan_change_is_refused_not_misread(app):
    ev = Events()
    write_events(app.path, [ev.schema(), *[ev.create(f"u{i}", score=float(i)) for i in range(5)]])
    await app.projector.catch_up()
    q = app.queries
    first = await q.list_nodes(ListNodes("g", "User", filter="score > 0", page_size=2, explain=True))
    assert first.plan.startswith("TYPE_SCAN") and first.next_page_token
    # "score" becomes indexed: the same request now runs as an index range scan
    indexed = replace(USER, properties=tuple(replace(p, indexed=True) if p.name == "score" else p
                                             for p in USER.properties))
    write_events(app.path, [ev.schema(schema("g", 2, node_types=(indexed, DOC)))])
    await app.projector.catch_up()
    with pytest.raises(ValidationFailed) as err:
        await q.list_nodes(ListNodes("g", "User", filter="score > 0", page_size=2, page_token=first.next_page_token))
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
    again = await q.list_nodes(ListNodes("g", "User", filter="score > 0", page_size=2, explain=True))
    assert again.plan.startswith("INDEX_RANGE(User.score)") and [n.id for n in again.nodes] == ["u1", "u2"]
    rest = await q.list_nodes(ListNodes("g", "User", filter="score > 0", page_size=2,
                                        page_token=again.next_page_token))
    assert [n.id for n in rest.nodes] == ["u3", "u4"]


async def test_a_nan_in_an_indexed_property_does_not_wedge_the_projector(app):
    """The domain refuses NaN now, but a log written before may hold one. SQLite stores NaN
    as NULL, which the index's primary key refuses; the projector must skip the entry
    (INSERT OR IGNORE does), never fail the batch forever."""
    ev = Events()
    indexed = replace(USER, properties=tuple(replace(p, indexed=True) if p.name == "score" else p
                                             for p in USER.properties))
    write_events(app.path, [ev.schema(schema("g", 1, node_types=(indexed, DOC))),
                            ev.create("a", score=float("nan")), ev.create("b", score=1.0),
                            ev.update("a", score=float("nan"), age=3)])
    await app.projector.catch_up()
    assert app.projector.progress.positions() == {SHARD: 4}
    a = await app.queries.get_node(GetNode("g", "a"))
    assert a.properties["age"] == 3 and a.properties["score"] != a.properties["score"]
    page = await app.queries.list_nodes(ListNodes("g", "User", filter="score >= 0"))
    assert [n.id for n in page.nodes] == ["b"]


@pytest.fixture
async def stub(tmp_path):
    ev = Events()
    async with served_query_stub(str(tmp_path / "edgewise.db"), [ev.schema(), ev.create("a")]) as s:
        yield s


@pytest.mark.parametrize("timeout", [0.3, 1.0])
async def test_a_consistency_wait_ends_within_the_deadline_with_unavailable(stub, timeout):
    """A token the projection cannot reach in time: UNAVAILABLE with RetryInfo, answered
    before the caller's deadline (never DEADLINE_EXCEEDED, never INTERNAL)."""
    ahead = TokenSigner(SECRET).sign({"p": {"0": 10**12}})
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetNode(qpb.GetNodeRequest(name="graphs/g/nodes/a",
                                                  consistency=pb.ReadConsistency(at_least_token=ahead)),
                               timeout=timeout)
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE, (err.value.code(), err.value.details())
        assert time.monotonic() - started < timeout
        status = rpc_status.from_call(err.value)
        kinds = [d.type_url.rsplit("/", 1)[-1] for d in status.details]
        assert kinds.count("google.rpc.ErrorInfo") == 1 and "google.rpc.RetryInfo" in kinds
        info = error_details_pb2.ErrorInfo()
        status.details[0].Unpack(info)
        assert info.reason == Reason.CONSISTENCY_NOT_REACHED


async def test_point_reads_run_on_the_loop_thread_and_take_a_hop_when_the_store_is_busy(tmp_path):
    import sqlite3
    import threading

    from infrastructure.persistence.sqlite.connection import SqliteReaderPool
    path = str(tmp_path / "inline.db")
    sqlite3.connect(path).executescript("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7);")
    pool = await SqliteReaderPool(path, size=1).open()
    try:
        def read(c):
            return threading.get_ident(), c.execute("SELECT x FROM t").fetchone()[0]
        here = threading.get_ident()
        assert await pool.run_inline(read) == (here, 7)  # no hop

        class Busy:
            def execute(self, *args):
                raise sqlite3.OperationalError("database is locked")
        real, pool._inline = pool._inline, Busy()
        thread, value = await pool.run_inline(read)
        assert value == 7 and thread != here and pool.inline_fallbacks == 1  # a reader thread answered
        pool._inline = real
    finally:
        await pool.close()
