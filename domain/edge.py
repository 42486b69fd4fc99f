"""Edges: (source, type, target) is unique; stored once per direction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from domain.errors import AlreadyExists, NotFound, Reason, VersionConflict
from domain.events import Causation, DomainEvent, EdgeAdded, EdgeRemoved
from domain.schema import Schema
from domain.values import EDGE_RESOURCE_TYPE, EdgeKey, PropertyValue


class Direction(Enum):
    OUT = "OUT"
    IN = "IN"
    BOTH = "BOTH"  # only for traversals and path finding


def edge_not_found(key: EdgeKey) -> NotFound:
    return NotFound(f"edge {key.id} does not exist", resource_type=EDGE_RESOURCE_TYPE, resource_name=key.name,
                    reason=Reason.EDGE_NOT_FOUND)


def topology_changed_concurrently(graph: str, edge_type: str, current: int, expected: int) -> VersionConflict:
    """Another write moved an acyclic edge type's topology version since this one read it."""
    return VersionConflict(
        f"edges of acyclic type {edge_type!r} in graph {graph!r} changed concurrently (topology version "
        f"{current}, expected {expected}); nothing was written, retry",
        reason=Reason.TOPOLOGY_VERSION_CONFLICT,
        metadata={"graph": graph, "edge_type": edge_type, "current_version": str(current),
                  "expected_version": str(expected)})


def edge_already_exists(key: EdgeKey) -> AlreadyExists:
    return AlreadyExists(f"edge {key.id} already exists", resource_type=EDGE_RESOURCE_TYPE, resource_name=key.name,
                         reason=Reason.EDGE_ALREADY_EXISTS)


@dataclass
class Edge:
    graph: str
    source: str
    type: str
    target: str
    properties: dict[str, PropertyValue]
    create_time: datetime
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

    @property
    def key(self) -> EdgeKey:
        return EdgeKey(self.graph, self.source, self.type, self.target)

    @classmethod
    def create(cls, *, graph: str, source: str, type_name: str, target: str,
               properties: dict[str, PropertyValue], schema: Schema, causation: Causation) -> "Edge":
        """Validates type and properties only; endpoint, cardinality and cycle rules
        need stored state and are checked through domain.rules by the handler."""
        schema.edge_type(type_name)
        props = schema.validate_edge_properties(type_name, properties)
        edge = cls(graph=graph, source=source, type=type_name, target=target, properties=props,
                   create_time=causation.occurred_at)
        edge.events.append(EdgeAdded(**causation.event_fields(graph, aggregate_id=f"{source}/{type_name}/{target}",
                                                              aggregate_version=1),
                                     source=source, edge_type=type_name, target=target, properties=dict(props),
                                     create_time=causation.occurred_at))
        return edge

    def mirror(self, causation: Causation) -> "Edge":
        """The reverse edge a symmetric type keeps (invariant 4)."""
        return Edge(graph=self.graph, source=self.target, type=self.type, target=self.source,
                    properties=dict(self.properties), create_time=self.create_time,
                    events=[EdgeAdded(**causation.event_fields(self.graph, aggregate_id=self.key.reversed().id,
                                                                aggregate_version=1),
                                      source=self.target, edge_type=self.type, target=self.source,
                                      properties=dict(self.properties), create_time=self.create_time)])

    def remove(self, causation: Causation) -> None:
        self.events.append(EdgeRemoved(**causation.event_fields(self.graph, aggregate_id=self.key.id,
                                                                 aggregate_version=2),
                                       source=self.source, edge_type=self.type, target=self.target))
