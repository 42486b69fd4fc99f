"""The one spelling of every DynamoDB key (ADR 0009). Adapters never format a key themselves.

Every function returns the low-level wire format (``{"pk": {"S": ...}, "sk": {"S": ...}}``,
see ``attributes``); ``*_partition`` functions return the bare pk string for a Query.

Grammar. A key is ``#``-separated components and starts with the graph id (the unit of
tenancy: nothing reads across graphs). The only exceptions are system partitions that
start with ``#`` — which no graph id can (``[a-z][a-z0-9-]*``): the shard registry
(``#shards``), the cascade-job index value (``#cascade``) and the shards a projector has a
checkpoint in (``#projections#{projector}``). The second component is a
one-letter tag naming the item family, so families never collide:

======  ===========================================  ==================================
table   pk                                           sk
======  ===========================================  ==================================
write   {g}#N#{node}                                 N                  node
write   {g}#N#{source}                               O#{type}#{target}  out-edge
write   {g}#N#{target}                               I#{type}#{source}  in-edge mirror
write   {g}#N#{node}                                 C#{O|I}#{type}     edge counter
write   {g}#N#{node}                                 J                  cascade job
write   {g}#K#{N|E}#{type}#{bucket}                  K                  type counter
write   {g}#U#{node type}#{property}#{claim value}   U                  unique claim
write   {g}#S                                        {version:020d}     schema version
write   {g}#R#{request id}                           R                  idempotency record
write   {g}#V#{edge type}                            V                  topology version
log     {g}#L#{bucket}                               head               shard sequence
log     {g}#L#{bucket}                               {last:020d}        commit record
log     #shards                                      {g}                shard registry
read    {g}#N#{node}                                 V                  node view
read    {g}#N#{node}                                 X#{property}       node index entry
read    {g}#E#{source}#{type}#{target}               E                  edge view
read    {g}#A#{node}#{O|I}#{type}                    H                  adjacency head
read    {g}#A#{node}#{O|I}#{type}                    D                  sealed-chunk directory
read    {g}#A#{node}#{O|I}#{type}#{chunk}            C                  sealed chunk
read    {g}#S                                        S                  schema view
read    {g}#P#{bucket}                               C#{projector}      checkpoint
read    {g}#P#{bucket}                               L#{projector}      projector lease
read    #projections#{projector}                     {shard}            projected shard
======  ===========================================  ==================================

Global secondary indexes (names and attributes in deploy/dynamodb/tables.py):

- write ``pending``: ``pending_pk = #cascade``, ``pending_sk = {created_us:020d}#{g}#{node}``
  on cascade-job items only: the oldest pending job of any graph is one Query.
- read ``by_type``: ``type_pk = {g}#T#{node type}#{bucket}``, ``type_sk = {node}`` on live
  node views only.
- read ``by_value``: ``value_pk = {g}#X#{node type}#{property}#{bucket}``,
  ``value_sk = {order-preserving value} {node}`` on node index entries.

Forgery. Every variable component goes through ``escape``: ``%``, ``#`` and space become
``%25``, ``%23``, ``%20``. The id grammars (domain/values.py) contain none of them, so
escaping is the identity for valid ids (and keeps their order), but no input — valid or
not — can add a separator. ``#`` sorts below every id character, so composite sort keys
order like tuples. Prefix queries must end with a separator (``out_edges_prefix``):
``begins_with(sk, "O#follows")`` would also match ``O#followsX``.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from deploy.dynamodb.tables import (
    BY_TYPE_PK,
    BY_TYPE_SK,
    BY_VALUE_PK,
    BY_VALUE_SK,
    PENDING_PK,
    PENDING_SK,
    PK,
    SK,
    TTL_ATTRIBUTE,
)
from domain.edge import Direction
from domain.values import EdgeKey, PropertyKind, PropertyValue, epoch_micros

from infrastructure.persistence.dynamodb.attributes import Item, Key

SEPARATOR = "#"

# Buckets of the by_type / by_value indexes and of the per-type counters: a node goes to
# bucket crc32(node id) % INDEX_BUCKETS, so one type's (or one hot value's) writes spread
# over this many index partitions; a listing merges this many Queries. Changing it needs a
# re-projection (read model) and a counter migration (write model).
INDEX_BUCKETS = 8
TYPE_COUNTER_BUCKETS = 8

# An idempotency record lives at least this long (AIP-155; DESIGN §3).
IDEMPOTENCY_RETENTION = timedelta(hours=24)

# The longest value part of a by_value sort key (a GSI sort key holds at most 1,024 bytes;
# the rest is the separator and the node id). Longer strings are truncated: see EncodedValue.
MAX_INDEX_VALUE_BYTES = 768
# A unique claim's value part is hashed (SHA-256) past this many bytes (a pk holds 2,048).
MAX_CLAIM_VALUE_BYTES = 1024

SHARD_REGISTRY_PARTITION = "#shards"
PENDING_CASCADE = "#cascade"
LOG_HEAD_SK = "head"
# Commit-record sort keys are 20-digit zero-padded positions (>= 1): they sort below LOG_HEAD_SK.
LOG_RECORD_SK_MAX = "9" * 20

_ESCAPES = {"%": "%25", "#": "%23", " ": "%20"}
_NEEDS_ESCAPE = re.compile(r"[%# ]")
_DIRECTION_TAG = {Direction.OUT: "O", Direction.IN: "I"}
_TAG_DIRECTION = {"O": Direction.OUT, "I": Direction.IN}

TypeKind = Literal["node", "edge"]


def escape(text: str) -> str:
    """A key component that cannot contain a separator; the identity on valid ids."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], text)


def unescape(text: str) -> str:
    if "%" not in text:
        return text
    return text.replace("%20", " ").replace("%23", "#").replace("%25", "%")


def _key(pk: str, sk: str) -> Key:
    return {PK: {"S": pk}, SK: {"S": sk}}


def _direction(direction: Direction) -> str:
    try:
        return _DIRECTION_TAG[direction]
    except KeyError:
        raise ValueError(f"a stored edge direction is OUT or IN, not {direction}") from None


def stable_bucket(text: str, buckets: int) -> int:
    """A bucket in [0, buckets) that every process computes alike (``hash()`` is salted)."""
    return zlib.crc32(text.encode("utf-8")) % buckets


# --- write table: a node's item collection ------------------------------------------------

def node_partition(graph: str, node_id: str) -> str:
    """The pk shared by a node, its out-edges, in-edge mirrors, counters and cascade job
    (write table) — and by its view and index entries (read table)."""
    return f"{escape(graph)}#N#{escape(node_id)}"


def parse_node_partition(pk: str) -> tuple[str, str]:
    """(graph, node id) of a ``node_partition`` string."""
    graph, tag, node = pk.split(SEPARATOR)
    if tag != "N":
        raise ValueError(f"not a node partition: {pk!r}")
    return unescape(graph), unescape(node)


def node_key(graph: str, node_id: str) -> Key:
    return _key(node_partition(graph, node_id), "N")


def out_edge_key(graph: str, source: str, edge_type: str, target: str) -> Key:
    return _key(node_partition(graph, source), f"O#{escape(edge_type)}#{escape(target)}")


def in_edge_key(graph: str, target: str, edge_type: str, source: str) -> Key:
    return _key(node_partition(graph, target), f"I#{escape(edge_type)}#{escape(source)}")


def edge_item_keys(edge: EdgeKey) -> tuple[Key, Key]:
    """(out-edge item under the source, in-edge mirror under the target)."""
    return (out_edge_key(edge.graph, edge.source, edge.type, edge.target),
            in_edge_key(edge.graph, edge.target, edge.type, edge.source))


def edges_prefix(direction: Direction, edge_type: str | None = None) -> str:
    """``begins_with(sk, :p)`` for a node's edges in one direction, of one type or all."""
    tag = _direction(direction)
    return f"{tag}#" if edge_type is None else f"{tag}#{escape(edge_type)}#"


def parse_edge_sk(sk: str) -> tuple[Direction, str, str]:
    """(direction, edge type, neighbour id) of an out-edge or in-edge sort key."""
    tag, edge_type, neighbour = sk.split(SEPARATOR)
    if tag not in _TAG_DIRECTION:
        raise ValueError(f"not an edge sort key: {sk!r}")
    return _TAG_DIRECTION[tag], unescape(edge_type), unescape(neighbour)


def edge_counter_key(graph: str, node_id: str, edge_type: str, direction: Direction) -> Key:
    """The number of the node's edges of the type in the direction (attribute set by the adapter)."""
    return _key(node_partition(graph, node_id), f"C#{_direction(direction)}#{escape(edge_type)}")


COUNTERS_PREFIX = "C#"


def parse_counter_sk(sk: str) -> tuple[Direction, str]:
    tag, direction, edge_type = sk.split(SEPARATOR)
    if tag != "C" or direction not in _TAG_DIRECTION:
        raise ValueError(f"not a counter sort key: {sk!r}")
    return _TAG_DIRECTION[direction], unescape(edge_type)


def cascade_job_key(graph: str, node_id: str) -> Key:
    return _key(node_partition(graph, node_id), "J")


def cascade_job_index_attributes(graph: str, node_id: str, created_at: datetime) -> Item:
    """The ``pending`` index attributes a cascade-job item carries (oldest first)."""
    return {PENDING_PK: {"S": PENDING_CASCADE},
            PENDING_SK: {"S": f"{epoch_micros(created_at):020d}#{escape(graph)}#{escape(node_id)}"}}


def parse_pending_sk(sk: str) -> tuple[int, str, str]:
    """(created epoch micros, graph, node id) of a ``pending`` index sort key."""
    created, graph, node = sk.split(SEPARATOR)
    return int(created), unescape(graph), unescape(node)


# --- write table: per-graph items ---------------------------------------------------------

def type_counter_key(graph: str, kind: TypeKind, type_name: str, bucket: int) -> Key:
    """One of TYPE_COUNTER_BUCKETS counters of the live nodes (or edges) of a type. Only
    their SUM means anything: a transaction adds its net change for the type to ONE bucket
    it picks at random (one item per type per transaction, however many nodes it
    touches), so a busy type's writes spread over several partitions and a single bucket
    may go negative. ``count_of_type`` reads all of them (one BatchGetItem)."""
    if not 0 <= bucket < TYPE_COUNTER_BUCKETS:
        raise ValueError(f"bucket {bucket} is outside [0, {TYPE_COUNTER_BUCKETS})")
    tag = {"node": "N", "edge": "E"}[kind]
    return _key(f"{escape(graph)}#K#{tag}#{escape(type_name)}#{bucket}", "K")


def type_counter_keys(graph: str, kind: TypeKind, type_name: str) -> list[Key]:
    return [type_counter_key(graph, kind, type_name, b) for b in range(TYPE_COUNTER_BUCKETS)]


def unique_claim_key(graph: str, node_type: str, property_name: str, value: PropertyValue) -> Key:
    """The claim of a unique value (attribute: the holder's node id)."""
    return _key(f"{escape(graph)}#U#{escape(node_type)}#{escape(property_name)}#{claim_value(value)}", "U")


def schema_partition(graph: str) -> str:
    """Schema versions of a graph: the newest is ``Query(ScanIndexForward=False, Limit=1)``."""
    return f"{escape(graph)}#S"


def schema_key(graph: str, version: int) -> Key:
    """One schema version. Saving version v + 1 with ``attribute_not_exists(pk)`` is the
    optimistic lock: versions grow by one, so two writers expecting v cannot both win."""
    if version < 1:
        raise ValueError(f"schema versions start at 1, got {version}")
    return _key(schema_partition(graph), f"{version:020d}")


def idempotency_key(graph: str, request_id: str) -> Key:
    return _key(f"{escape(graph)}#R#{escape(request_id)}", "R")


def idempotency_expires_at(created_at: datetime) -> Item:
    """The TTL attribute of an idempotency record: epoch seconds, at least
    IDEMPOTENCY_RETENTION after ``created_at`` (TTL deletes lazily, never early)."""
    expires = created_at + IDEMPOTENCY_RETENTION
    return {TTL_ATTRIBUTE: {"N": str(math.ceil(expires.timestamp()))}}


def topology_key(graph: str, edge_type: str) -> Key:
    """The version of an acyclic edge type's topology: every add of that type checks and
    bumps it in its transaction, so concurrent adds serialise (DESIGN §3)."""
    return _key(f"{escape(graph)}#V#{escape(edge_type)}", "V")


# --- log table ----------------------------------------------------------------------------

def shard_id(graph: str, bucket: int) -> str:
    """A log shard's public id (commit positions, consistency tokens, WatchEvents cursors)."""
    return f"{graph}.{bucket}"


def parse_shard_id(shard: str) -> tuple[str, int]:
    graph, dot, bucket = shard.rpartition(".")
    if not dot or not graph or not bucket.isdigit():
        raise ValueError(f"not a shard id: {shard!r}")
    return graph, int(bucket)


def log_partition(graph: str, bucket: int) -> str:
    """One log shard: its sequence item and its events."""
    if bucket < 0:
        raise ValueError(f"negative shard bucket {bucket}")
    return f"{escape(graph)}#L#{bucket}"


def log_head_key(graph: str, bucket: int) -> Key:
    """The shard's gap-free sequence: the last position written (attribute set by the
    adapter), advanced from n to n + k with a condition ``seq = n`` in the command's own
    transaction, next to the commit record(s) holding positions n+1..n+k."""
    return _key(log_partition(graph, bucket), LOG_HEAD_SK)


def log_record_sk(last_position: int) -> str:
    """A commit record's sort key: the LAST position it holds, 20 digits zero-padded."""
    if not 1 <= last_position < 10**20:
        raise ValueError(f"log positions are 1..10^20-1, got {last_position}")
    return f"{last_position:020d}"


def log_record_key(graph: str, bucket: int, last_position: int) -> Key:
    """A commit record: the events at positions first..last of one commit, in one item
    (split into several records only past ~350 KB), keyed by its last position."""
    return _key(log_partition(graph, bucket), log_record_sk(last_position))


def log_records_after(position: int) -> tuple[str, str]:
    """Bounds for ``sk BETWEEN :lo AND :hi``: the records holding an event after
    ``position`` (head excluded). Records are keyed by their last position, so the first
    one returned may also hold events at or before ``position``: the reader drops them."""
    if position < 0:
        raise ValueError(f"log positions are >= 0, got {position}")
    return f"{position + 1:020d}", LOG_RECORD_SK_MAX


def shard_registry_key(graph: str) -> Key:
    """A graph's entry in the shard registry (attribute: its number of log buckets).
    Projectors list every shard with one Query on SHARD_REGISTRY_PARTITION."""
    return _key(SHARD_REGISTRY_PARTITION, escape(graph))


# --- read table ---------------------------------------------------------------------------

def node_view_key(graph: str, node_id: str) -> Key:
    return _key(node_partition(graph, node_id), "V")


def node_index_entry_key(graph: str, node_id: str, property_name: str) -> Key:
    """One indexed property of a node: the item that carries its ``by_value`` attributes."""
    return _key(node_partition(graph, node_id), f"X#{escape(property_name)}")


NODE_INDEX_ENTRIES_PREFIX = "X#"


def type_index_partition(graph: str, node_type: str, bucket: int) -> str:
    if not 0 <= bucket < INDEX_BUCKETS:
        raise ValueError(f"bucket {bucket} is outside [0, {INDEX_BUCKETS})")
    return f"{escape(graph)}#T#{escape(node_type)}#{bucket}"


def type_index_partitions(graph: str, node_type: str) -> list[str]:
    """Every ``by_type`` partition of a type: a listing queries each and merges by node id."""
    return [type_index_partition(graph, node_type, b) for b in range(INDEX_BUCKETS)]


def type_index_attributes(graph: str, node_type: str, node_id: str) -> Item:
    """The ``by_type`` attributes of a live node view (remove them when it is deleted)."""
    return {BY_TYPE_PK: {"S": type_index_partition(graph, node_type, stable_bucket(node_id, INDEX_BUCKETS))},
            BY_TYPE_SK: {"S": escape(node_id)}}


def value_index_partition(graph: str, node_type: str, property_name: str, bucket: int) -> str:
    if not 0 <= bucket < INDEX_BUCKETS:
        raise ValueError(f"bucket {bucket} is outside [0, {INDEX_BUCKETS})")
    return f"{escape(graph)}#X#{escape(node_type)}#{escape(property_name)}#{bucket}"


def value_index_partitions(graph: str, node_type: str, property_name: str) -> list[str]:
    return [value_index_partition(graph, node_type, property_name, b) for b in range(INDEX_BUCKETS)]


def value_index_attributes(graph: str, node_type: str, property_name: str, node_id: str,
                           value: PropertyValue, kind: PropertyKind) -> Item:
    """The ``by_value`` attributes of a node index entry. The sort key is the value's
    order-preserving encoding, a space, then the node id: (value, id) order."""
    encoded = encode_index_value(value, kind)
    return {BY_VALUE_PK: {"S": value_index_partition(graph, node_type, property_name,
                                                     stable_bucket(node_id, INDEX_BUCKETS))},
            BY_VALUE_SK: {"S": f"{encoded.text} {escape(node_id)}"}}


def parse_value_index_sk(sk: str) -> str:
    """The node id of a ``by_value`` sort key (the value part is not decodable)."""
    return unescape(sk.rpartition(" ")[2])


def value_index_prefix(value: PropertyValue, kind: PropertyKind) -> str:
    """``begins_with(value_sk, :p)`` for equality. Exact unless the value was truncated
    (``encode_index_value(...).exact``): then filter the candidates on the node view."""
    return encode_index_value(value, kind).text + " "


def value_index_bounds(kind: PropertyKind, lower: PropertyValue | None = None, lower_inclusive: bool = True,
                       upper: PropertyValue | None = None,
                       upper_inclusive: bool = True) -> tuple[str | None, str | None]:
    """Inclusive bounds on ``value_sk`` (use ``>=``, ``<=`` or ``BETWEEN``) for a range of
    values; None = unbounded. A truncated bound is widened to every value sharing its
    prefix: filter the candidates on the node view then."""
    lo = hi = None
    if lower is not None:
        encoded = encode_index_value(lower, kind)
        lo = encoded.text + (" " if lower_inclusive or not encoded.exact else "!")
    if upper is not None:
        encoded = encode_index_value(upper, kind)
        hi = encoded.text + ("!" if upper_inclusive or not encoded.exact else " ")
    return lo, hi


def edge_view_key(graph: str, source: str, edge_type: str, target: str) -> Key:
    """One edge's view (properties, create time): its own partition, so GetEdge and the
    edges of a ListEdges page are point reads that spread over the table."""
    return _key(f"{escape(graph)}#E#{escape(source)}#{escape(edge_type)}#{escape(target)}", "E")


def adjacency_partition(graph: str, node_id: str, direction: Direction, edge_type: str) -> str:
    return f"{escape(graph)}#A#{escape(node_id)}#{_direction(direction)}#{escape(edge_type)}"


def adjacency_head_key(graph: str, node_id: str, direction: Direction, edge_type: str) -> Key:
    """The head of one adjacency list: its newest ids (newest first), its length, and the
    number of its newest sealed chunk (ADR 0008, 0009)."""
    return _key(adjacency_partition(graph, node_id, direction, edge_type), "H")


def adjacency_chunk_key(graph: str, node_id: str, direction: Direction, edge_type: str, chunk: int) -> Key:
    """Sealed chunk ``chunk`` (1 = oldest, higher = newer) of a list. Each chunk is its
    own partition key, so reading a supernode's list spreads over partitions."""
    if chunk < 1:
        raise ValueError(f"sealed chunks are numbered from 1, got {chunk}")
    return _key(f"{adjacency_partition(graph, node_id, direction, edge_type)}#{chunk}", "C")


def adjacency_directory_key(graph: str, node_id: str, direction: Direction, edge_type: str) -> Key:
    """The directory of a list's sealed chunks (per chunk: entries, oldest and newest create
    time), beside its head. Only lists with sealed chunks have one; it is read when a page
    or a removal must go past the head (ADR 0012)."""
    return _key(adjacency_partition(graph, node_id, direction, edge_type), "D")


def adjacency_node_prefix(graph: str, node_id: str) -> str:
    """The common start of the pks of every adjacency item (heads, directories, chunks) of a node."""
    return f"{escape(graph)}#A#{escape(node_id)}#"


def schema_view_key(graph: str) -> Key:
    return _key(f"{escape(graph)}#S", "S")


def projection_partition(graph: str, bucket: int) -> str:
    return f"{escape(graph)}#P#{bucket}"


def checkpoint_key(graph: str, bucket: int, projector: str) -> Key:
    """A projector's checkpoint on one log shard (the last position applied)."""
    return _key(projection_partition(graph, bucket), f"C#{escape(projector)}")


def lease_key(graph: str, bucket: int, projector: str) -> Key:
    """Which replica projects the shard for ``projector``, until when (conditional puts)."""
    return _key(projection_partition(graph, bucket), f"L#{escape(projector)}")


PROJECTIONS_PARTITION_PREFIX = "#projections#"


def projection_index_partition(projector: str) -> str:
    """The shards a projector has a checkpoint in: one Query lists them (``positions``)."""
    return PROJECTIONS_PARTITION_PREFIX + escape(projector)


def projection_index_key(projector: str, shard: str) -> Key:
    """Written once, when the projector first checkpoints ``shard`` (not in its transactions,
    so projectors of different shards never write a common item)."""
    return _key(projection_index_partition(projector), escape(shard))


def parse_projection_index_sk(sk: str) -> str:
    return unescape(sk)


# --- value encodings ----------------------------------------------------------------------

class EncodedValue(NamedTuple):
    """An order-preserving text form of a property value. ``exact`` is False when a long
    string was truncated to MAX_INDEX_VALUE_BYTES: equal prefixes then compare equal."""

    text: str
    exact: bool


_INT_OFFSET = 1 << 63
_SIGN_BIT = 1 << 63
_ALL_BITS = (1 << 64) - 1


def _int_text(value: int) -> str:
    if not -_INT_OFFSET <= value < _INT_OFFSET:
        raise ValueError(f"{value} is outside the 64-bit integer range")
    return f"{value + _INT_OFFSET:016x}"


def _double_text(value: float) -> str:
    if value != value:
        raise ValueError("NaN has no order")
    bits: int = struct.unpack(">Q", struct.pack(">d", value + 0.0))[0]  # + 0.0: -0.0 is 0.0
    bits = bits ^ _ALL_BITS if bits & _SIGN_BIT else bits | _SIGN_BIT
    return f"{bits:016x}"


def _string_text(value: str) -> str:
    # Characters <= "!" become "!" + chr(0x40 + c), so every encoded character is >= "!"
    # and the terminating space sorts below all of them: a prefix orders first.
    if not value or min(value) > "!":
        return value
    return "".join("!" + chr(0x40 + ord(c)) if c <= "!" else c for c in value)


def encode_index_value(value: PropertyValue, kind: PropertyKind) -> EncodedValue:
    """Text that sorts (by UTF-8 bytes, as DynamoDB sorts S) like the values of one kind.

    INT and TIMESTAMP: 16 hex digits of the value + 2^63 (a TIMESTAMP is its epoch
    microseconds; an int is taken as epoch micros already, the ``domain.values.sortable``
    form). DOUBLE: 16 hex digits of the IEEE-754 bits, sign-flipped (ints are converted).
    BOOL: ``0`` / ``1``. STRING: the string with characters <= ``!`` escaped, cut to
    MAX_INDEX_VALUE_BYTES. ValueError for a value the kind cannot hold."""
    if kind is PropertyKind.STRING:
        if not isinstance(value, str):
            raise ValueError(f"STRING index value must be a str, got {type(value).__name__}")
        text = _string_text(value)
        raw = text.encode("utf-8")
        if len(raw) <= MAX_INDEX_VALUE_BYTES:
            return EncodedValue(text, True)
        return EncodedValue(raw[:MAX_INDEX_VALUE_BYTES].decode("utf-8", errors="ignore"), False)
    if kind is PropertyKind.BOOL:
        if value not in (True, False) or not isinstance(value, (bool, int)):
            raise ValueError(f"BOOL index value must be a bool, got {value!r}")
        return EncodedValue("1" if value else "0", True)
    if kind is PropertyKind.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"DOUBLE index value must be a number, got {value!r}")
        return EncodedValue(_double_text(float(value)), True)
    if kind is PropertyKind.TIMESTAMP and isinstance(value, datetime):
        return EncodedValue(_int_text(epoch_micros(value)), True)
    # INT, or a TIMESTAMP as epoch microseconds
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{kind.value} index value must be an integer, got {value!r}")
    return EncodedValue(_int_text(value), True)


def claim_value(value: PropertyValue) -> str:
    """The value part of a unique claim's pk: a kind tag and an exact, injective text
    (``1`` and ``"1"`` differ; strings over MAX_CLAIM_VALUE_BYTES become a SHA-256)."""
    if isinstance(value, bool):
        return "b:1" if value else "b:0"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        if value != value:
            raise ValueError("NaN cannot be claimed")
        return f"d:{value + 0.0!r}"
    if isinstance(value, datetime):
        return f"t:{epoch_micros(value)}"
    if isinstance(value, str):
        text = escape(value)
        if len(text) * 4 <= MAX_CLAIM_VALUE_BYTES or len(text.encode("utf-8")) <= MAX_CLAIM_VALUE_BYTES:
            return "s:" + text
        return "h:" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    raise ValueError(f"not a property value: {value!r}")
