"""The DynamoDB tables of Edgewise, defined once (DESIGN §5, ADR 0009).

Plain data, standard library only: ``python -m cli tables create``, the test fixtures
(tests/dynamodb_support.py), scripts/moto_server.py and the adapters' names all come
from here. ``python -m deploy.dynamodb.tables --prefix P`` prints the CreateTable
inputs as JSON (for ``aws dynamodb create-table --cli-input-json`` or IaC tools).

Three tables, every one keyed by two strings ``pk`` (HASH) and ``sk`` (RANGE), on-demand
(PAY_PER_REQUEST) billing, no local secondary indexes (so no 10 GB item-collection
limit). The key strings are spelled only in infrastructure/persistence/dynamodb/keys.py.

- ``{prefix}write`` — the command side's single-table write model: node items, out-edge
  items under the source, in-edge mirrors under the target, per-node edge counters,
  per-type counters, unique claims, schema versions, idempotency records (TTL on
  ``expires_at``), cascade jobs (listed through the sparse ``pending`` index) and
  per-(graph, edge type) topology versions for acyclic types.
- ``{prefix}log`` — the event log (the transactional outbox): per shard a gap-free
  sequence item and the event items, plus the shard registry. Written in the command's
  own TransactWriteItems (transactions span tables); read by the projectors and
  WatchEvents. Its own table so the query side needs no access to the write model.
- ``{prefix}read`` — the query side's read model, written only by the projectors: node
  views, node index entries, edge views, adjacency heads and chunks, schema views,
  projection checkpoints and projector leases; ``by_type`` lists the live nodes of a type
  (write-sharded buckets) and ``by_value`` is the overloaded index of indexed property
  values (order-preserving encoding). Both are KEYS_ONLY: a node-view update that keeps
  its keys (edge counts, properties) writes no index entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Literal, Sequence

# Every table: two string key attributes.
PK = "pk"
SK = "sk"

WRITE_TABLE = "write"
READ_TABLE = "read"
LOG_TABLE = "log"

# The write model's TTL attribute (epoch seconds): idempotency records (kept >= 24 h).
TTL_ATTRIBUTE = "expires_at"

# write table: cascade jobs waiting for the background worker, oldest first (sparse).
PENDING_INDEX = "pending"
PENDING_PK = "pending_pk"
PENDING_SK = "pending_sk"

# read table: live nodes of a type, in write-sharded buckets, node id order (sparse).
BY_TYPE_INDEX = "by_type"
BY_TYPE_PK = "type_pk"
BY_TYPE_SK = "type_sk"

# read table: indexed property values of a (node type, property), bucketed, value order (sparse).
BY_VALUE_INDEX = "by_value"
BY_VALUE_PK = "value_pk"
BY_VALUE_SK = "value_sk"

Projection = Literal["KEYS_ONLY", "INCLUDE", "ALL"]


@dataclass(frozen=True)
class Index:
    """A global secondary index with two string key attributes."""

    name: str
    pk: str
    sk: str
    projection: Projection = "KEYS_ONLY"
    non_key_attributes: tuple[str, ...] = ()

    def create_input(self) -> dict[str, Any]:
        projection: dict[str, Any] = {"ProjectionType": self.projection}
        if self.projection == "INCLUDE":
            projection["NonKeyAttributes"] = list(self.non_key_attributes)
        return {
            "IndexName": self.name,
            "KeySchema": [{"AttributeName": self.pk, "KeyType": "HASH"},
                          {"AttributeName": self.sk, "KeyType": "RANGE"}],
            "Projection": projection,
        }


@dataclass(frozen=True)
class Table:
    """One table: its name suffix (the full name is ``prefix + suffix``), its global
    secondary indexes and its TTL attribute, if any."""

    suffix: str
    purpose: str
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None

    def name(self, prefix: str) -> str:
        return prefix + self.suffix

    def create_input(self, prefix: str) -> dict[str, Any]:
        """The CreateTable request (low-level API shape). TTL is a separate call
        (UpdateTimeToLive) once the table is ACTIVE."""
        attributes = [PK, SK] + [a for index in self.indexes for a in (index.pk, index.sk)]
        request: dict[str, Any] = {
            "TableName": self.name(prefix),
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"}
                                     for a in dict.fromkeys(attributes)],
            "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"},
                          {"AttributeName": SK, "KeyType": "RANGE"}],
            "BillingMode": "PAY_PER_REQUEST",
            "Tags": [{"Key": "app", "Value": "edgewise"}, {"Key": "edgewise-table", "Value": self.suffix}],
        }
        if self.indexes:
            request["GlobalSecondaryIndexes"] = [index.create_input() for index in self.indexes]
        return request


WRITE = Table(
    suffix=WRITE_TABLE,
    purpose="write model: nodes, edges and their mirrors, counters, unique claims, schema versions, "
            "idempotency records, cascade jobs, topology versions",
    indexes=(Index(PENDING_INDEX, PENDING_PK, PENDING_SK),),
    ttl_attribute=TTL_ATTRIBUTE,
)
LOG = Table(
    suffix=LOG_TABLE,
    purpose="event log: per-shard sequence items and event items, the shard registry",
)
READ = Table(
    suffix=READ_TABLE,
    purpose="read model: node views and index entries, edge views, adjacency heads and chunks, "
            "schema views, projection checkpoints, projector leases",
    indexes=(Index(BY_TYPE_INDEX, BY_TYPE_PK, BY_TYPE_SK),
             Index(BY_VALUE_INDEX, BY_VALUE_PK, BY_VALUE_SK)),
)

# In creation order.
TABLES: tuple[Table, ...] = (WRITE, LOG, READ)

# DynamoDB table names: 3-255 characters of [A-Za-z0-9_.-].
TABLE_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
MAX_PREFIX_LENGTH = 255 - max(len(t.suffix) for t in TABLES)


def table_names(prefix: str) -> dict[str, str]:
    """``{"write": prefix + "write", "log": ..., "read": ...}``."""
    return {table.suffix: table.name(prefix) for table in TABLES}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.dynamodb.tables",
                                     description="Print the CreateTable inputs (JSON) of Edgewise's tables.")
    parser.add_argument("--prefix", default="edgewise-", help="table name prefix (default: %(default)s)")
    args = parser.parse_args(argv)
    print(json.dumps([{"create_table": t.create_input(args.prefix),
                       "time_to_live": ({"AttributeName": t.ttl_attribute, "Enabled": True}
                                        if t.ttl_attribute else None)} for t in TABLES], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
