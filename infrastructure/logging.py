"""JSON log lines carrying the service, the process id, and the request id (``x_request_id``:
the caller's ``x-request-id``, never a command's idempotency ``request_id``) and trace id of
the current call.

Structured fields go in ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import TextIO

from infrastructure.grpc.context import current_context


class JsonFormatter(logging.Formatter):
    """One JSON object per record. ``service`` (e.g. ``query_service``) and the process id
    go on every line: several processes (query workers) write to one terminal or collector."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ctx = current_context()
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            entry["service"] = self.service
        entry["pid"] = record.process if record.process is not None else os.getpid()
        if ctx.request_id:  # the caller's x-request-id (or one made up for the call)
            entry["x_request_id"] = ctx.request_id
        if ctx.trace_id:
            entry["trace_id"] = ctx.trace_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, service: str = "", stream: TextIO | None = None) -> None:
    """Send every log record to stderr (or ``stream``) as one JSON line naming ``service``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
