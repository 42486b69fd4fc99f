"""The event log (transactional outbox) on DynamoDB: one shard per graph (ADR 0010).

Layout (log table, keys.py):

- ``log_head_key(graph, 0)`` — ``seq``: the shard's last position, moved from n to n + k
  by the command's own TransactWriteItems with the condition ``seq = n``
  (``attribute_not_exists`` when n = 0): a gap-free sequence, and the point where two
  writers of one graph serialise.
- ``log_record_key(graph, 0, last)`` — a **commit record**: the events at positions
  ``last - len(events) + 1 .. last`` of one commit in ONE item (``events``: the
  zlib-compressed JSON array of ``domain.events.event_to_dict`` forms). A commit's events
  are split into several records only past ``MAX_RECORD_BYTES``, so a BatchWrite of 100
  edges costs one log item, not 100, of the transaction's 100.
- ``shard_registry_key(graph)`` — ``buckets``: the graph has a log (written with the
  shard's first commit); ``shards()`` is one Query of the registry partition.

Reading after position p is one Query ``sk BETWEEN pad(p + 1) AND 99…9`` (records are
keyed by their last position): the first record returned may also hold events <= p,
which are dropped. Reads are strongly consistent: a projector never misses a committed
record behind one it has read.

A shard id is ``keys.shard_id(graph, 0)`` (``"{graph}.0"``); ids that do not parse (e.g.
SQLite's ``"0"``) name an empty shard here.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Sequence

from deploy.dynamodb.tables import PK, SK
from domain.events import DomainEvent, event_from_dict, event_to_dict
from domain.ports import LoggedEvent

from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.attributes import Item, Key, binary, get_bytes, get_int, get_str, num
from infrastructure.persistence.dynamodb.client import DynamoClient

# A commit record's events (compressed) stay under this, well below DynamoDB's 400 KB item.
MAX_RECORD_BYTES = 350_000
# The one bucket of a graph's shard (ADR 0010: a shard is a graph).
BUCKET = 0

HEAD_ATTRIBUTE = "seq"
EVENTS_ATTRIBUTE = "events"
BUCKETS_ATTRIBUTE = "buckets"
_COMPRESSION_LEVEL = 6


def shard_of(graph: str) -> str:
    return keys.shard_id(graph, BUCKET)


def parse_shard(shard: str) -> tuple[str, int] | None:
    """(graph, bucket) of a shard id, or None when it is not one of ours."""
    try:
        return keys.parse_shard_id(shard)
    except ValueError:
        return None


def event_json(event: DomainEvent) -> str:
    """One event's stored form: ``event_to_dict`` as compact JSON (every field, exact)."""
    return json.dumps(event_to_dict(event), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class PackedEvents:
    """A run of consecutive events of one shard, compressed: one commit record's payload."""

    count: int
    payload: bytes


def pack_events(events_json: Sequence[str]) -> list[PackedEvents]:
    """As few records as possible: everything in one, halved until each payload is at most
    MAX_RECORD_BYTES (a single event always makes a record of its own)."""
    if not events_json:
        return []
    payload = zlib.compress(("[" + ",".join(events_json) + "]").encode("utf-8"), _COMPRESSION_LEVEL)
    if len(payload) <= MAX_RECORD_BYTES or len(events_json) == 1:
        return [PackedEvents(len(events_json), payload)]
    middle = len(events_json) // 2
    return pack_events(events_json[:middle]) + pack_events(events_json[middle:])


def record_items(graph: str, head: int, packed: Sequence[PackedEvents]) -> list[Item]:
    """The commit records that put ``packed`` at positions head + 1, head + 2, ..."""
    items: list[Item] = []
    last = head
    for part in packed:
        last += part.count
        items.append({**keys.log_record_key(graph, BUCKET, last), EVENTS_ATTRIBUTE: binary(part.payload)})
    return items


def unpack_record(item: Item, shard: str) -> list[LoggedEvent]:
    """The events of one commit record at their positions."""
    last = int(get_str(item, SK))
    raw = json.loads(zlib.decompress(get_bytes(item, EVENTS_ATTRIBUTE)).decode("utf-8"))
    first = last - len(raw) + 1
    return [LoggedEvent(position=first + i, event=event_from_dict(data), shard=shard) for i, data in enumerate(raw)]


def head_key(shard: str) -> Key | None:
    parsed = parse_shard(shard)
    return None if parsed is None else keys.log_head_key(*parsed)


def head_value(item: Item | None) -> int:
    return 0 if item is None or HEAD_ATTRIBUTE not in item else get_int(item, HEAD_ATTRIBUTE)


def registry_item(graph: str) -> Item:
    return {**keys.shard_registry_key(graph), BUCKETS_ATTRIBUTE: num(BUCKET + 1)}


async def read_heads(client: DynamoClient, shards: Sequence[str]) -> dict[str, int]:
    """Strongly consistent heads of ``shards`` (0 for an empty or unknown shard): one
    GetItem for one shard, BatchGetItem otherwise."""
    wanted = list(dict.fromkeys(shards))
    by_key = {shard: head_key(shard) for shard in wanted}
    present = [key for key in by_key.values() if key is not None]
    if not present:
        return {shard: 0 for shard in wanted}
    if len(present) == 1:
        item = await client.get_item(client.tables.log, present[0], consistent=True)
        found = {} if item is None else {get_str(item, PK): item}
    else:
        found = {get_str(item, PK): item
                 for item in await client.batch_get(client.tables.log, present, consistent=True)}
    return {shard: head_value(None if key is None else found.get(get_str(key, PK))) for shard, key in by_key.items()}


class DynamoEventLog:
    """The EventLog port over the log table (read side: projectors, WatchEvents, tests)."""

    def __init__(self, client: DynamoClient) -> None:
        self._client = client

    def shard_of(self, graph: str) -> str:
        return shard_of(graph)

    async def shards(self) -> list[str]:
        """Every graph that has written its log, in registry (graph id) order."""
        items = await self._client.query_all(
            self._client.tables.log, key_condition="#pk = :pk", names={"#pk": PK},
            values={":pk": {"S": keys.SHARD_REGISTRY_PARTITION}}, consistent=True)
        out: list[str] = []
        for item in items:
            graph = keys.unescape(get_str(item, SK))
            buckets = get_int(item, BUCKETS_ATTRIBUTE) if BUCKETS_ATTRIBUTE in item else 1
            out.extend(keys.shard_id(graph, bucket) for bucket in range(buckets))
        return out

    async def read_after(self, shard: str, position: int, limit: int, *,
                         graph: str | None = None) -> list[LoggedEvent]:
        parsed = parse_shard(shard)
        if parsed is None or limit <= 0 or (graph is not None and graph != parsed[0]):
            return []
        lo, hi = keys.log_records_after(max(position, 0))
        out: list[LoggedEvent] = []
        start: Key | None = None
        while len(out) < limit:
            # every record holds at least one event after ``position``: this many records suffice
            page = await self._client.query(
                self._client.tables.log, key_condition="#pk = :pk AND #sk BETWEEN :lo AND :hi",
                names={"#pk": PK, "#sk": SK},
                values={":pk": {"S": keys.log_partition(*parsed)}, ":lo": {"S": lo}, ":hi": {"S": hi}},
                consistent=True, limit=min(limit - len(out), 100), start_key=start)
            for item in page.items:
                out.extend(le for le in unpack_record(item, shard)
                           if le.position > position and (graph is None or le.event.graph == graph))
            start = page.last_key
            if start is None:
                break
        return out[:limit]

    async def heads(self, shards: Sequence[str] | None = None) -> dict[str, int]:
        wanted = await self.shards() if shards is None else list(shards)
        if not wanted:
            return {}
        return await read_heads(self._client, wanted)
