"""deploy/dynamodb/tables.py: CreateTable inputs that DynamoDB accepts, defined once."""

import json
import subprocess
import sys
from pathlib import Path

from deploy.dynamodb import tables as t
from infrastructure.persistence.dynamodb.client import TableNames

ROOT = Path(__file__).resolve().parents[3]


def test_every_key_attribute_is_a_declared_string_and_nothing_else_is_declared():
    for table in t.TABLES:
        request = table.create_input("p-")
        declared = {a["AttributeName"]: a["AttributeType"] for a in request["AttributeDefinitions"]}
        used = {t.PK, t.SK} | {a for i in table.indexes for a in (i.pk, i.sk)}
        assert declared == {a: "S" for a in used}  # DynamoDB refuses unused definitions
        assert request["BillingMode"] == "PAY_PER_REQUEST"
        assert "LocalSecondaryIndexes" not in request
        assert [k["KeyType"] for k in request["KeySchema"]] == ["HASH", "RANGE"]
        for index in request.get("GlobalSecondaryIndexes", []):
            assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_names_ttl_and_indexes():
    assert t.table_names("edgewise-") == {"write": "edgewise-write", "log": "edgewise-log", "read": "edgewise-read"}
    assert TableNames.for_prefix("x.") == TableNames(write="x.write", read="x.read", log="x.log")
    assert [table.ttl_attribute for table in t.TABLES] == [t.TTL_ATTRIBUTE, None, None]
    assert [i.name for i in t.WRITE.indexes] == [t.PENDING_INDEX]
    assert [i.name for i in t.READ.indexes] == [t.BY_TYPE_INDEX, t.BY_VALUE_INDEX]
    assert t.MAX_PREFIX_LENGTH == 250


def test_the_module_prints_the_inputs_as_json():
    proc = subprocess.run([sys.executable, "-m", "deploy.dynamodb.tables", "--prefix", "prod-"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert [p["create_table"]["TableName"] for p in printed] == ["prod-write", "prod-log", "prod-read"]
    assert printed[0]["time_to_live"] == {"AttributeName": "expires_at", "Enabled": True}
