"""Resource names and identifier formats, declared once.

``graphs/{graph}``, ``graphs/{graph}/schema``, ``graphs/{graph}/nodes/{node}``.
Parse failures raise ValidationFailed(reason=INVALID_NAME) naming the field.
"""

from __future__ import annotations

import re

from domain.errors import Reason, ValidationFailed
from domain.values import GRAPH_ID_SYNTAX, NODE_ID_SYNTAX, PROPERTY_NAME_SYNTAX, TYPE_NAME_SYNTAX, NodeRef

# The identifier formats (declared in the domain), public here: validation quotes them.
GRAPH_ID_PATTERN = GRAPH_ID_SYNTAX
NODE_ID_PATTERN = NODE_ID_SYNTAX
PROPERTY_NAME_PATTERN = PROPERTY_NAME_SYNTAX
TYPE_NAME_PATTERN = TYPE_NAME_SYNTAX

# \Z, not $: "$" also matches before a trailing newline, so "graphs/g\n" would parse as "graphs/g".
GRAPH_ID_RE = re.compile(rf"^{GRAPH_ID_PATTERN}\Z")
NODE_ID_RE = re.compile(rf"^{NODE_ID_PATTERN}\Z")
TYPE_NAME_RE = re.compile(rf"^{TYPE_NAME_PATTERN}\Z")
PROPERTY_NAME_RE = re.compile(rf"^{PROPERTY_NAME_PATTERN}\Z")
GRAPH_NAME_RE = re.compile(rf"^graphs/({GRAPH_ID_PATTERN})\Z")
SCHEMA_NAME_RE = re.compile(rf"^graphs/({GRAPH_ID_PATTERN})/schema\Z")
NODE_NAME_RE = re.compile(rf"^graphs/({GRAPH_ID_PATTERN})/nodes/({NODE_ID_PATTERN})\Z")
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z",
                      re.IGNORECASE)

GRAPH_NAME_FORMAT = "graphs/{graph} with graph matching ^" + GRAPH_ID_PATTERN + "$"
NODE_NAME_FORMAT = ("graphs/{graph}/nodes/{node} with node matching ^" + NODE_ID_PATTERN + "$")


def _invalid(field: str, description: str) -> ValidationFailed:
    return ValidationFailed.of(field, description, reason=Reason.INVALID_NAME)


def is_graph_id(value: str) -> bool:
    return bool(GRAPH_ID_RE.match(value))


def is_node_id(value: str) -> bool:
    return bool(NODE_ID_RE.match(value))


def is_type_name(value: str) -> bool:
    return bool(TYPE_NAME_RE.match(value))


def is_property_name(value: str) -> bool:
    return bool(PROPERTY_NAME_RE.match(value))


def is_uuid4(value: str) -> bool:
    return bool(UUID4_RE.match(value))


def graph_name(graph: str) -> str:
    return f"graphs/{graph}"


def schema_name(graph: str) -> str:
    return f"graphs/{graph}/schema"


def node_name(graph: str, node_id: str) -> str:
    return NodeRef(graph, node_id).name


def parse_graph_name(name: str, *, field: str = "graph") -> str:
    """``graphs/{graph}`` → graph id."""
    match = GRAPH_NAME_RE.match(name or "")
    if not match:
        raise _invalid(field, f"must be {GRAPH_NAME_FORMAT}, got {name!r}")
    return match.group(1)


def parse_schema_name(name: str, *, field: str = "name") -> str:
    """``graphs/{graph}/schema`` → graph id."""
    match = SCHEMA_NAME_RE.match(name or "")
    if not match:
        raise _invalid(field, f"must be graphs/{{graph}}/schema, got {name!r}")
    return match.group(1)


def parse_node_name(name: str, *, field: str = "name") -> tuple[str, str]:
    """``graphs/{graph}/nodes/{node}`` → (graph id, node id)."""
    match = NODE_NAME_RE.match(name or "")
    if not match:
        raise _invalid(field, f"must be {NODE_NAME_FORMAT}, got {name!r}")
    return match.group(1), match.group(2)


def parse_node_name_in(graph: str, name: str, *, field: str = "name") -> str:
    """``graphs/{graph}/nodes/{node}`` → node id, where the node must live in ``graph``."""
    node_graph, node_id = parse_node_name(name, field=field)
    if node_graph != graph:
        raise ValidationFailed.of(field, f"{name!r} is not in graphs/{graph}", reason=Reason.INVALID_ARGUMENT)
    return node_id
