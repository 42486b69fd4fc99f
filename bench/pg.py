"""A throwaway PostgreSQL cluster for the side-by-side benchmark, and its queries.

``PgCluster`` runs ``initdb`` and ``pg_ctl`` found on PATH into a fresh temporary
directory, listens on 127.0.0.1 on a free port (the Unix socket stays inside the
data directory), and is always stopped and deleted on exit, also after an error.
As root (initdb refuses root), the server runs as the ``postgres`` account.
Durability stays at PostgreSQL's defaults: ``fsync = on``, ``synchronous_commit =
on``, ``full_page_writes = on``.

Tables (the same ids as the Edgewise node ids, ``u123``):
  nodes(id text primary key, name text, joined int)
  edges(source text, type text, target text, primary key (source, type, target))
  + index edges_target on (target, type, source)
The read comparison uses ``nodes``/``edges`` loaded with COPY; ingest is measured
separately into ``nodes_ingest``/``edges_ingest`` (same definitions).
"""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from bench.stack import free_port

EDGE_TYPE = "follows"


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be run here (no initdb/pg_ctl on PATH, or no driver)."""


def tools() -> tuple[str, str]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        raise PgUnavailable("initdb/pg_ctl not found on PATH: the PostgreSQL workloads are skipped "
                            "(install PostgreSQL 15 server binaries, e.g. Debian's postgresql-15)")
    return initdb, pg_ctl


def _driver():
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise PgUnavailable(f"the psycopg driver is not installed ({exc}): run `make venv`") from None
    return psycopg


def ddl(suffix: str = "") -> str:
    return f"""
        CREATE TABLE nodes{suffix} (id text PRIMARY KEY, name text NOT NULL, joined integer NOT NULL);
        CREATE TABLE edges{suffix} (source text NOT NULL, type text NOT NULL, target text NOT NULL,
                                    PRIMARY KEY (source, type, target));
    """


def reverse_index(suffix: str = "") -> str:
    return f"CREATE INDEX edges{suffix}_target ON edges{suffix} (target, type, source)"


class PgCluster:
    def __init__(self, log=print) -> None:
        self.log = log
        self.initdb, self.pg_ctl = tools()
        self.psycopg = _driver()
        self.port = free_port()
        self.dir: Path | None = None
        self.running = False
        self.version = ""
        self._user: pwd.struct_passwd | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> "PgCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, args: Sequence[str], timeout: float = 120) -> str:
        user = self._user

        def demote() -> None:  # initdb and postgres refuse to run as root
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if user is not None:
            env["HOME"] = str(self.dir)
        proc = subprocess.run(list(args), preexec_fn=demote, env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                               f"\n{self.log_tail()}")
        return proc.stdout

    def start(self) -> "PgCluster":
        self.dir = Path(tempfile.mkdtemp(prefix="edgewise-bench-pg-"))
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root and there is no 'postgres' account to run the server as") \
                    from None
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        data = self.dir / "data"
        # --no-sync only skips initdb's own final fsync of the template files; the server runs durable
        self._run([self.initdb, "-D", str(data), "-U", "bench", "--auth=trust", "-E", "UTF8", "--locale=C",
                   "--no-sync"])
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data} "
                "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=256MB "
                "-c max_wal_size=4GB -c jit=off")
        self._run([self.pg_ctl, "-D", str(data), "-o", opts, "-l", str(self.dir / "server.log"), "-w",
                   "-t", "60", "start"])
        self.running = True
        with self.connect() as conn:
            self.version = conn.execute("SHOW server_version").fetchone()[0]
        self.log(f"  PostgreSQL {self.version} on 127.0.0.1:{self.port} (data in {data})")
        return self

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "server.log" if self.dir else None
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir / "data"
        if self.running:
            try:
                self._run([self.pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"], timeout=60)
            except Exception as exc:  # noqa: BLE001 - last resort: make sure nothing is left running
                self.log(f"  pg_ctl stop failed ({exc}); stopping immediately")
                try:
                    self._run([self.pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], timeout=30)
                except Exception as exc2:  # noqa: BLE001
                    self.log(f"  pg_ctl stop -m immediate failed too: {exc2}")
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def connect(self, autocommit: bool = True):
        return self.psycopg.connect(host="127.0.0.1", port=self.port, user="bench", dbname="postgres",
                                    autocommit=autocommit)

    # -- loading -------------------------------------------------------------------------
    def load_copy(self, nodes: Iterable[tuple[str, str, int]], edges: Iterable[tuple[str, str]]) -> dict:
        """Creates nodes/edges and loads them with COPY, then builds the reverse index."""
        out: dict[str, float] = {}
        with self.connect() as conn:
            conn.execute(ddl())
            t = time.perf_counter()
            with conn.cursor() as cur:
                with cur.copy("COPY nodes (id, name, joined) FROM STDIN") as copy:
                    for row in nodes:
                        copy.write_row(row)
                with cur.copy("COPY edges (source, type, target) FROM STDIN") as copy:
                    for s, t_ in edges:
                        copy.write_row((s, EDGE_TYPE, t_))
            out["copy_s"] = time.perf_counter() - t
            t = time.perf_counter()
            conn.execute(reverse_index())
            out["index_s"] = time.perf_counter() - t
            conn.execute("VACUUM ANALYZE nodes")
            conn.execute("VACUUM ANALYZE edges")
            out["bytes"] = conn.execute(
                "SELECT pg_total_relation_size('edges') + pg_total_relation_size('nodes')").fetchone()[0]
        return out

    def ingest(self, nodes: Sequence[tuple[str, str, int]], edges: Sequence[tuple[str, str]],
               batch: int = 100, workers: int = 4) -> "IngestResult":
        """Durable batched INSERTs: ``batch`` rows per transaction, ``workers`` connections."""
        with self.connect() as conn:
            conn.execute(ddl("_ingest"))
            conn.execute(reverse_index("_ingest"))
        result = IngestResult(nodes=len(nodes), edges=len(edges))
        node_sql = "INSERT INTO nodes_ingest (id, name, joined) VALUES (%s, %s, %s)"
        edge_sql = "INSERT INTO edges_ingest (source, type, target) VALUES (%s, %s, %s)"
        node_batches = [nodes[i:i + batch] for i in range(0, len(nodes), batch)]
        edge_batches = [[(s, EDGE_TYPE, t) for s, t in edges[i:i + batch]] for i in range(0, len(edges), batch)]
        result.nodes_s, lat_n = self._parallel(node_sql, node_batches, workers)
        result.edges_s, lat_e = self._parallel(edge_sql, edge_batches, workers)
        result.latencies = lat_n + lat_e
        with self.connect() as conn:
            result.bytes = conn.execute("SELECT pg_total_relation_size('edges_ingest') + "
                                        "pg_total_relation_size('nodes_ingest')").fetchone()[0]
            result.edge_bytes = conn.execute("SELECT pg_total_relation_size('edges_ingest')").fetchone()[0]
            result.settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')").fetchall())
        return result

    def _parallel(self, sql: str, batches: list[list[tuple]], workers: int) -> tuple[float, list[float]]:
        work: queue.Queue = queue.Queue()
        for b in batches:
            work.put(b)
        latencies: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker() -> None:
            try:
                with self.connect(autocommit=False) as conn:
                    while True:
                        try:
                            rows = work.get_nowait()
                        except queue.Empty:
                            return
                        t0 = time.perf_counter()
                        with conn.cursor() as cur:
                            cur.executemany(sql, rows)
                        conn.commit()
                        with lock:
                            latencies.append(time.perf_counter() - t0)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors.append(exc)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        if errors:
            raise errors[0]
        return elapsed, latencies


@dataclass
class IngestResult:
    nodes: int
    edges: int
    nodes_s: float = 0.0
    edges_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    bytes: int = 0
    edge_bytes: int = 0
    settings: dict = field(default_factory=dict)


class PgQueries:
    """The read workloads on one connection (autocommit, prepared statements)."""

    LEVEL_IN = f"SELECT source FROM edges WHERE target = ANY(%s) AND type = '{EDGE_TYPE}'"
    LEVEL_OUT = f"SELECT target FROM edges WHERE source = ANY(%s) AND type = '{EDGE_TYPE}'"
    # the textbook recursive CTE: UNION removes duplicate (node, depth) rows, then each
    # node keeps its smallest depth; LIMIT bounds the answer, not the work
    CTE_IN = f"""
        WITH RECURSIVE walk(node, depth) AS (
            SELECT %(start)s::text, 0
          UNION
            SELECT e.source, w.depth + 1
            FROM walk w JOIN edges e ON e.target = w.node AND e.type = '{EDGE_TYPE}'
            WHERE w.depth < %(max_depth)s
        )
        SELECT node, min(depth) AS depth FROM walk GROUP BY node ORDER BY 2, 1 LIMIT %(limit)s
    """
    GET_NODE = "SELECT id, name, joined FROM nodes WHERE id = %s"

    def __init__(self, cluster: PgCluster, cte_timeout_ms: int = 5000) -> None:
        self.conn = cluster.connect()
        self.psycopg = cluster.psycopg
        self.cte_timeout_ms = cte_timeout_ms
        self.statements = 0

    def close(self) -> None:
        self.conn.close()

    def _column(self, sql: str, ids: list[str]) -> list[str]:
        self.statements += 1
        return [r[0] for r in self.conn.execute(sql, (ids,), prepare=True).fetchall()]

    def expand_in(self, frontier: list[str]) -> list[str]:
        return self._column(self.LEVEL_IN, frontier)

    def expand_out(self, frontier: list[str]) -> list[str]:
        return self._column(self.LEVEL_OUT, frontier)

    def cte(self, start: str, max_depth: int, limit: int) -> list[tuple[str, int]] | None:
        """The recursive CTE's (node, depth) rows, or None when statement_timeout hit."""
        try:
            with self.conn.transaction():
                self.conn.execute(f"SET LOCAL statement_timeout = {int(self.cte_timeout_ms)}")
                return self.conn.execute(self.CTE_IN, {"start": start, "max_depth": max_depth, "limit": limit},
                                         prepare=True).fetchall()
        except self.psycopg.errors.QueryCanceled:
            return None

    def get_node(self, ident: str) -> tuple | None:
        return self.conn.execute(self.GET_NODE, (ident,), prepare=True).fetchone()
