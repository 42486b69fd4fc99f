"""The read table's item layouts (ADR 0012): attribute names and codecs shared by the read
model (``read_model``), the projection store (``projection``) and the lease (``lease``).

Keys come from ``keys`` (the table there); the attributes of each family:

================  ==========================================================================
item              attributes
================  ==========================================================================
node view         ``t`` type (absent on the tombstone of a node never seen alive), ``v``
                  version, ``del`` (BOOL, only on tombstones), ``p`` properties JSON
                  (absent when empty), ``ct`` / ``ut`` create / update time (epoch micros),
                  ``ec`` edge counts packed ``"type DIR count"`` lines (absent when none),
                  ``ix`` names of the properties that have an index entry, space-separated;
                  live views also carry the ``by_type`` attributes (``type_pk``, ``type_sk``)
node index entry  the ``by_value`` attributes only (``value_pk``, ``value_sk``)
edge view         ``cu`` create time (epoch micros), ``p`` properties JSON (absent when empty)
adjacency head    ``n`` list length, ``ids`` the newest ids newest first (space-separated),
                  ``cu`` their create times (packed big-endian int64, same order), ``nc`` number
                  of sealed chunks (1..nc exist, some maybe empty; absent when 0), ``sm`` the
                  newest create time in any sealed chunk (absent when nc = 0)
directory         ``cd`` per sealed chunk 1..nc: entries, oldest and newest create time (packed)
sealed chunk      ``ids`` / ``cu`` as in the head (absent when the chunk is empty)
schema view       ``v`` version, ``b`` the schema body (JSON)
checkpoint        ``pos`` the last position applied
projected shard   ``shard`` (the sort key, unescaped)
projector lease   ``owner`` the holding process, ``expires_at`` epoch milliseconds
================  ==========================================================================

An adjacency list is its entries (neighbour id, create time), newest first in the order the
projection applied them; the head holds the newest HEAD_MIN..HEAD_MAX of them, the rest sit
in sealed chunks (higher number = newer, each ~HEAD_MIN entries when sealed).
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Iterable, Mapping, Sequence

from domain.edge import Direction

from infrastructure.persistence.dynamodb.attributes import AttributeValue, Item

# node view
NODE_TYPE = "t"
VERSION = "v"
DELETED = "del"
PROPERTIES = "p"
CREATE_US = "ct"
UPDATE_US = "ut"
EDGE_COUNTS = "ec"
INDEXED = "ix"
# edge view
EDGE_CREATE_US = "cu"
# adjacency head / chunk / directory
LIST_TOTAL = "n"
LIST_IDS = "ids"
LIST_TIMES = "cu"
SEALED_CHUNKS = "nc"
SEALED_MAX_US = "sm"
DIRECTORY = "cd"
# schema view
SCHEMA_VERSION = "v"
SCHEMA_BODY = "b"
# checkpoint, projected shard, lease
POSITION = "pos"
SHARD = "shard"
LEASE_OWNER = "owner"
LEASE_EXPIRES_AT = "expires_at"

# A head holds at least the newest HEAD_MIN entries (every per-node limit up to 1,000 plus one
# to tell "more") once the list is that long, and is sealed past HEAD_MAX: its oldest part
# becomes a chunk. Worst case (2,002 ids of 128 characters) a head is ~275 KB, typically
# (ids of ~15 characters) ~48 KB; a sealed chunk is about half of that.
HEAD_MIN = 1001
HEAD_MAX = 2 * HEAD_MIN
ID_SEPARATOR = " "

NODE_VIEW_BASIC = (NODE_TYPE, VERSION, DELETED, CREATE_US, UPDATE_US, EDGE_COUNTS)

_DIRECTORY_ENTRY = struct.Struct(">Iqq")
_LITTLE_ENDIAN = sys.byteorder == "little"


def pack_times(values: Sequence[int]) -> bytes:
    """Big-endian int64s (``array`` runs in C: a 2,000-entry head packs in microseconds)."""
    packed = array("q", values)
    if _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def unpack_times(data: bytes) -> list[int]:
    unpacked = array("q")
    unpacked.frombytes(data)
    if _LITTLE_ENDIAN:
        unpacked.byteswap()
    return unpacked.tolist()


def pack_directory(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """(entries, oldest create time, newest create time) per sealed chunk, from chunk 1."""
    return b"".join(_DIRECTORY_ENTRY.pack(*entry) for entry in entries)


def unpack_directory(data: bytes) -> list[tuple[int, int, int]]:
    return [(int(a), int(b), int(c)) for a, b, c in _DIRECTORY_ENTRY.iter_unpack(data)]


def pack_counts(counts: Mapping[tuple[str, Direction], int]) -> str:
    return "\n".join(f"{t} {d.value} {c}" for (t, d), c in sorted(counts.items(), key=lambda kv: (kv[0][0],
                                                                                                     kv[0][1].value))
                     if c > 0)



def list_entries(item: Mapping[str, AttributeValue]) -> tuple[list[str], list[int]]:
    """(ids, create times) of a head or chunk item, newest first."""
    ids = item.get(LIST_IDS)
    if ids is None or not ids.get("S"):
        return [], []
    times = item.get(LIST_TIMES)
    return ids["S"].split(ID_SEPARATOR), unpack_times(times["B"]) if times is not None else []


def list_ids(item: Mapping[str, AttributeValue]) -> list[str]:
    ids = item.get(LIST_IDS)
    if ids is None or not ids.get("S"):
        return []
    return ids["S"].split(ID_SEPARATOR)


def optional_int(item: Mapping[str, AttributeValue], name: str, default: int = 0) -> int:
    value = item.get(name)
    return int(value["N"]) if value is not None and "N" in value else default


def optional_str(item: Mapping[str, AttributeValue], name: str, default: str = "") -> str:
    value = item.get(name)
    return value["S"] if value is not None and "S" in value else default


def item_size(item: Item) -> int:
    """An estimate of the item's size in bytes (names plus values), for the 4 MB bound of a
    transaction: strings are counted as characters, which is exact for ASCII."""
    total = 0
    for name, value in item.items():
        total += len(name) + _value_size(value)
    return total


def _value_size(value: AttributeValue) -> int:
    if "S" in value:
        return len(value["S"])
    if "B" in value:
        return len(value["B"])
    if "N" in value:
        return len(value["N"])
    if "L" in value:
        return 3 + sum(_value_size(v) for v in value["L"])
    if "M" in value:
        return 3 + sum(len(k) + _value_size(v) for k, v in value["M"].items())
    return 1
