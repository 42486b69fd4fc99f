"""The operator CLI (``python -m cli``) against real SQLite files and real gRPC servers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from cli.rebuild import DATA_TABLES, READ_MODEL_TABLES
from cli.status import READ_MODEL_PROJECTOR
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.common import TransactionLimits
from command_service.bootstrap import build_for_tests
from infrastructure.grpc.server import COMMAND_SERVICE_NAME, QUERY_SERVICE_NAME, start_server
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from query_service.projection.projector import PROJECTOR_NAME
from tests.command_samples import GRAPH, apply_sample_schema, edge, group, user
from tests.query_support import Events, init_db, query_app, write_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RID = "0b6f2d4e-8a1c-4e3b-9f7d-2c5a6b8e1d0f"


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWISE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_cli(*args: str, timeout: float = 30) -> tuple[int, dict, str]:
    """``python -m cli ...`` as an operator runs it: (exit code, stdout JSON, stderr)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


async def run_cli_async(*args: str, timeout: float = 30) -> tuple[int, dict, str]:
    """The same from a test whose event loop serves gRPC: the loop keeps running meanwhile."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", *args, cwd=ROOT, env=cli_env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, json.loads(out), err.decode()


def call_main(capsys, *args: str) -> tuple[int, dict, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def dump(path: str) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in READ_MODEL_TABLES}
    finally:
        conn.close()


def history(ev: Events) -> list:
    return [ev.schema(), *[ev.create(f"u{i}", email=f"{i}@x", age=i) for i in range(6)],
            *[ev.link(f"u{i}", f"u{(i + 1) % 6}") for i in range(6)], ev.link("u0", "u3"),
            ev.update("u1", email="one@x", age=10), ev.unlink("u0", "u3"), ev.delete("u2"),
            ev.create("d1", "Doc", title="T"), ev.link("u0", "d1", "owns"), ev.link("u0", "u4")]


def test_the_cli_reads_the_projector_the_query_service_writes():
    assert READ_MODEL_PROJECTOR == PROJECTOR_NAME


async def test_rebuild_covers_every_read_model_table(tmp_path):
    path = str(tmp_path / "edgewise.db")
    async with query_app(path):
        pass
    conn = sqlite3.connect(path)
    created = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'rm_%'")}
    conn.close()
    assert created == set(READ_MODEL_TABLES)
    assert "rm_checkpoints" not in DATA_TABLES and "rm_layout" not in DATA_TABLES
    assert len(DATA_TABLES) == len(READ_MODEL_TABLES) - 2  # the checkpoints and the layout version stay


async def test_status_on_the_command_side_store_then_after_projection(tmp_path, capsys):
    path = str(tmp_path / "edgewise.db")
    store = await SqliteWriteStore.open(path)
    app = build_for_tests(store, limits=TransactionLimits(max_edges_per_transaction=3))
    try:
        await app.dispatch(apply_sample_schema())
        for name in ("hub", "a", "b", "c", "d"):
            await app.dispatch(user(name))
        await app.dispatch(group("team"))
        for name in ("a", "b", "c", "d"):
            await app.dispatch(edge("hub", "manages", name))
        await app.dispatch(edge("a", "member_of", "team"))
        result = await app.dispatch(DeleteNode(graph=GRAPH, node_id="hub", request_id=RID))
        assert result.cascade_pending  # 4 edges > 3 per transaction: the worker (not started) owes them
        head = await store.head()

        # while the command side holds the file open
        code, status, err = call_main(capsys, "status", "--db", path)
        assert code == 0 and err == ""
        assert status["ok"] is True
        assert status["event_log_head"] == head > 0
        assert status["projector"] == "read_model"
        assert status["projector_checkpoint"] == 0 and status["projection_lag_events"] == head
        assert status["pending_cascade_jobs"] == 1
        assert status["idempotency_records"] == 1
        assert status["graphs"] == {GRAPH: {
            "schema_version": 1, "live_nodes": 5, "edges": 5,  # the tombstone's edges are still stored
            "read_model": {"schema_version": None, "live_nodes": None, "edges": None}}}  # no rm_* tables yet

        async with query_app(path) as q:
            await q.projector.catch_up()
        code, status, _ = call_main(capsys, "status", "--db", path)
        assert code == 0
        assert status["projector_checkpoint"] == head and status["projection_lag_events"] == 0
        assert status["graphs"][GRAPH]["read_model"] == {"schema_version": 1, "live_nodes": 5, "edges": 1}

        await app.cascade_worker.drain()
        async with query_app(path) as q:
            await q.projector.catch_up()
        code, status, _ = call_main(capsys, "status", "--db", path)
        assert status["pending_cascade_jobs"] == 0 and status["projection_lag_events"] == 0
        assert status["event_log_head"] > head
        graph = status["graphs"][GRAPH]
        assert graph.pop("read_model") == graph == {"schema_version": 1, "live_nodes": 5, "edges": 1}
    finally:
        await app.close()


async def test_status_as_a_process_on_an_event_log_written_directly(tmp_path):
    path = str(tmp_path / "edgewise.db")
    init_db(path)
    head = write_events(path, history(Events("g")))
    code, status, err = run_cli("status", "--db", path)
    assert code == 0, err
    assert (status["event_log_head"], status["projector_checkpoint"], status["projection_lag_events"]) == (
        head, 0, head)
    assert status["pending_cascade_jobs"] is None and status["idempotency_records"] is None  # no write model
    assert status["graphs"] == {}

    async with query_app(path) as app:
        await app.projector.catch_up()
    code, status, err = run_cli("status", "--db", path)
    assert code == 0, err
    assert status["projection_lag_events"] == 0
    assert status["graphs"] == {"g": {"schema_version": None, "live_nodes": None, "edges": None,
                                      "read_model": {"schema_version": 1, "live_nodes": 6, "edges": 6}}}


def test_status_defaults_to_edgewise_db_path(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "edgewise.db")
    init_db(path)
    monkeypatch.setenv("EDGEWISE_DB_PATH", path)
    code, status, _ = call_main(capsys, "status")
    assert code == 0 and status["db"] == path


def test_status_without_db_or_setting_reads_the_file_make_run_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EDGEWISE_DB_PATH", raising=False)
    monkeypatch.chdir(tmp_path)  # the repository root, as far as the relative default goes
    code, out, err = call_main(capsys, "status")
    assert code == 1 and out["ok"] is False and "./var/edgewise.db" in err and "EDGEWISE_DB_PATH" in err
    assert not (tmp_path / "var").exists()
    (tmp_path / "var").mkdir()
    init_db(str(tmp_path / "var" / "edgewise.db"))
    code, status, _ = call_main(capsys, "status")
    assert code == 0 and status["db"] == "./var/edgewise.db" and status["projector_pid"] is None
    makefile = (ROOT / "Makefile").read_text()
    assert 'EDGEWISE_DB_PATH="$${EDGEWISE_DB_PATH:-./var/edgewise.db}"' in makefile  # the same default


def test_status_names_the_projecting_process(tmp_path, capsys):
    import asyncio as aio

    from infrastructure.persistence.sqlite.projector_lock import SqliteProjectorLock, lock_path_for

    path = str(tmp_path / "edgewise.db")
    init_db(path)
    lock = SqliteProjectorLock(lock_path_for(path))
    assert aio.run(lock.acquire("0"))
    try:
        code, status, _ = call_main(capsys, "status", "--db", path)
        assert code == 0 and status["projector_pid"] == os.getpid()
    finally:
        aio.run(lock.close())


def test_status_failures_are_clear_and_create_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EDGEWISE_DB_PATH", raising=False)

    missing = tmp_path / "missing.db"
    code, out, err = call_main(capsys, "status", "--db", str(missing))
    assert code == 1 and "no database file" in err and not missing.exists()

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    code, out, err = call_main(capsys, "status", "--db", str(other))
    assert code == 1 and "not an Edgewise database" in err

    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all")
    code, out, err = call_main(capsys, "status", "--db", str(junk))
    assert code == 1 and "cannot open" in err


async def test_rebuild_then_a_fresh_query_service_reproduces_the_read_model(tmp_path, capsys):
    path = str(tmp_path / "edgewise.db")
    init_db(path)
    head = write_events(path, history(Events("g")))
    async with query_app(path) as app:
        await app.projector.catch_up()
    before = dump(path)
    assert all(before[t] for t in READ_MODEL_TABLES), "every table holds rows, so the comparison means something"

    code, out, err = call_main(capsys, "rebuild-read-model", "--db", path)  # refused: no --yes
    assert code == 2 and out["ok"] is False and "query service" in err and "--yes" in err
    assert dump(path) == before

    code, out, err = call_main(capsys, "rebuild-read-model", "--db", path, "--yes")
    assert code == 0, err
    assert out["previous_checkpoint"] == head and out["checkpoint"] == 0 and out["events_to_replay"] == head
    assert set(out["deleted_rows"]) == set(DATA_TABLES)
    assert out["deleted_rows"]["rm_nodes"] == len(before["rm_nodes"])
    emptied = dump(path)
    assert emptied.pop("rm_checkpoints") == [("read_model", 0)]
    assert emptied.pop("rm_layout") == before["rm_layout"]  # the layout did not change
    assert all(rows == [] for rows in emptied.values())
    code, status, _ = call_main(capsys, "status", "--db", path)
    assert status["projection_lag_events"] == head

    async with query_app(path) as app:  # the next start re-projects the whole log
        assert await app.projector.catch_up() == head
    assert dump(path) == before


def test_rebuild_needs_an_existing_edgewise_file(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    code, _, err = call_main(capsys, "rebuild-read-model", "--db", str(missing), "--yes")
    assert code == 1 and "no database file" in err and not missing.exists()


async def _noop_server(service: str):
    return await start_server(address="127.0.0.1:0", register=lambda server: None, service_names=[service])


async def test_health_against_live_servers():
    command = await _noop_server(COMMAND_SERVICE_NAME)
    query = await _noop_server(QUERY_SERVICE_NAME)
    addrs = ("--command-addr", f"127.0.0.1:{command.port}", "--query-addr", f"127.0.0.1:{query.port}")
    try:
        code, out, err = await run_cli_async("health", *addrs)
        assert code == 0, err
        assert out["ok"] is True
        assert [(c["target"], c["service"], c["status"]) for c in out["checks"]] == [
            ("command", "", "SERVING"), ("command", COMMAND_SERVICE_NAME, "SERVING"),
            ("query", "", "SERVING"), ("query", QUERY_SERVICE_NAME, "SERVING")]

        await query.set_serving(False)  # what a draining query service reports
        code, out, err = await run_cli_async("health", *addrs)
        assert code == 1 and out["ok"] is False
        assert {c["status"] for c in out["checks"] if c["target"] == "query"} == {"NOT_SERVING"}
        assert {c["status"] for c in out["checks"] if c["target"] == "command"} == {"SERVING"}
        assert "not healthy" in err and QUERY_SERVICE_NAME in err

        code, out, err = await run_cli_async("health", *addrs, "--only", "command")
        assert code == 0 and {c["target"] for c in out["checks"]} == {"command"}
    finally:
        await command.stop(0)
        await query.stop(0)


async def test_health_checks_every_query_worker():
    workers = [await _noop_server(QUERY_SERVICE_NAME) for _ in range(2)]
    listed = ",".join(f"127.0.0.1:{w.port}" for w in workers)
    try:
        code, out, err = await run_cli_async("health", "--only", "query", "--query-addr", listed)
        assert code == 0, err
        assert sorted({c["address"] for c in out["checks"]}) == sorted(listed.split(","))
        await workers[1].set_serving(False)
        code, out, err = await run_cli_async("health", "--only", "query", "--query-addr", listed)
        assert code == 1 and f"127.0.0.1:{workers[1].port}" in err and f"127.0.0.1:{workers[0].port}" not in err
    finally:
        for w in workers:
            await w.stop(0)


def test_health_against_a_closed_port_fails_in_bounded_time():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    address = f"127.0.0.1:{port}"
    started = time.monotonic()
    code, out, err = run_cli("health", "--command-addr", address, "--query-addr", address, "--timeout", "1")
    assert time.monotonic() - started < 15
    assert code == 1 and out["ok"] is False
    assert {c["status"] for c in out["checks"]} == {"ERROR"}
    assert all("UNAVAILABLE" in c["error"] or "DEADLINE_EXCEEDED" in c["error"] for c in out["checks"])
    assert address in err
