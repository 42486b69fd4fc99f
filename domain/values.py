"""Value objects: identifiers, property kinds and property values."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Union

from domain.errors import FieldViolation, Reason, ValidationFailed

# Identifier syntax, declared once for every layer (the transport's name parsing and
# rule table use these too). Always matched whole (``fullmatch``).
GRAPH_ID_SYNTAX = r"[a-z][a-z0-9-]{0,62}"
NODE_ID_SYNTAX = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
TYPE_NAME_SYNTAX = r"[A-Za-z][A-Za-z0-9_]{0,63}"
PROPERTY_NAME_SYNTAX = r"[a-z][a-z0-9_]{0,63}"

GRAPH_ID_PATTERN = re.compile(GRAPH_ID_SYNTAX)
NODE_ID_PATTERN = re.compile(NODE_ID_SYNTAX)
TYPE_NAME_PATTERN = re.compile(TYPE_NAME_SYNTAX)
PROPERTY_NAME_PATTERN = re.compile(PROPERTY_NAME_SYNTAX)

# google.rpc.ResourceInfo.resource_type of each resource, shared by every layer's errors.
GRAPH_RESOURCE_TYPE = "edgewise.graph.v1/Graph"
NODE_RESOURCE_TYPE = "edgewise.graph.v1/Node"
EDGE_RESOURCE_TYPE = "edgewise.graph.v1/Edge"

MAX_NODE_PROPERTIES_BYTES = 64 * 1024
MAX_EDGE_PROPERTIES_BYTES = 4 * 1024

PropertyValue = Union[str, int, float, bool, datetime]


class PropertyKind(Enum):
    STRING = "STRING"
    INT = "INT"
    DOUBLE = "DOUBLE"
    BOOL = "BOOL"
    TIMESTAMP = "TIMESTAMP"

    def accepts(self, value: object) -> bool:
        if self is PropertyKind.STRING:
            return isinstance(value, str)
        if self is PropertyKind.INT:
            return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        if self is PropertyKind.DOUBLE:
            # NaN is refused: it equals nothing (unique claims, filters, indexes, ordering all break on
            # it) and DynamoDB numbers cannot hold it. +-inf are ordinary, ordered values.
            if isinstance(value, float):
                return value == value
            return isinstance(value, int) and not isinstance(value, bool)
        if self is PropertyKind.BOOL:
            return isinstance(value, bool)
        return isinstance(value, datetime) and value.tzinfo is not None

    def normalise(self, value: PropertyValue) -> PropertyValue:
        """The canonical in-memory form (doubles are floats, timestamps UTC)."""
        if self is PropertyKind.DOUBLE:
            # + 0.0 folds -0.0 into 0.0: equal values must claim the same unique slot
            return float(value) + 0.0  # type: ignore[arg-type]
        if self is PropertyKind.TIMESTAMP:
            assert isinstance(value, datetime)
            return value.astimezone(timezone.utc)
        return value


def _check(pattern: re.Pattern[str], value: str, field: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationFailed(
            f"{field}: {value!r} is not a valid {what}",
            reason=Reason.INVALID_NAME,
            violations=[FieldViolation(field, f"must be a {what} matching ^{pattern.pattern}$")],
        )
    return value


def check_graph_id(value: str, field: str = "graph") -> str:
    return _check(GRAPH_ID_PATTERN, value, field, "graph id")


def check_node_id(value: str, field: str = "node_id") -> str:
    return _check(NODE_ID_PATTERN, value, field, "node id")


def check_type_name(value: str, field: str = "type") -> str:
    return _check(TYPE_NAME_PATTERN, value, field, "type name")


def check_property_name(value: str, field: str = "property") -> str:
    return _check(PROPERTY_NAME_PATTERN, value, field, "property name")


@dataclass(frozen=True, order=True)
class NodeRef:
    """A node's identity inside a graph."""

    graph: str
    id: str

    @property
    def name(self) -> str:
        return f"graphs/{self.graph}/nodes/{self.id}"


@dataclass(frozen=True, order=True)
class EdgeKey:
    """(source, type, target) is unique within a graph."""

    graph: str
    source: str
    type: str
    target: str

    @property
    def id(self) -> str:
        return f"{self.source}/{self.type}/{self.target}"

    @property
    def name(self) -> str:
        return f"graphs/{self.graph}/edges/{self.id}"

    def reversed(self) -> "EdgeKey":
        return EdgeKey(self.graph, self.target, self.type, self.source)


# --- property (de)serialisation: a JSON form that keeps kinds apart -----------------

def encode_value(value: PropertyValue) -> object:
    if isinstance(value, datetime):
        return {"$ts": value.astimezone(timezone.utc).isoformat()}
    if isinstance(value, float):
        return {"$f": repr(value)} if value != value or value in (float("inf"), float("-inf")) else value
    return value


def decode_value(raw: object) -> PropertyValue:
    if isinstance(raw, dict):
        if "$ts" in raw:
            return datetime.fromisoformat(raw["$ts"])
        if "$f" in raw:
            return float(raw["$f"])
        raise ValueError(f"unknown encoded property value {raw!r}")
    if isinstance(raw, (str, int, float, bool)):
        return raw
    raise ValueError(f"unknown encoded property value {raw!r}")


def encode_properties(properties: dict[str, PropertyValue]) -> dict[str, object]:
    return {k: encode_value(v) for k, v in sorted(properties.items())}


def decode_properties(raw: dict[str, object]) -> dict[str, PropertyValue]:
    return {k: decode_value(v) for k, v in raw.items()}


def properties_json(properties: dict[str, PropertyValue]) -> str:
    if not properties:  # most edges: skip the encoder
        return "{}"
    return json.dumps(encode_properties(properties), separators=(",", ":"), sort_keys=True)


def properties_from_json(text: str) -> dict[str, PropertyValue]:
    if text == "{}":
        return {}
    return decode_properties(json.loads(text))


def properties_size(properties: dict[str, PropertyValue]) -> int:
    return len(properties_json(properties).encode("utf-8"))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def epoch_micros(value: datetime) -> int:
    """Exact microseconds since the epoch (float ``timestamp()`` can be off by one)."""
    return (value - _EPOCH) // _MICROSECOND


def from_epoch_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def sortable(value: PropertyValue) -> object:
    """A value that orders like the property (timestamps as epoch micros)."""
    if isinstance(value, datetime):
        return epoch_micros(value)
    if isinstance(value, bool):
        return int(value)
    return value
