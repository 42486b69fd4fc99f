"""Items in DynamoDB's low-level wire format, with small typed helpers.

Every Edgewise module talks to DynamoDB through the low-level client, so items are
``dict[str, AttributeValue]`` exactly as the API sends them: ``{"S": "abc"}``,
``{"N": "42"}``, ``{"B": b"..."}``, ``{"BOOL": True}``, ``{"L": [...]}``, ``{"M": {...}}``.
No TypeSerializer / TypeDeserializer (and no ``Decimal``): fewer allocations per item,
and numbers stay exact strings until a getter parses them.

Numbers: DynamoDB's N holds up to 38 significant digits and no NaN or infinity, so
``num`` refuses those; store property maps as the domain's JSON text
(``domain.values.properties_json``) in an S attribute instead of one N per value.
"""

from __future__ import annotations

import math
from typing import Mapping, TypedDict


class AttributeValue(TypedDict, total=False):
    """One attribute value in the wire format; exactly one key is set."""

    S: str
    N: str
    B: bytes
    BOOL: bool
    NULL: bool
    SS: list[str]
    NS: list[str]
    BS: list[bytes]
    L: list["AttributeValue"]
    M: dict[str, "AttributeValue"]


Item = dict[str, AttributeValue]
# A primary key: {"pk": {"S": ...}, "sk": {"S": ...}} (or a GSI's keys plus the table's).
Key = dict[str, AttributeValue]


def string(value: str) -> AttributeValue:
    return {"S": value}


def num(value: int | float) -> AttributeValue:
    """An N value. Refuses bools (a bool is an int in Python), NaN and infinities."""
    if isinstance(value, bool):
        raise TypeError("num() takes an int or a float, not a bool: use boolean()")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"DynamoDB numbers cannot hold {value!r}")
    return {"N": str(value) if isinstance(value, int) else repr(value)}


def binary(value: bytes) -> AttributeValue:
    return {"B": value}


def boolean(value: bool) -> AttributeValue:
    return {"BOOL": value}


def strings(values: list[str]) -> AttributeValue:
    """A string list (L of S: ordered, duplicates kept; an SS set would lose the order)."""
    return {"L": [{"S": v} for v in values]}


def get_str(item: Mapping[str, AttributeValue], name: str) -> str:
    """The S attribute ``name``; KeyError when absent, TypeError when not an S."""
    value = item[name]
    if "S" not in value:
        raise TypeError(f"attribute {name!r} is not a string: {sorted(value)}")
    return value["S"]


def get_int(item: Mapping[str, AttributeValue], name: str) -> int:
    value = item[name]
    if "N" not in value:
        raise TypeError(f"attribute {name!r} is not a number: {sorted(value)}")
    return int(value["N"])


def get_float(item: Mapping[str, AttributeValue], name: str) -> float:
    value = item[name]
    if "N" not in value:
        raise TypeError(f"attribute {name!r} is not a number: {sorted(value)}")
    return float(value["N"])


def get_bool(item: Mapping[str, AttributeValue], name: str) -> bool:
    value = item[name]
    if "BOOL" not in value:
        raise TypeError(f"attribute {name!r} is not a bool: {sorted(value)}")
    return value["BOOL"]


def get_bytes(item: Mapping[str, AttributeValue], name: str) -> bytes:
    value = item[name]
    if "B" not in value:
        raise TypeError(f"attribute {name!r} is not binary: {sorted(value)}")
    return value["B"]


def get_strings(item: Mapping[str, AttributeValue], name: str) -> list[str]:
    """An L of S written by ``strings``."""
    value = item[name]
    if "L" not in value:
        raise TypeError(f"attribute {name!r} is not a list: {sorted(value)}")
    return [element["S"] for element in value["L"]]


def key_of(item: Mapping[str, AttributeValue]) -> Key:
    """The table key (pk, sk) of an item of any Edgewise table."""
    return {"pk": item["pk"], "sk": item["sk"]}


def key_tuple(key: Mapping[str, AttributeValue]) -> tuple[str, str]:
    """(pk, sk) as plain strings: a hashable identity for dedupe and lookups."""
    return get_str(key, "pk"), get_str(key, "sk")
