"""Query workers sharing one SQLite file: the projector lock (one holder, taken over when
the holder dies however it dies) and the read model's preparation (workers starting
together on an older layout)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading

from infrastructure.persistence.sqlite.projector_lock import SqliteProjectorLock, holder_pid, lock_path_for
from infrastructure.persistence.sqlite.read_model import prepare_read_model
from tests.query_support import Events, init_db, query_app, write_events

HOLD = """
import asyncio, sys, time
from infrastructure.persistence.sqlite.projector_lock import SqliteProjectorLock
lock = SqliteProjectorLock(sys.argv[1])
assert asyncio.run(lock.acquire("0"))
print("held", flush=True)
time.sleep(60)
"""


async def test_one_holder_at_a_time_and_release_hands_over(tmp_path):
    path = lock_path_for(str(tmp_path / "e.db"))
    a, b = SqliteProjectorLock(path), SqliteProjectorLock(path)
    assert holder_pid(path) is None
    assert await a.acquire("0") and await a.acquire("0")  # renewing is free
    assert not await b.acquire("0")
    assert holder_pid(path) == os.getpid()
    await a.release("0")
    assert holder_pid(path) is None
    assert await b.acquire("0") and not await a.acquire("0")
    await b.close()
    assert await a.acquire("0")
    await a.close()


async def test_a_killed_holder_loses_the_lock_at_once(tmp_path):
    path = lock_path_for(str(tmp_path / "e.db"))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline().strip() == b"held"
        assert holder_pid(path) == holder.pid
        mine = SqliteProjectorLock(path)
        assert not await mine.acquire("0")
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert await mine.acquire("0")  # no expiry to wait for: the kernel dropped the dead process's lock
        assert holder_pid(path) == os.getpid()
        await mine.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


async def test_two_query_apps_on_one_file_one_projects_the_other_follows(tmp_path):
    db = str(tmp_path / "e.db")
    ev = Events()
    init_db(db)
    position = write_events(db, [ev.schema(), ev.create("n", age=1)])
    async with query_app(db) as first, query_app(db) as second:
        await first.projector.run_once()
        await second.projector.run_once()
        assert first.projector.owned == {"0"} and second.projector.owned == set()
        assert first.progress.position("0") == position
        assert second.progress.position("0") == position  # followed the stored checkpoint
        assert holder_pid(lock_path_for(db)) == os.getpid()


def test_workers_preparing_an_older_read_model_together_drop_it_once(tmp_path):
    db = str(tmp_path / "e.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript("CREATE TABLE rm_layout (version INTEGER NOT NULL); INSERT INTO rm_layout VALUES (1);"
                       "CREATE TABLE rm_nodes (graph TEXT, id TEXT); CREATE TABLE rm_checkpoints (projector TEXT, "
                       "position INTEGER); INSERT INTO rm_checkpoints VALUES ('read_model', 42);")
    conn.close()
    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker() -> None:
        c = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA busy_timeout = 10000")
        try:
            start.wait()
            results.append(prepare_read_model(c))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results) == [False] * 5 + [True]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM rm_checkpoints").fetchone()[0] == 0  # rebuilt from the log
    assert conn.execute("SELECT COUNT(*) FROM rm_layout").fetchone()[0] == 1
    conn.close()
