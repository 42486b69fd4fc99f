"""Create and delete Edgewise's tables (deploy/dynamodb/tables.py); ``python -m cli tables``.

``create_tables`` is idempotent: a table that exists is left as it is (its status is
reported; TTL is switched on if it was off), a missing one is created; it returns once
every table is ACTIVE.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Sequence

from deploy.dynamodb.tables import TABLES, Table
from domain.errors import DomainError, Reason, Unavailable

from infrastructure.persistence.dynamodb.client import DynamoClient

DEFAULT_WAIT_SECONDS = 300.0
_POLL_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class TableReport:
    """What ``create_tables`` / ``delete_tables`` did to one table."""

    name: str
    action: str  # "created", "exists", "deleted", "absent"
    status: str  # the table's status at the end: "ACTIVE", "DELETED"...
    ttl: str = ""  # "expires_at enabled", "" when the table has no TTL attribute

    def line(self) -> str:
        return f"{self.name}: {self.action}, {self.status}" + (f", TTL {self.ttl}" if self.ttl else "")

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "action": self.action, "status": self.status, "ttl": self.ttl}


async def _wait(client: DynamoClient, name: str, *, until_gone: bool, timeout: float) -> str:
    """Poll DescribeTable until the table (and every index) is ACTIVE, or it is gone."""
    deadline = time.monotonic() + timeout
    for attempt in range(1_000_000):
        description = await client.describe_table(name)
        if description is None:
            if until_gone:
                return "DELETED"
        else:
            indexes = description.get("GlobalSecondaryIndexes") or []
            status = str(description.get("TableStatus"))
            if not until_gone and status == "ACTIVE" and all(i.get("IndexStatus", "ACTIVE") == "ACTIVE"
                                                             for i in indexes):
                return status
        if time.monotonic() >= deadline:
            raise Unavailable(f"DynamoDB table {name} did not become {'deleted' if until_gone else 'ACTIVE'} "
                              f"within {timeout:.0f} s", reason=Reason.STORAGE_UNAVAILABLE)
        await asyncio.sleep(_POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)])
    raise AssertionError("unreachable")


async def _ensure_ttl(client: DynamoClient, table: Table, name: str) -> str:
    if table.ttl_attribute is None:
        return ""
    ttl = await client.time_to_live(name)
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == table.ttl_attribute:
        return f"{table.ttl_attribute} enabled"
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        # another attribute is the TTL: changing it is an operator's decision, not ours
        raise Unavailable(f"DynamoDB table {name} has TTL on {ttl.get('AttributeName')!r}, expected "
                          f"{table.ttl_attribute!r}: disable it first", reason=Reason.STORAGE_UNAVAILABLE)
    await client.enable_time_to_live(name, table.ttl_attribute)
    return f"{table.ttl_attribute} enabled"


async def create_tables(client: DynamoClient, *, tables: Sequence[Table] = TABLES,
                        timeout: float = DEFAULT_WAIT_SECONDS) -> list[TableReport]:
    """Create the missing tables under ``client.settings.table_prefix``, leave existing
    ones alone, wait until all are ACTIVE, make sure TTL is on. One report per table."""
    prefix = client.settings.table_prefix
    actions: dict[str, str] = {}
    for table in tables:
        name = table.name(prefix)
        if await client.describe_table(name) is not None:
            actions[name] = "exists"
            continue
        try:
            await client.create_table(table.create_input(prefix))
            actions[name] = "created"
        except DomainError as exc:  # created meanwhile by another process
            if exc.metadata.get("code") != "ResourceInUseException":
                raise
            actions[name] = "exists"
    reports = []
    for table in tables:
        name = table.name(prefix)
        status = await _wait(client, name, until_gone=False, timeout=timeout)
        reports.append(TableReport(name, actions[name], status, await _ensure_ttl(client, table, name)))
    return reports


async def delete_tables(client: DynamoClient, *, tables: Sequence[Table] = TABLES,
                        timeout: float = DEFAULT_WAIT_SECONDS) -> list[TableReport]:
    """Delete the tables under ``client.settings.table_prefix`` (tests and development)
    and wait until they are gone. Missing tables are reported as "absent"."""
    prefix = client.settings.table_prefix
    reports = []
    for table in tables:
        name = table.name(prefix)
        if await client.delete_table(name):
            await _wait(client, name, until_gone=True, timeout=timeout)
            reports.append(TableReport(name, "deleted", "DELETED"))
        else:
            reports.append(TableReport(name, "absent", "DELETED"))
    return reports
