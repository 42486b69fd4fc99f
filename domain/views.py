"""Read-side views: what queries return (never aggregates).

Plain frozen dataclasses shaped for the transport converters (duck-typed on
``graph id type properties version create_time update_time edge_counts`` for
nodes and ``graph source type target properties create_time`` for edges). They
live in the domain so that read-model adapters (infrastructure) and the query
application can share them without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from domain.edge import Direction
from domain.node import etag_for
from domain.values import NodeRef, PropertyValue


@dataclass(frozen=True)
class NodeView:
    graph: str
    id: str
    type: str
    properties: dict[str, PropertyValue]
    version: int
    create_time: datetime
    update_time: datetime
    edge_counts: dict[tuple[str, Direction], int] = field(default_factory=dict)
    # Encodings of this (immutable) view, memoised by whoever sends it: a view served from
    # the read cache is encoded once, not once per response. Not part of the value.
    encoded: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return NodeRef(self.graph, self.id).name

    @property
    def etag(self) -> str:
        return etag_for(self.version)


@dataclass(frozen=True)
class EdgeView:
    graph: str
    source: str
    type: str
    target: str
    properties: dict[str, PropertyValue]
    create_time: datetime | None  # None where a read returned the edge's identity only

    def neighbour_of(self, node_id: str) -> str:
        return self.target if self.source == node_id else self.source


@dataclass(frozen=True)
class AdjacencyKey:
    """One adjacency list: a node's edges in one direction, of one type (None = every type)."""

    node: str
    direction: Direction
    edge_type: str | None = None


class NeighbourIds(NamedTuple):
    """The newest neighbour ids of one adjacency list (newest first) and the list's length."""

    ids: list[str]
    total: int


class Detail(Enum):
    """How much of a node a read returns (AIP-157 views)."""

    NAMES = "NAMES"  # the id only: no node read at all
    BASIC = "BASIC"  # type, version, times and edge counts; no properties
    FULL = "FULL"    # properties too


class AccessKind(Enum):
    UNIQUE = "UNIQUE"
    INDEX_EQ = "INDEX_EQ"
    INDEX_RANGE = "INDEX_RANGE"
    TYPE_SCAN = "TYPE_SCAN"


@dataclass(frozen=True)
class NodeAccess:
    """How a node listing reaches its candidates (values in ``domain.values.sortable`` form).

    Rows come back in the access path's natural order: ``(id,)`` for TYPE_SCAN,
    UNIQUE and INDEX_EQ; ``(value, id)`` for INDEX_RANGE (both descending when
    ``descending``). A scan's ``after`` is the key of the last row seen.
    """

    kind: AccessKind
    node_type: str
    property: str | None = None
    value: object = None
    lower: object = None
    lower_inclusive: bool = True
    upper: object = None
    upper_inclusive: bool = True
    descending: bool = False
