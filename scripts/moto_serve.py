"""The process ``scripts/moto_server.MotoServer`` runs: ``moto.server`` with two fixes
that keep moto's answers and change only what they cost (moto 5.2).

1. ``transact_write_items`` backs up every table a transaction touches with a
   ``copy.deepcopy`` of the whole table — once per transaction item — so that it can roll
   back. A 98-item projection transaction on a read table of 10^4 items copied 10^6 items
   (~2 s a transaction): the DynamoDB read-model suites spent minutes there. Here the backup
   is per item instead: before the transaction, the current version of each item it names
   is saved; if moto's transaction raises (cancelled, or refused as a whole), those items
   are put back (or deleted, if they did not exist) before the error goes on.
2. A Query on a table's own key (no index) sorts and walks every item of the table to find
   one partition's: 0.3 s a Query on a 10^4-item table, where DynamoDB reads the partition
   only. Here it gets that partition's items (the dict moto keeps them in) — the same items
   in the same order. Index queries are unchanged (moto keeps no index to read).

Usage (what MotoServer does): ``python scripts/moto_serve.py -H 127.0.0.1 -p PORT``.
"""

from __future__ import annotations

import copy
import json
import sys
import threading
from typing import Any


def patch_transactions() -> None:
    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    real_copy = getattr(models, "copy")  # the module moto's models call copy.deepcopy through

    class _NoTableCopy:
        """``copy`` for moto's dynamodb models: a Table is not copied (the per-item backup
        below replaces the whole-table one); anything else is, as before."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            if isinstance(value, Table):
                return value
            return real_copy.deepcopy(value, memo)

        def __getattr__(self, name: str) -> Any:
            return getattr(real_copy, name)

    setattr(models, "copy", _NoTableCopy())
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        seen: set[tuple[str, str]] = set()
        for entry in transact_items:
            if len(entry) != 1:
                continue
            op = next(iter(entry.values()))
            try:
                table_name = op["TableName"]
                table = self.get_table(table_name)
                if "Item" in op:
                    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op["Item"][table.range_key_attr]
                else:
                    key = op["Key"]
                identity = (table_name, json.dumps(key, sort_keys=True, default=str))
                if identity in seen:
                    continue
                seen.add(identity)
                current = self.get_item(table_name, key)
            except Exception:  # a malformed item: moto's own code reports it
                continue
            saved.append((table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
        try:
            original(self, transact_items)
        except BaseException:
            for table_name, key, attributes in reversed(saved):
                if attributes is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def patch_queries() -> None:
    from moto.dynamodb.models.table import Table

    local = threading.local()  # the partition the current thread's base-table Query reads
    all_items = Table.all_items
    query = Table.query

    def partition_items(self: Any) -> Any:
        wanted = getattr(local, "partition", None)
        if wanted is None or wanted[0] is not self:
            return all_items(self)
        found = self.items.get(wanted[1])
        if found is None:
            return []
        items = list(found.values()) if self.range_key_attr else [found]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    def partition_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("index_name") is not None or len(args) > 6 and args[6] is not None or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        local.partition = (self, hash_key)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            local.partition = None

    Table.all_items = partition_items  # type: ignore[method-assign]
    Table.query = partition_query  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    patch_transactions()
    patch_queries()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
