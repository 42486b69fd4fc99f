"""Request validation as one declarative rule table keyed by full method name.

Why a table and not protovalidate: see docs/adr/0002-request-validation-rule-table.md.
The table covers every RPC of both services (a test enforces it). Rules check the
*shape* of a request (required fields, resource-name formats, limits); the domain
still checks meaning (types exist, properties match the schema, ...).

A failed request raises ``ValidationFailed`` listing every violation; its reason is
the reason of the first violation (INVALID_NAME, INVALID_ARGUMENT, BATCH_TOO_LARGE).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from domain.errors import FieldViolation, Reason, ValidationFailed
from infrastructure.grpc import names

COMMAND_SERVICE = "edgewise.graph.v1.GraphCommandService"
QUERY_SERVICE = "edgewise.graph.v1.GraphQueryService"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_BATCH_OPERATIONS = 100
MAX_BATCH_GET_NAMES = 1000
MAX_TRAVERSAL_STEPS = 10  # as query_service.app.queries.traverse.MAX_STEPS
MAX_FILTER_LENGTH = 4096

# Enum numbers from resources.proto (kept here so this module needs no generated code).
DIRECTION_UNSPECIFIED, DIRECTION_OUT, DIRECTION_IN, DIRECTION_BOTH = 0, 1, 2, 3


def effective_page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE,
                        maximum: int = MAX_PAGE_SIZE) -> int:
    """AIP-158: 0 means the default; values above the maximum are coerced down.
    (Negative values never get here: the rule table rejects them.)"""
    if requested <= 0:
        return default
    return min(requested, maximum)


def method_name(service: str, rpc: str) -> str:
    return f"/{service}/{rpc}"


@dataclass(frozen=True)
class Violation:
    field: str
    description: str
    reason: str = Reason.INVALID_ARGUMENT


# --- reading fields by dotted path ------------------------------------------------

_ABSENT = object()


# (message descriptor, dotted path) -> ((field name, is a singular message field), ...)
_STEPS: dict[tuple[Any, str], tuple[tuple[str, bool], ...]] = {}


def _steps(descriptor: Any, path: str) -> tuple[tuple[str, bool], ...]:
    key = (descriptor, path)
    steps = _STEPS.get(key)
    if steps is None:
        found = []
        for part in path.split("."):
            if descriptor is None:  # a path through a scalar: the walk stops at it
                found.append((part, False))
                continue
            fd = descriptor.fields_by_name.get(part)
            if fd is None:
                raise KeyError(f"{descriptor.full_name} has no field {part!r}")
            singular_message = fd.message_type is not None and not _is_repeated(fd)
            found.append((part, singular_message))
            descriptor = fd.message_type if singular_message else None
        steps = _STEPS[key] = tuple(found)
    return steps


def _get(msg: Any, path: str) -> Any:
    """The value at a dotted path, or _ABSENT when an enclosing message is unset.
    The path is resolved against the descriptors once per message type (a batch of
    100 operations checks the same few paths hundreds of times)."""
    if msg is _ABSENT or msg is None:
        return _ABSENT
    current = msg
    for part, singular_message in _steps(msg.DESCRIPTOR, path):
        if current is _ABSENT or current is None:
            return _ABSENT
        if singular_message and not current.HasField(part):
            return _ABSENT
        current = getattr(current, part)
    return current


def _is_repeated(fd: Any) -> bool:
    # protobuf >= 5 exposes is_repeated; older versions only label.
    is_repeated = getattr(fd, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(fd.label == fd.LABEL_REPEATED)


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix else path


def _is_empty(value: Any) -> bool:
    if value is _ABSENT or value is None:
        return True
    if isinstance(value, (str, bytes)):
        return value == ""
    if isinstance(value, (int, float)):
        return value == 0  # bool too; enums: 0 is UNSPECIFIED
    try:
        return len(value) == 0  # repeated / map
    except TypeError:
        return False


class Rule(Protocol):
    def check(self, root: Any, msg: Any, prefix: str) -> Iterator[Violation]: ...


# --- rule primitives ---------------------------------------------------------------

@dataclass(frozen=True)
class Required:
    path: str

    def check(self, root, msg, prefix):
        if _is_empty(_get(msg, self.path)):
            yield Violation(_join(prefix, self.path), "is required")


@dataclass(frozen=True)
class _Pattern:
    """A string field in a declared format; empty is "is required" unless optional.
    Subclasses define ``kind`` and ``matches`` (or ``check_value`` for more)."""

    path: str
    required: bool = True

    kind = ""

    def matches(self, value: str) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self, root, msg, prefix):
        value = _get(msg, self.path)
        if _is_empty(value):
            if self.required:
                yield Violation(_join(prefix, self.path), "is required")
            return
        yield from self.check_value(value, _join(prefix, self.path), root)

    def check_value(self, value: str, field_path: str, root: Any) -> Iterator[Violation]:
        if not self.matches(value):
            yield Violation(field_path, f"must be {self.kind}, got {value!r}", Reason.INVALID_NAME)


class GraphName(_Pattern):
    kind = names.GRAPH_NAME_FORMAT

    def matches(self, value):
        return bool(names.GRAPH_NAME_RE.match(value))


class TypeName(_Pattern):
    kind = "a type name matching ^" + names.TYPE_NAME_PATTERN + "$"

    def matches(self, value):
        return names.is_type_name(value)


class PropertyName(_Pattern):
    kind = "a property name matching ^" + names.PROPERTY_NAME_PATTERN + "$"

    def matches(self, value):
        return names.is_property_name(value)


class NodeId(_Pattern):
    kind = "a node id matching ^" + names.NODE_ID_PATTERN + "$"

    def matches(self, value):
        return names.is_node_id(value)


def _graph_of(root: Any, path: str) -> str | None:
    """The graph id named by a graph- or node-name field at ``path`` of the root request."""
    value = _get(root, path)
    if not isinstance(value, str):
        return None
    return _graph_id_in(value)


@lru_cache(maxsize=1024)
def _graph_id_in(value: str) -> str | None:
    """Cached: every operation of a batch names the same parent."""
    match = names.GRAPH_NAME_RE.match(value) or names.NODE_NAME_RE.match(value)
    return match.group(1) if match else None


@dataclass(frozen=True)
class NodeName(_Pattern):
    """A node resource name; with ``same_graph_as`` (a root field holding a graph or
    node name) it must also live in that graph."""

    same_graph_as: str | None = None

    kind = names.NODE_NAME_FORMAT

    def check_value(self, value, field_path, root):
        match = names.NODE_NAME_RE.match(value)
        if not match:
            yield Violation(field_path, f"must be {self.kind}, got {value!r}", Reason.INVALID_NAME)
            return
        if self.same_graph_as is not None:
            graph = _graph_of(root, self.same_graph_as)
            if graph is not None and graph != match.group(1):
                yield Violation(field_path, f"must be in graphs/{graph} (as {self.same_graph_as}), "
                                f"got {value!r}")


@dataclass(frozen=True)
class _EachString:
    """Every string of a repeated field passes ``item`` (paths get ``[i]``; an empty
    string is malformed, not missing)."""

    path: str

    @property
    def item(self) -> _Pattern:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self, root, msg, prefix):
        values = _get(msg, self.path)
        if values is _ABSENT:
            return
        item = self.item
        for i, value in enumerate(values):
            yield from item.check_value(value, f"{_join(prefix, self.path)}[{i}]", root)


@dataclass(frozen=True)
class EachNodeName(_EachString):
    """Every string of a repeated field is a node name (optionally in one graph)."""

    same_graph_as: str | None = None

    @property
    def item(self):
        return NodeName(self.path, same_graph_as=self.same_graph_as)


class EachTypeName(_EachString):
    @property
    def item(self):
        return TypeName(self.path)


class EachPropertyName(_EachString):
    @property
    def item(self):
        return PropertyName(self.path)


@dataclass(frozen=True)
class PropertyKeys:
    """Every key of a ``map<string, PropertyValue>`` is a property name and every value
    has its ``kind`` set."""

    path: str

    def check(self, root, msg, prefix):
        props = _get(msg, self.path)
        if props is _ABSENT:
            return
        for key in sorted(props):
            field_path = f"{_join(prefix, self.path)}[{key!r}]"
            if not names.is_property_name(key):
                yield Violation(field_path, f"key must be {PropertyName.kind}",
                                Reason.INVALID_NAME)
            elif props[key].WhichOneof("kind") is None:
                yield Violation(field_path, "value must set one of string_value, int_value, "
                                "double_value, bool_value, timestamp_value")


@dataclass(frozen=True)
class RequestId:
    path: str = "request_id"

    def check(self, root, msg, prefix):
        value = _get(msg, self.path)
        if not _is_empty(value) and not names.is_uuid4(value):
            yield Violation(_join(prefix, self.path), "must be empty or a UUID4")


@dataclass(frozen=True)
class NonNegative:
    path: str

    def check(self, root, msg, prefix):
        value = _get(msg, self.path)
        if value is not _ABSENT and value < 0:
            yield Violation(_join(prefix, self.path), self.describe(value))

    def describe(self, value: int) -> str:
        return f"must be >= 0, got {value}"


@dataclass(frozen=True)
class PageSize(NonNegative):
    path: str = "page_size"

    def describe(self, value):
        return (f"must be >= 0 (0 means {DEFAULT_PAGE_SIZE}; "
                f"values above {MAX_PAGE_SIZE} are capped), got {value}")


@dataclass(frozen=True)
class MaxLength:
    """A string of at most ``maximum`` characters."""

    path: str
    maximum: int

    reason = Reason.INVALID_ARGUMENT

    def check(self, root, msg, prefix):
        value = _get(msg, self.path)
        if value is not _ABSENT and len(value) > self.maximum:
            yield Violation(_join(prefix, self.path), self.describe(len(value)), self.reason)

    def describe(self, length: int) -> str:
        return f"must be at most {self.maximum} characters long"


@dataclass(frozen=True)
class MaxItems(MaxLength):
    """A repeated field of at most ``maximum`` items."""

    reason: str = Reason.INVALID_ARGUMENT

    def describe(self, length):
        return f"must hold at most {self.maximum} items, got {length}"


@dataclass(frozen=True)
class EnumIn:
    path: str
    allowed: Mapping[int, str]
    required: bool = True

    def check(self, root, msg, prefix):
        value = _get(msg, self.path)
        if value is _ABSENT or value == 0:
            if self.required:
                yield Violation(_join(prefix, self.path),
                                f"is required (one of {', '.join(self.allowed.values())})")
            return
        if value not in self.allowed:
            yield Violation(_join(prefix, self.path),
                            f"must be one of {', '.join(self.allowed.values())}")


@dataclass(frozen=True)
class FieldMaskPaths:
    """update_mask paths are ``properties``, ``properties.<property name>`` or ``*``
    (AIP-134: full replacement, which here means ``properties``)."""

    path: str

    def check(self, root, msg, prefix):
        mask = _get(msg, self.path)
        if mask is _ABSENT:
            return
        for i, p in enumerate(mask.paths):
            if p == "*":
                continue
            head, _, key = p.partition(".")
            if head != "properties" or (key and not names.is_property_name(key)) or (
                    "." in p and not key):
                yield Violation(f"{_join(prefix, self.path)}.paths[{i}]",
                                f"must be 'properties', 'properties.<name>' or '*', got {p!r}")


@dataclass(frozen=True)
class Each:
    """Apply ``rules`` to every message of a repeated field (paths get ``[i]``)."""

    path: str
    rules: tuple[Any, ...]

    def check(self, root, msg, prefix):
        values = _get(msg, self.path)
        if values is _ABSENT:
            return
        for i, item in enumerate(values):
            yield from _apply(self.rules, root, item, f"{_join(prefix, self.path)}[{i}]")


@dataclass(frozen=True)
class Within:
    """Apply ``rules`` inside a singular message field when it is set."""

    path: str
    rules: tuple[Any, ...]

    def check(self, root, msg, prefix):
        value = _get(msg, self.path)
        if value is not _ABSENT:
            yield from _apply(self.rules, root, value, _join(prefix, self.path))


@dataclass(frozen=True)
class OneOf:
    """Exactly one member of a oneof is set; ``cases`` maps member → rules for it."""

    oneof: str
    cases: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def check(self, root, msg, prefix):
        case = msg.WhichOneof(self.oneof)
        if case is None:
            yield Violation(_join(prefix, self.oneof),
                            f"one of {', '.join(self.cases)} is required")
            return
        yield from _apply(self.cases.get(case, ()), root, getattr(msg, case), _join(prefix, case))


def _apply(rules: Iterable[Rule], root: Any, msg: Any, prefix: str) -> Iterator[Violation]:
    for rule in rules:
        yield from rule.check(root, msg, prefix)


# --- the table ---------------------------------------------------------------------

_DIRECTIONS_OUT_IN = {DIRECTION_OUT: "DIRECTION_OUT", DIRECTION_IN: "DIRECTION_IN"}
_DIRECTIONS_ALL = {**_DIRECTIONS_OUT_IN, DIRECTION_BOTH: "DIRECTION_BOTH"}
_PROPERTY_KINDS = {1: "PROPERTY_KIND_STRING", 2: "PROPERTY_KIND_INT", 3: "PROPERTY_KIND_DOUBLE",
                   4: "PROPERTY_KIND_BOOL", 5: "PROPERTY_KIND_TIMESTAMP"}

_PROPERTY_DEFINITION = (PropertyName("name"), EnumIn("kind", _PROPERTY_KINDS))
_SCHEMA = (
    Each("node_types", (TypeName("name"), Each("properties", _PROPERTY_DEFINITION),
                        EachPropertyName("projected"))),
    Each("edge_types", (TypeName("name"), TypeName("source_type"), TypeName("target_type"),
                        TypeName("inverse_name", required=False),
                        Each("properties", _PROPERTY_DEFINITION))),
)


def _node_for_create() -> tuple[Rule, ...]:
    return (Required("node"), TypeName("node.type"), PropertyKeys("node.properties"))


def _node_for_update() -> tuple[Rule, ...]:
    return (Required("node"), NodeName("node.name", same_graph_as="parent"),
            PropertyKeys("node.properties"), FieldMaskPaths("update_mask"))


def _edge(graph_field: str) -> tuple[Rule, ...]:
    return (Required("edge"),
            NodeName("edge.source", same_graph_as=graph_field), TypeName("edge.type"),
            NodeName("edge.target", same_graph_as=graph_field),
            PropertyKeys("edge.properties"))


def _edge_key(graph_field: str) -> tuple[Rule, ...]:
    return (NodeName("source", same_graph_as=graph_field), TypeName("type"),
            NodeName("target", same_graph_as=graph_field))


_C = COMMAND_SERVICE
_Q = QUERY_SERVICE

RULES: dict[str, tuple[Rule, ...]] = {
    # ---- commands ----
    method_name(_C, "ApplySchema"): (
        GraphName("graph"), Required("schema"), Within("schema", _SCHEMA),
        NonNegative("expected_version"), RequestId()),
    method_name(_C, "CreateNode"): (
        GraphName("parent"), NodeId("node_id", required=False), *_node_for_create(),
        RequestId()),
    method_name(_C, "UpdateNode"): (
        Required("node"), NodeName("node.name"), PropertyKeys("node.properties"),
        FieldMaskPaths("update_mask"), RequestId()),
    method_name(_C, "DeleteNode"): (NodeName("name"), RequestId()),
    method_name(_C, "AddEdge"): (GraphName("parent"), *_edge("parent"), RequestId()),
    method_name(_C, "RemoveEdge"): (GraphName("parent"), *_edge_key("parent"), RequestId()),
    method_name(_C, "BatchWrite"): (
        GraphName("parent"), Required("operations"),
        MaxItems("operations", MAX_BATCH_OPERATIONS, Reason.BATCH_TOO_LARGE),
        Each("operations", (OneOf("operation", {
            "create_node": (NodeId("node_id", required=False), *_node_for_create()),
            "update_node": _node_for_update(),
            "delete_node": (NodeName("name", same_graph_as="parent"),),
            "add_edge": _edge("parent"),
            "remove_edge": _edge_key("parent"),
        }),)),
        RequestId()),
    # ---- queries ----
    method_name(_Q, "GetSchema"): (GraphName("graph"),),
    method_name(_Q, "GetNode"): (NodeName("name"),),
    method_name(_Q, "BatchGetNodes"): (
        GraphName("parent"), Required("names"),
        MaxItems("names", MAX_BATCH_GET_NAMES, Reason.BATCH_TOO_LARGE),
        EachNodeName("names", same_graph_as="parent")),
    method_name(_Q, "GetEdge"): (GraphName("parent"), *_edge_key("parent")),
    method_name(_Q, "CountEdges"): (
        NodeName("name"), TypeName("edge_type"), EnumIn("direction", _DIRECTIONS_OUT_IN)),
    method_name(_Q, "ListEdges"): (
        NodeName("name"), TypeName("edge_type", required=False),
        EnumIn("direction", _DIRECTIONS_OUT_IN), PageSize()),
    method_name(_Q, "ListNodes"): (
        GraphName("parent"), TypeName("type"), MaxLength("filter", MAX_FILTER_LENGTH),
        MaxLength("order_by", MAX_FILTER_LENGTH), PageSize()),
    method_name(_Q, "Traverse"): (
        NodeName("start"), Required("steps"), MaxItems("steps", MAX_TRAVERSAL_STEPS),
        Each("steps", (TypeName("edge_type"), EnumIn("direction", _DIRECTIONS_ALL),
                       MaxLength("node_filter", MAX_FILTER_LENGTH),
                       NonNegative("per_node_limit"))),
        Within("budget", (NonNegative("max_depth"), NonNegative("max_nodes"),
                          NonNegative("per_node_fanout")))),
    method_name(_Q, "FindPath"): (
        NodeName("source"), NodeName("target", same_graph_as="source"),
        EachTypeName("edge_types"), EnumIn("direction", _DIRECTIONS_ALL, required=False),
        NonNegative("max_depth")),
    method_name(_Q, "WatchEvents"): (
        GraphName("parent"), NonNegative("after_position"), PageSize()),
}


def violations_for(method: str, request: Any) -> list[Violation]:
    """Every violation of ``request`` against the rules of ``method`` (none if the
    method is not in the table, e.g. health or reflection)."""
    return list(_apply(RULES.get(method, ()), request, request, ""))


# --- fast paths ----------------------------------------------------------------------
# The table walks descriptors and dotted paths for every field of every operation: for a
# 100-operation BatchWrite that was most of the request's validation cost. A fast path is
# a plain function that says "certainly valid" for the common shapes, checking exactly
# what the table checks for them; anything else (and every invalid request) goes through
# the table, which alone describes violations. So the outcome is the table's, always;
# tests/unit/infrastructure/test_validation_fast_paths.py pins the equivalence.

_NODE_NAME_MATCH = names.NODE_NAME_RE.match
_TYPE_NAME_MATCH = names.TYPE_NAME_RE.match
_NODE_ID_MATCH = names.NODE_ID_RE.match
_PROPERTY_NAME_MATCH = names.PROPERTY_NAME_RE.match


def _properties_ok(props: Any) -> bool:
    for key in props:
        if not _PROPERTY_NAME_MATCH(key) or props[key].WhichOneof("kind") is None:
            return False
    return True


def _in_graph(name: str, graph: str) -> bool:
    match = _NODE_NAME_MATCH(name)
    return match is not None and match.group(1) == graph


def _batch_write_is_valid(request: Any) -> bool:
    match = names.GRAPH_NAME_RE.match(request.parent)
    if match is None:
        return False
    graph = match.group(1)
    operations = request.operations
    if not 0 < len(operations) <= MAX_BATCH_OPERATIONS:
        return False
    request_id = request.request_id
    if request_id and not names.is_uuid4(request_id):
        return False
    for op in operations:
        kind = op.WhichOneof("operation")
        if kind == "add_edge":
            add = op.add_edge
            if not add.HasField("edge"):
                return False
            e = add.edge
            if not (_in_graph(e.source, graph) and _in_graph(e.target, graph) and _TYPE_NAME_MATCH(e.type)):
                return False
            if e.properties and not _properties_ok(e.properties):
                return False
        elif kind == "create_node":
            create = op.create_node
            if not create.HasField("node") or (create.node_id and not _NODE_ID_MATCH(create.node_id)):
                return False
            node = create.node
            if not _TYPE_NAME_MATCH(node.type) or (node.properties and not _properties_ok(node.properties)):
                return False
        else:
            return False
    return True


FAST_PATHS: dict[str, Any] = {
    method_name(_C, "BatchWrite"): _batch_write_is_valid,
}


def validate(method: str, request: Any) -> None:
    """Raise ValidationFailed when ``request`` breaks the rules of ``method``."""
    fast = FAST_PATHS.get(method)
    if fast is not None and fast(request):
        return
    found = violations_for(method, request)
    if found:
        raise failure(found)


# --- the edge's idempotency key ---------------------------------------------------------
# Envoy retries a command only when the caller sent this header (ADR 0013): it cannot read
# the protobuf body, so the header is how a caller tells it "this call carries a request_id".
# A header that does not equal the body's request_id would let Envoy retry a call that is
# not idempotent (an empty request_id) or whose replays are keyed differently: refused.
IDEMPOTENCY_HEADER = "x-edgewise-request-id"


def idempotency_header_violations(method: str, request: Any, header: Iterable[str]) -> list[Violation]:
    """Violations of the header/body agreement for a command with ``request_id``.
    ``header`` holds every value the call sent for IDEMPOTENCY_HEADER (none: nothing to
    check; a query or a method without ``request_id`` is not checked either)."""
    values = list(header)
    if not values or not method.startswith(f"/{COMMAND_SERVICE}/"):
        return []
    if "request_id" not in request.DESCRIPTOR.fields_by_name:
        return []
    body = request.request_id
    if len(values) == 1 and values[0] == body and names.is_uuid4(body):
        return []
    sent = values[0] if len(values) == 1 else values
    return [Violation("request_id", f"must be a UUID4 equal to the {IDEMPOTENCY_HEADER} header when that header "
                                    f"is sent (the edge retries such a call), got request_id {body!r} and header "
                                    f"{sent!r}")]


def check_idempotency_header(method: str, request: Any, header: Iterable[str]) -> None:
    found = idempotency_header_violations(method, request, header)
    if found:
        raise failure(found)


def failure(found: Iterable[Violation]) -> ValidationFailed:
    found = list(found)
    summary = "; ".join(f"{v.field}: {v.description}" for v in found[:5])
    if len(found) > 5:
        summary += f"; and {len(found) - 5} more"
    return ValidationFailed(
        f"invalid request: {summary}",
        reason=found[0].reason,
        violations=[FieldViolation(v.field, v.description) for v in found],
    )
