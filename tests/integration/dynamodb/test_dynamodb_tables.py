"""Table definitions, ``cli tables`` and the start-up check, against moto's server mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.dynamodb.tables import BY_TYPE_INDEX, BY_VALUE_INDEX, PENDING_INDEX, TABLES, TTL_ATTRIBUTE
from domain.errors import Unavailable
from infrastructure.config import DynamoDBSettings
from infrastructure.persistence.dynamodb.admin import create_tables, delete_tables
from scripts.moto_server import DUMMY_CREDENTIALS, free_port
from tests.dynamodb_support import client_options_for_tests, open_test_client

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

ROOT = Path(__file__).resolve().parents[3]


async def test_create_tables_is_idempotent_and_enables_ttl(dynamo_settings):
    async with await open_test_client(dynamo_settings) as client:
        first = await create_tables(client)
        assert [(r.name, r.action, r.status) for r in first] == [
            (t.name(dynamo_settings.table_prefix), "created", "ACTIVE") for t in TABLES]
        second = await create_tables(client)
        assert [r.action for r in second] == ["exists"] * len(TABLES)
        assert [r.ttl for r in second] == [f"{TTL_ATTRIBUTE} enabled", "", ""]

        ttl = await client.time_to_live(client.tables.write)
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)
        write = await client.describe_table(client.tables.write)
        read = await client.describe_table(client.tables.read)
        assert write is not None and read is not None
        assert write["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert {i["IndexName"] for i in write["GlobalSecondaryIndexes"]} == {PENDING_INDEX}
        assert {i["IndexName"] for i in read["GlobalSecondaryIndexes"]} == {BY_TYPE_INDEX, BY_VALUE_INDEX}
        assert not write.get("LocalSecondaryIndexes")
        await client.check_tables()

        deleted = await delete_tables(client)
        assert [r.action for r in deleted] == ["deleted"] * len(TABLES)
        assert [r.action for r in await delete_tables(client)] == ["absent"] * len(TABLES)


async def test_existing_tables_are_left_alone_and_ttl_is_switched_on(dynamo_settings):
    async with await open_test_client(dynamo_settings) as client:
        write = TABLES[0]
        await client.create_table(write.create_input(dynamo_settings.table_prefix))
        await client.put_item(client.tables.write, {"pk": {"S": "g#N#keep"}, "sk": {"S": "N"}})
        reports = await create_tables(client)
        assert [r.action for r in reports] == ["exists", "created", "created"]
        assert reports[0].ttl == f"{TTL_ATTRIBUTE} enabled"
        assert await client.get_item(client.tables.write, {"pk": {"S": "g#N#keep"}, "sk": {"S": "N"}}) is not None
        await delete_tables(client)


async def test_missing_tables_fail_the_start_up_check_in_one_line(dynamo_settings):
    async with await open_test_client(dynamo_settings) as client:
        await client.create_table(TABLES[0].create_input(dynamo_settings.table_prefix))
        with pytest.raises(Unavailable) as info:
            await client.check_tables()
        message = info.value.message
        assert "\n" not in message
        assert f"missing tables {client.tables.log}, {client.tables.read}" in message
        assert "python -m cli tables create" in message and dynamo_settings.endpoint in message
        await delete_tables(client)


async def test_an_unreachable_endpoint_fails_the_start_up_check_in_one_line():
    settings = DynamoDBSettings(endpoint=f"http://127.0.0.1:{free_port()}", region="us-east-1",
                                table_prefix="nothing-")
    async with await open_test_client(settings, client_options_for_tests(connect_timeout=1.0)) as client:
        with pytest.raises(Unavailable) as info:
            await client.check_tables()
    message = info.value.message
    assert "\n" not in message
    assert f"DynamoDB at {settings.endpoint} is unreachable" in message
    assert info.value.reason == "STORAGE_UNAVAILABLE"
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "botocore" not in message and "Could not connect" not in message


def _cli(*args: str, env_extra: dict[str, str]) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EDGEWISE_"))}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_cli_tables_create_check_delete(moto_server, dynamo_settings):
    prefix = dynamo_settings.table_prefix
    creds = {"AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS.access_key_id,
             "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS.secret_access_key}
    flags = ["--endpoint", moto_server.endpoint, "--region", "us-east-1", "--prefix", prefix]

    code, out, err = _cli("tables", "check", *flags, env_extra=creds)
    assert code == 1 and not out["ok"] and "missing tables" in out["error"]

    code, out, err = _cli("tables", "create", *flags, env_extra=creds)
    assert code == 0, err
    assert [t["action"] for t in out["tables"]] == ["created"] * 3
    assert err.splitlines() == [f"{prefix}write: created, ACTIVE, TTL expires_at enabled",
                                f"{prefix}log: created, ACTIVE", f"{prefix}read: created, ACTIVE"]

    # idempotent; the settings may come from the environment instead of flags
    code, out, err = _cli("tables", "create", env_extra={
        **creds, "EDGEWISE_DYNAMODB_ENDPOINT": moto_server.endpoint, "EDGEWISE_DYNAMODB_TABLE_PREFIX": prefix})
    assert code == 0, err
    assert [t["action"] for t in out["tables"]] == ["exists"] * 3 and len(err.splitlines()) == 3

    code, out, err = _cli("tables", "check", *flags, env_extra=creds)
    assert code == 0 and out["ok"], err

    code, out, err = _cli("tables", "delete", *flags, env_extra=creds)
    assert code == 2 and "--yes" in out["error"]
    code, out, err = _cli("tables", "delete", "--yes", *flags, env_extra=creds)
    assert code == 0 and [t["action"] for t in out["tables"]] == ["deleted"] * 3


def test_cli_tables_refuses_bad_flags_and_reports_missing_credentials(moto_server):
    code, out, err = _cli("tables", "create", "--endpoint", "localhost:1", "--region", "mars", env_extra={})
    assert code == 2 and "--endpoint" in out["error"] and "--region" in out["error"]
    code, out, err = _cli("tables", "check", "--endpoint", moto_server.endpoint,
                          env_extra={"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                                     "AWS_EC2_METADATA_DISABLED": "true"})
    assert code == 1 and "no usable AWS credentials" in out["error"]
    assert len(err.strip().splitlines()) == 1
