"""The projector and the query application on a real SQLite file."""

import asyncio
import sqlite3
import time

import pytest

from domain.edge import Direction
from domain.errors import Reason, Unavailable
from infrastructure.config import Settings
from infrastructure.persistence.sqlite.event_log import SHARD
from infrastructure.persistence.sqlite.read_model import SqliteProjectionStore
from infrastructure.persistence.sqlite.connection import SqliteConnection
from infrastructure.tokens import TokenSigner
from query_service.app.consistency import Consistency
from query_service.app.queries.get_node import GetNode
from query_service.app.queries.list_edges import ListEdges
from query_service.app.queries.traverse import Traverse, TraversalStep
from query_service.bootstrap import bootstrap
from query_service.projection.projector import PROJECTOR_NAME
from tests.query_support import SECRET, Events, init_db, logged, query_app, write_events

pytestmark = pytest.mark.integration


def dump(path: str) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in
                ("rm_nodes", "rm_adjacency", "rm_adjacency_chunks", "rm_node_index", "rm_schemas")}
    finally:
        conn.close()


def history(ev: Events) -> list:
    return [ev.schema(), *[ev.create(f"u{i}", email=f"{i}@x", age=i) for i in range(6)],
            *[ev.link(f"u{i}", f"u{(i + 1) % 6}") for i in range(6)], ev.link("u0", "u3"),
            ev.update("u1", email="one@x", age=10), ev.unlink("u0", "u3"), ev.delete("u2"),
            ev.unlink("u1", "u2"), ev.unlink("u2", "u3"), ev.link("u0", "u4")]


@pytest.fixture
async def app(tmp_path):
    async with query_app(str(tmp_path / "edgewise.db"), projector_poll_interval_ms=10) as application:
        yield application


async def test_replaying_the_log_from_zero_changes_nothing(app):
    write_events(app.path, history(Events()))
    await app.projector.catch_up()
    first = dump(app.path)
    assert first["rm_adjacency"] and first["rm_node_index"]
    store = app.projector._store
    await store.reset(PROJECTOR_NAME)
    await app.projector.catch_up()
    assert dump(app.path) == first
    await store.reset(PROJECTOR_NAME, {SHARD: 7})  # and from the middle
    await app.projector.catch_up()
    assert dump(app.path) == first


async def test_deleted_node_is_gone_with_its_adjacency(app):
    write_events(app.path, history(Events()))
    await app.projector.catch_up()
    q = app.queries
    with pytest.raises(Exception):
        await q.get_node(GetNode("g", "u2"))
    conn = sqlite3.connect(app.path)
    rows = conn.execute("SELECT * FROM rm_adjacency WHERE node = 'u2' OR neighbour = 'u2'").fetchall()
    conn.close()
    assert rows == []
    u1 = await q.get_node(GetNode("g", "u1"))
    assert u1.edge_counts == {("follows", Direction.IN): 1}
    page = await q.list_edges(ListEdges("g", "u0", Direction.OUT))
    assert [e.target for e in page.edges] == ["u4", "u1"]


async def test_checkpoint_commits_with_the_batch(tmp_path):
    path = str(tmp_path / "x.db")
    init_db(path)
    writer = await SqliteConnection(path).open()
    store = SqliteProjectionStore(writer)
    ev = Events()
    from query_service.projection.apply import apply_events

    def half_then_fail(tx, events):
        apply_events(tx, events[:2])
        raise RuntimeError("crash mid-batch")

    with pytest.raises(RuntimeError):
        await store.apply(PROJECTOR_NAME, SHARD, logged([ev.schema(), ev.create("a"), ev.create("b")]), half_then_fail)
    assert await store.positions(PROJECTOR_NAME) == {}
    assert dump(path)["rm_nodes"] == [] and dump(path)["rm_schemas"] == []
    await writer.close()


async def test_read_your_writes_with_the_projector_running(app):
    signer = TokenSigner(SECRET)
    task = asyncio.create_task(app.projector.run())
    try:
        ev = Events()
        pos = write_events(app.path, [ev.schema(), ev.create("a", age=1)])
        token = signer.sign({"p": {"0": pos}})
        view = await app.queries.get_node(GetNode("g", "a", Consistency(at_least_token=token)))
        assert view.properties == {"age": 1}
        pos = write_events(app.path, [ev.create("b"), ev.link("a", "b")])
        r = await app.queries.traverse(Traverse("g", "a", (TraversalStep("follows", Direction.OUT),),
                                                consistency=Consistency(at_least_token=signer.sign({"p": {"0": pos}}))))
        assert [n.id for n in r.nodes] == ["a", "b"]
        assert (await app.queries.get_node(GetNode("g", "b", Consistency(fully_consistent=True)))).id == "b"

        gate = app.queries.get_node._gate
        gate._max_wait = 0.2
        started = time.monotonic()
        with pytest.raises(Unavailable) as err:
            await app.queries.get_node(GetNode("g", "a", Consistency(at_least_token=signer.sign({"p": {"0": pos + 99}}))))
        assert err.value.reason == Reason.CONSISTENCY_NOT_REACHED
        assert time.monotonic() - started < 1.0
    finally:
        app.projector.stop()
        await task


async def test_a_waiting_reader_wakes_the_projector(tmp_path):
    """With an hour-long poll interval, a read-your-writes query must still succeed:
    the waiting reader makes the in-process projector poll at once."""
    path = str(tmp_path / "edgewise.db")
    init_db(path)
    application = await bootstrap(Settings(db_path=path, token_secret=SECRET,
                                           projector_poll_interval_ms=3_600_000))
    task = asyncio.create_task(application.projector.run())
    try:
        await asyncio.sleep(0.05)  # the projector is now in its (long) pause
        ev = Events()
        pos = write_events(path, [ev.schema(), ev.create("a", age=1)])
        token = TokenSigner(SECRET).sign({"p": {"0": pos}})
        view = await application.queries.get_node(GetNode("g", "a", Consistency(at_least_token=token)))
        assert view.properties == {"age": 1}
    finally:
        application.projector.stop()
        await task
        await application.close()


def test_a_read_model_of_another_layout_is_dropped_and_rebuilt_from_the_log(tmp_path):
    from infrastructure.persistence.sqlite.read_model import READ_MODEL_LAYOUT, prepare_read_model
    conn = sqlite3.connect(str(tmp_path / "old.db"), isolation_level=None)
    # the layout before id chunks: node rows without packed counts, and a projector far along
    conn.executescript("CREATE TABLE rm_nodes (graph TEXT, id TEXT, PRIMARY KEY (graph, id));"
                       "CREATE TABLE rm_checkpoints (projector TEXT PRIMARY KEY, position INTEGER NOT NULL);"
                       "INSERT INTO rm_nodes VALUES ('g', 'a'); INSERT INTO rm_checkpoints VALUES ('read_model', 5);")
    assert prepare_read_model(conn) is True
    assert "edge_counts" in {r[1] for r in conn.execute("PRAGMA table_info(rm_nodes)")}
    assert conn.execute("SELECT COUNT(*) FROM rm_nodes").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM rm_checkpoints").fetchone() == (0,)  # replay from the start
    assert conn.execute("SELECT version FROM rm_layout").fetchall() == [(READ_MODEL_LAYOUT,)]
    conn.execute("INSERT INTO rm_checkpoints VALUES ('read_model', 7)")
    assert prepare_read_model(conn) is False  # the current layout is left alone
    assert conn.execute("SELECT position FROM rm_checkpoints").fetchone() == (7,)
    fresh = sqlite3.connect(str(tmp_path / "new.db"), isolation_level=None)
    assert prepare_read_model(fresh) is False  # a new file has nothing to rebuild
    conn.close()
    fresh.close()
