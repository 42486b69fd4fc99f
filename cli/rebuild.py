"""``rebuild-read-model``: empty the ``rm_*`` tables and reset the projector's
checkpoint to 0 in one transaction, so the next query-service start re-projects the
whole event log. Only with the query service stopped: a running projector keeps
its in-memory position and would answer reads from the emptied tables.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from infrastructure.persistence.sqlite.read_model import READ_MODEL_DDL

from cli.sqlite_files import CliError, connect, tables
from cli.status import READ_MODEL_PROJECTOR

CHECKPOINTS_TABLE = "rm_checkpoints"

# The read model's tables, named once: in the DDL the query service creates them with.
READ_MODEL_TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (rm_\w+)", READ_MODEL_DDL))
DATA_TABLES = tuple(t for t in READ_MODEL_TABLES if t not in (CHECKPOINTS_TABLE, "rm_layout"))


def rebuild_read_model(db_path: str) -> dict[str, Any]:
    conn = connect(db_path, read_only=False)
    try:
        present = tables(conn)
        if "event_log" not in present:
            raise CliError(f"{db_path!r} is not an Edgewise database (it has no event_log table)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = {t: conn.execute(f"DELETE FROM {t}").rowcount for t in DATA_TABLES if t in present}
            previous = 0
            if CHECKPOINTS_TABLE in present:
                row = conn.execute(f"SELECT position FROM {CHECKPOINTS_TABLE} WHERE projector = ?",
                                   (READ_MODEL_PROJECTOR,)).fetchone()
                previous = int(row[0]) if row else 0
                conn.execute(f"INSERT INTO {CHECKPOINTS_TABLE} (projector, position) VALUES (?, 0) "
                             "ON CONFLICT (projector) DO UPDATE SET position = 0", (READ_MODEL_PROJECTOR,))
            head = int(conn.execute("SELECT COALESCE(MAX(position), 0) FROM event_log").fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise CliError(f"rebuild of the read model in {db_path!r} failed, nothing changed: {exc}") from exc
    finally:
        conn.close()
    return {
        "ok": True,
        "db": db_path,
        "projector": READ_MODEL_PROJECTOR,
        "previous_checkpoint": previous,
        "checkpoint": 0,
        "deleted_rows": deleted,
        "events_to_replay": head,
    }
