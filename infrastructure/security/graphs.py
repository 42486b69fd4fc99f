"""Which graphs a request touches, read from the request message generically.

Authorization must see every graph a request names — its name or parent, every batch member,
edge endpoints, traversal starts, path ends, and the graphs its page and consistency tokens
were issued for — and a field added to a request later must not slip past it. So the request
is walked through its protobuf descriptor, by field NAME, not by request type:

* ``graph``: the graph (``graphs/{graph}`` as the services take it; a bare id counts as itself);
* ``parent``, ``name``, ``names``, ``source``, ``target``, ``start``: resource names
  ``graphs/{graph}[/...]``, parsed loosely — any value starting with ``graphs/`` yields the
  segment up to the next ``/``; any other value yields nothing (validation, which runs after
  authorization, refuses it);
* ``page_token``, ``at_least_token``: the graphs the token names (``peek_graphs``);
* nested messages are walked (Node.name, Edge.source/target, each BatchWrite operation), but
  never property values: maps, ``google.protobuf.*`` (Struct, Value, Timestamp, FieldMask)
  and ``PropertyValue`` hold data, and a string value that looks like ``graphs/B/...`` is data.

Over-reading is safe (a false graph can only cause a refusal); under-reading would leak.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from infrastructure.tokens import peek_graphs

GRAPH_FIELDS = frozenset({"graph"})
RESOURCE_NAME_FIELDS = frozenset({"parent", "name", "names", "source", "target", "start"})
TOKEN_FIELDS = frozenset({"page_token", "at_least_token"})
# The request's own graph, for the access log, the metrics and the rate limiter: the first of
# these top-level fields that names one (else the first graph found anywhere).
PRIMARY_FIELDS = ("graph", "parent", "name", "start", "source")

_RESOURCE_PREFIX = "graphs/"
# Messages that hold values, never references: a property value is the caller's data.
_DATA_MESSAGE_PREFIXES = ("google.protobuf.",)
_DATA_MESSAGES = frozenset({"edgewise.graph.v1.PropertyValue"})


def graph_of_resource_name(value: str) -> str | None:
    """``graphs/{graph}[/...]`` → graph (loosely: no syntax check); None for anything else."""
    if not value.startswith(_RESOURCE_PREFIX):
        return None
    graph = value[len(_RESOURCE_PREFIX):].partition("/")[0]
    return graph or None


def _graph_field(value: str) -> str | None:
    return graph_of_resource_name(value) if value.startswith(_RESOURCE_PREFIX) else (value or None)


def _is_data(descriptor: Descriptor) -> bool:
    return (descriptor.full_name in _DATA_MESSAGES or descriptor.full_name.startswith(_DATA_MESSAGE_PREFIXES)
            or descriptor.GetOptions().map_entry)


def _strings(field: FieldDescriptor, value: Any) -> Iterable[str]:
    if field.type != FieldDescriptor.TYPE_STRING:
        return ()
    return value if field.is_repeated else (value,)


def _graphs_of_field(field: FieldDescriptor, value: Any) -> Iterator[str]:
    name = field.name
    if name in GRAPH_FIELDS:
        parse = _graph_field
    elif name in RESOURCE_NAME_FIELDS:
        parse = graph_of_resource_name
    elif name in TOKEN_FIELDS:
        for token in _strings(field, value):
            yield from peek_graphs(token)
        return
    else:
        return
    for text in _strings(field, value):
        graph = parse(text)
        if graph is not None:
            yield graph


def _walk(message: Message) -> Iterator[str]:
    if _is_data(message.DESCRIPTOR):
        return
    for field, value in message.ListFields():  # set fields only, in field-number order
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_data(field.message_type):  # a map (properties) or a value type
                continue
            for item in (value if field.is_repeated else (value,)):
                yield from _walk(item)
        else:
            yield from _graphs_of_field(field, value)


def primary_graph(request: Any) -> str | None:
    """The graph the request is about (its ``graph``/``parent``/``name``/``start``/``source``)."""
    if not isinstance(request, Message):
        return None
    fields = request.DESCRIPTOR.fields_by_name
    for name in PRIMARY_FIELDS:
        field = fields.get(name)
        if field is None or field.type != FieldDescriptor.TYPE_STRING or field.is_repeated:
            continue
        graph = next(_graphs_of_field(field, getattr(request, name)), None)
        if graph is not None:
            return graph
    return None


def graphs_touched(method: str, request: Any) -> list[str]:
    """Every graph ``request`` (of ``method``) names, its primary graph first, each once.
    [] for anything that is not a protobuf message (a client-streaming request iterator).
    ``method`` is unused today: the walk is by field name, the same for every request type."""
    del method
    if not isinstance(request, Message):
        return []
    primary = primary_graph(request)
    found = dict.fromkeys(([primary] if primary is not None else []) + list(_walk(request)))
    return list(found)
