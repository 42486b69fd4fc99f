"""Opening the data file for the CLI: read-only for ``status``, read-write (never
created) for ``rebuild-read-model``. Plain ``sqlite3``, no event loop."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from infrastructure.config import DEV_DB_PATH
from infrastructure.persistence.sqlite.connection import BUSY_TIMEOUT_MS


class CliError(Exception):
    """A failure the CLI reports on stderr; ``exit_code`` is the process's exit status."""

    def __init__(self, message: str, exit_code: int = 1, *, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result = result  # the JSON object to print instead of {"ok": false, "error": ...}


def existing_file(path: str) -> Path:
    if not path:
        raise CliError("no database: pass --db PATH or set EDGEWISE_DB_PATH", exit_code=2)
    file = Path(path)
    if not file.is_file():
        hint = " (the default, make run's file: pass --db PATH or set EDGEWISE_DB_PATH)" if path == DEV_DB_PATH else ""
        raise CliError(f"no database file at {path!r}{hint}")
    return file.resolve()


def connect(path: str, *, read_only: bool) -> sqlite3.Connection:
    """Open an existing file (``mode=ro`` or ``mode=rw``: SQLite never creates it here)."""
    file = existing_file(path)
    uri = f"{file.as_uri()}?mode={'ro' if read_only else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        tables(conn)  # fails now, clearly, on a file that is not a database
    except sqlite3.Error as exc:
        raise CliError(f"cannot open {path!r}: {exc}") from exc
    return conn


def tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
