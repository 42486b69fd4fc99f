"""Domain events: past tense, immutable, plain dataclasses.

Every event carries its id, graph, aggregate id and version, when it occurred, the
request id and W3C trace context (``traceparent``) of the command that caused it.
``event_to_dict`` / ``event_from_dict`` give the JSON-able form the event log stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Callable

from domain.values import PropertyValue, decode_properties, encode_properties


@dataclass(frozen=True)
class DomainEvent:
    event_id: str
    graph: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: datetime
    request_id: str = ""
    trace_context: str = ""  # W3C traceparent of the causing command

    @property
    def type(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class NodeCreated(DomainEvent):
    node_type: str = ""
    properties: dict[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeUpdated(DomainEvent):
    node_type: str = ""
    properties: dict[str, PropertyValue] = field(default_factory=dict)  # the full new property set
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeDeleted(DomainEvent):
    node_type: str = ""


@dataclass(frozen=True)
class EdgeAdded(DomainEvent):
    source: str = ""
    edge_type: str = ""
    target: str = ""
    properties: dict[str, PropertyValue] = field(default_factory=dict)
    create_time: datetime | None = None


@dataclass(frozen=True)
class EdgeRemoved(DomainEvent):
    source: str = ""
    edge_type: str = ""
    target: str = ""


@dataclass(frozen=True)
class SchemaApplied(DomainEvent):
    schema: dict[str, Any] = field(default_factory=dict)  # domain.schema.schema_to_dict form


EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.__name__: cls for cls in (NodeCreated, NodeUpdated, NodeDeleted, EdgeAdded, EdgeRemoved, SchemaApplied)
}


@dataclass(frozen=True)
class Causation:
    """What caused a change: stamped onto every event an aggregate records."""

    occurred_at: datetime
    new_event_id: Callable[[], str]
    request_id: str = ""
    trace_context: str = ""

    def event_fields(self, graph: str, *, aggregate_id: str, aggregate_version: int) -> dict[str, Any]:
        return {
            "event_id": self.new_event_id(),
            "graph": graph,
            "aggregate_id": aggregate_id,
            "aggregate_version": aggregate_version,
            "occurred_at": self.occurred_at,
            "request_id": self.request_id,
            "trace_context": self.trace_context,
        }


def event_to_dict(event: DomainEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"type": event.type}
    for f in fields(event):
        value = getattr(event, f.name)
        if f.name == "properties":
            value = encode_properties(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # per event class (``fields`` is slow for the projector's loop)


def event_from_dict(data: dict[str, Any]) -> DomainEvent:
    cls = EVENT_TYPES[data["type"]]
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        value = data[name]
        if name == "properties":
            value = decode_properties(value)
        elif name in ("occurred_at", "create_time") and value is not None:
            value = datetime.fromisoformat(value)
        elif name == "changed":
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
