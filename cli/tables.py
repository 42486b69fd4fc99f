"""``tables create | check | delete``: Edgewise's DynamoDB tables (deploy/dynamodb/tables.py).

``create`` is idempotent: existing tables are left alone (TTL switched on if it was off),
missing ones are created, and it returns once every table is ACTIVE. ``check`` is the
services' start-up check. ``delete`` (tests, development) needs ``--yes``. Each prints one
line per table on stderr and the usual single JSON object on stdout. Credentials come from
the AWS default chain (AWS_ACCESS_KEY_ID..., AWS_PROFILE, a role).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from domain.errors import DomainError
from infrastructure.config import DynamoDBSettings
from infrastructure.persistence.dynamodb.admin import TableReport, create_tables, delete_tables
from infrastructure.persistence.dynamodb.client import DynamoClient

from cli.sqlite_files import CliError

ACTIONS = ("create", "check", "delete")


def settings_from_args(endpoint: str, region: str, prefix: str) -> DynamoDBSettings:
    settings, problems = DynamoDBSettings.parse(endpoint.strip(), region.strip(), prefix.strip(),
                                                names=("--endpoint", "--region", "--prefix"))
    if problems:
        raise CliError("; ".join(problems), exit_code=2)
    return settings


async def _run(action: str, settings: DynamoDBSettings, timeout: float) -> list[TableReport]:
    async with await DynamoClient.open(settings) as client:
        if action == "create":
            return await create_tables(client, timeout=timeout)
        if action == "delete":
            return await delete_tables(client, timeout=timeout)
        await client.check_tables()
        return [TableReport(name, "checked", "ACTIVE") for name in
                (client.tables.write, client.tables.log, client.tables.read)]


def tables(action: str, settings: DynamoDBSettings, *, timeout: float) -> dict[str, Any]:
    if action not in ACTIONS:
        raise CliError(f"unknown tables action {action!r}", exit_code=2)
    try:
        reports = asyncio.run(_run(action, settings, timeout))
    except DomainError as exc:
        raise CliError(exc.message) from None
    for report in reports:
        print(report.line(), file=sys.stderr, flush=True)
    return {"ok": True, "action": action, "endpoint": settings.describe_endpoint(), "region": settings.region,
            "prefix": settings.table_prefix, "tables": [report.as_dict() for report in reports]}
