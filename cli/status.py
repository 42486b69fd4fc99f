"""``status``: log head, projector checkpoint and lag, background work, per-graph counts.

Every number comes from one read transaction (one snapshot) on a read-only
connection. A value is ``null`` when its table does not exist in the file (the
write-model tables appear when the command service first opens it; the ``rm_*``
tables when the query service does).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from infrastructure.persistence.sqlite.projector_lock import holder_pid, lock_path_for

from cli.sqlite_files import CliError, connect, tables

# The query service's projector name (query_service.projection.projector.PROJECTOR_NAME);
# the CLI may not import query_service, so tests/integration/test_cli.py pins the two equal.
READ_MODEL_PROJECTOR = "read_model"


def _count(conn: sqlite3.Connection, present: set[str], table: str) -> int | None:
    if table not in present:
        return None
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _per_graph(conn: sqlite3.Connection, present: set[str], table: str, sql: str) -> dict[str, int] | None:
    if table not in present:
        return None
    return {graph: int(value) for graph, value in conn.execute(sql)}


def _graph_counts(conn: sqlite3.Connection, present: set[str]) -> dict[str, Any]:
    write = {
        "schema_version": _per_graph(conn, present, "schemas",
                                     "SELECT graph, MAX(version) FROM schemas GROUP BY graph"),
        "live_nodes": _per_graph(conn, present, "nodes",
                                 "SELECT graph, COUNT(*) FROM nodes WHERE deleted = 0 GROUP BY graph"),
        "edges": _per_graph(conn, present, "edges", "SELECT graph, COUNT(*) FROM edges GROUP BY graph"),
    }
    read = {
        "schema_version": _per_graph(conn, present, "rm_schemas", "SELECT graph, version FROM rm_schemas"),
        "live_nodes": _per_graph(conn, present, "rm_nodes",
                                 "SELECT graph, COUNT(*) FROM rm_nodes WHERE deleted = 0 GROUP BY graph"),
        "edges": _per_graph(conn, present, "rm_adjacency",
                            "SELECT graph, COUNT(*) FROM rm_adjacency WHERE direction = 'OUT' GROUP BY graph"),
    }
    names = sorted({g for side in (write, read) for values in side.values() if values for g in values})

    def pick(side: dict[str, dict[str, int] | None], graph: str) -> dict[str, int | None]:
        return {key: (None if values is None else values.get(graph, 0)) for key, values in side.items()}

    return {graph: {**pick(write, graph), "read_model": pick(read, graph)} for graph in names}


def status(db_path: str) -> dict[str, Any]:
    conn = connect(db_path, read_only=True)
    try:
        conn.execute("BEGIN")  # one snapshot for every number below
        present = tables(conn)
        if "event_log" not in present:
            raise CliError(f"{db_path!r} is not an Edgewise database (it has no event_log table)")
        head = int(conn.execute("SELECT COALESCE(MAX(position), 0) FROM event_log").fetchone()[0])
        checkpoint = 0
        if "rm_checkpoints" in present:
            row = conn.execute("SELECT position FROM rm_checkpoints WHERE projector = ?",
                               (READ_MODEL_PROJECTOR,)).fetchone()
            checkpoint = int(row[0]) if row else 0
        result = {
            "ok": True,
            "db": db_path,
            "event_log_head": head,
            "projector": READ_MODEL_PROJECTOR,
            "projector_checkpoint": checkpoint,
            "projection_lag_events": max(0, head - checkpoint),
            # the query worker holding <db>.projector.lock (null: none is projecting)
            "projector_pid": holder_pid(lock_path_for(db_path)),
            "pending_cascade_jobs": _count(conn, present, "cascade_jobs"),
            "idempotency_records": _count(conn, present, "idempotency"),
            "graphs": _graph_counts(conn, present),
        }
        conn.execute("COMMIT")
        return result
    except sqlite3.Error as exc:
        raise CliError(f"cannot read {db_path!r}: {exc}") from exc
    finally:
        conn.close()
