"""The command side's DynamoDB store: units of work that commit in ONE TransactWriteItems.

A ``DynamoUnitOfWork`` reads strongly consistently, keeps identity maps and stages every
change (write_repositories.py). ``commit()`` then:

1. reads the head of each log shard it appends to (the graph's shard, ADR 0010; one
   consistent GetItem — BatchGetItem for several graphs) to learn n;
2. renders the staged state changes, each with its condition; the idempotency records,
   completed with this commit's positions (n + k per shard: a retry of the request is
   answered with the very token this commit returns); and the log — the head item moved
   from n to n + k (``seq = :n``, ``attribute_not_exists`` when n = 0), the shard's
   registry item when n = 0, and the events packed into as few commit records as
   possible (event_log.py);
3. sends them as ONE TransactWriteItems (<= 100 items, <= 4 MB; past that the command is
   refused with BATCH_TOO_LARGE, never split). Either every item lands or none does.

If DynamoDB cancels the transaction only because the head moved (another writer of the
graph appended in between) or for a transaction conflict, the unit of work re-reads the
head and sends again with the next positions (bounded: ``commit_retry``, jittered
backoff, then Unavailable). Any other cancellation is the domain error of the first item
whose condition failed (``transaction.Guard``): a stale version is ABORTED, a second
MANY_TO_ONE edge FAILED_PRECONDITION, and so on. Every attempt carries a fresh
ClientRequestToken, so an SDK retry of a request whose answer was lost cannot apply it
twice.

With no events to append, ``commit()`` returns the current heads of the shards of the
graphs the unit of work touched (read or staged), and writes whatever it staged (claims,
topology bumps, idempotency records, cascade jobs) without touching the log.

Idempotency records carry a TTL (``expires_at`` >= created + 24 h): DynamoDB deletes them,
lazily, for free; ``get`` treats a record past its expiry as gone. ``purge_idempotency``
deletes (one conditional DeleteItem each) only what is cheap to find: the records this
process committed and still remembers; everything else is left to the TTL.
"""

from __future__ import annotations

import asyncio
import heapq
import uuid
from functools import partial
from datetime import datetime
from types import TracebackType
from typing import Sequence

from deploy.dynamodb.tables import PK
from domain.errors import Internal, Reason, Unavailable, ValidationFailed
from domain.events import DomainEvent
from domain.ports import Clock, CommitResult, IdempotencyRecord, PendingIdempotencyRecord, Prefetch
from domain.values import epoch_micros

from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.attributes import Item, Key, key_tuple, num, string
from infrastructure.persistence.dynamodb.client import DynamoClient, RetryPolicy
from infrastructure.persistence.dynamodb.errors import ConditionFailed, TransactionCancelled
from infrastructure.persistence.dynamodb.event_log import (
    BUCKET,
    HEAD_ATTRIBUTE,
    DynamoEventLog,
    PackedEvents,
    event_json,
    pack_events,
    read_heads,
    record_items,
    registry_item,
    shard_of,
)
from infrastructure.persistence.dynamodb.transaction import MAX_BYTES, MAX_ITEMS, Guard, TransactionBuilder
from infrastructure.persistence.dynamodb.write_repositories import (
    DynamoCascadeJobQueue,
    DynamoEdgeRepository,
    DynamoIdempotencyStore,
    DynamoNodeRepository,
    DynamoSchemaRepository,
    stage_idempotency,
    stage_type_counters,
)
from infrastructure.persistence.tracking import AggregateTracker
from infrastructure.system import SystemClock

# Losing the log head to another writer of the same graph: re-read it and send again.
DEFAULT_COMMIT_RETRY = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.25)
# Idempotency records a store remembers for purge_idempotency (the rest: TTL).
DEFAULT_REMEMBERED_RECORDS = 100_000


class _LogMoved(Exception):
    """The transaction lost the log head (or a transaction conflict): send it again."""


def _too_large(needed: int) -> ValidationFailed:
    return ValidationFailed(
        f"this command needs {needed} items in one DynamoDB transaction; at most {MAX_ITEMS} — split the batch",
        reason=Reason.BATCH_TOO_LARGE, metadata={"limit": str(MAX_ITEMS), "needed": str(needed)})


def _log_moved(old: Item | None) -> Internal:
    return Internal("the log head moved")  # never raised: the unit of work retries instead


def _record_exists(shard: str, old: Item | None) -> Internal:
    return Internal(f"log shard {shard} holds a commit record at a position this commit took")  # retried instead


class _LogAppend:
    """A commit's events, per shard, encoded and packed once (positions come per attempt)."""

    def __init__(self, events: Sequence[DomainEvent]) -> None:
        by_shard: dict[str, tuple[str, list[str]]] = {}
        for event in events:
            by_shard.setdefault(shard_of(event.graph), (event.graph, []))[1].append(event_json(event))
        self.shards: dict[str, tuple[str, list[PackedEvents], int]] = {
            shard: (graph, pack_events(jsons), len(jsons)) for shard, (graph, jsons) in by_shard.items()}

    def __bool__(self) -> bool:
        return bool(self.shards)

    def items_at_least(self) -> int:
        """Head + records per shard (the registry item only when a shard is new)."""
        return sum(1 + len(parts) for _, parts, _ in self.shards.values())

    def positions(self, heads: dict[str, int]) -> dict[str, int]:
        return {shard: heads[shard] + count for shard, (_, _, count) in self.shards.items()}

    def stage(self, tx: TransactionBuilder, table: str, heads: dict[str, int]) -> None:
        for shard, (graph, parts, count) in self.shards.items():
            head = heads[shard]
            moved = Guard(_log_moved, log=True, what="log-head")
            if head == 0:
                tx.add("Update", table, key=keys.log_head_key(graph, BUCKET), update="SET #s = :next",
                       condition="attribute_not_exists(#pk)", names={"#pk": PK, "#s": HEAD_ATTRIBUTE},
                       values={":next": num(count)}, guard=moved)
                tx.add("Put", table, item=registry_item(graph))
            else:
                tx.add("Update", table, key=keys.log_head_key(graph, BUCKET), update="SET #s = :next",
                       condition="#s = :n", names={"#s": HEAD_ATTRIBUTE},
                       values={":n": num(head), ":next": num(head + count)}, guard=moved)
            for item in record_items(graph, head, parts):
                # taken only if another writer appended at these positions: its head moved too
                tx.add("Put", table, item=item, condition="attribute_not_exists(#pk)", names={"#pk": PK},
                       guard=Guard(partial(_record_exists, shard), log=True, what="log-record"))


class DynamoWriteStore:
    """The write model on DynamoDB over one shared ``DynamoClient`` (not closed by
    ``close()`` unless ``owns_client``)."""

    # The edge entries one command should add or remove at most (the command service's
    # TransactionLimits.max_edges_per_transaction and cascade batch). The app counts
    # logical edges, this store counts items: removing an edge costs ~3 items (its two
    # mirrors and the neighbour's counter), so 25 keeps a DeleteNode, with its node,
    # counters, released claims and log items, well inside one 100-item transaction
    # (SQLite's 100 would not fit). Adding edges costs more (endpoint checks: up to 6
    # items each); a BatchWrite past 100 items is refused by the store anyway.
    max_edges_per_transaction = 25

    def __init__(self, client: DynamoClient, *, clock: Clock | None = None,
                 commit_retry: RetryPolicy = DEFAULT_COMMIT_RETRY,
                 remembered_records: int = DEFAULT_REMEMBERED_RECORDS, owns_client: bool = False) -> None:
        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.commit_retry = commit_retry
        self._remembered_records = remembered_records
        self._owns_client = owns_client
        # (created epoch µs, graph, request id) of records this process committed, oldest first
        self._records: list[tuple[int, str, str]] = []

    @classmethod
    async def open(cls, client: DynamoClient, *, clock: Clock | None = None,
                   owns_client: bool = False) -> "DynamoWriteStore":
        """The store over ``client`` (the tables are checked by ``client.check_tables()``)."""
        return cls(client, clock=clock, owns_client=owns_client)

    def unit_of_work(self) -> "DynamoUnitOfWork":
        return DynamoUnitOfWork(self)

    def event_log(self) -> DynamoEventLog:
        return DynamoEventLog(self.client)

    async def head(self, graph: str | None = None) -> int:
        """The head of ``graph``'s log shard; without a graph, the sum of every shard's
        head (what tests compare before and after a command)."""
        if graph is not None:
            shard = shard_of(graph)
            return (await read_heads(self.client, [shard]))[shard]
        return sum((await self.event_log().heads()).values())

    async def purge_idempotency(self, older_than: datetime) -> int:
        """Delete the idempotency records created before ``older_than`` that this process
        committed and remembers (a conditional DeleteItem each: a newer record under the
        same id stays); returns how many. The TTL on ``expires_at`` deletes every record,
        these included, for free, within days of expiry, and ``get`` ignores expired ones
        meanwhile: this only tidies up sooner, without scanning the table."""
        cutoff = epoch_micros(older_than)
        due: list[tuple[int, str, str]] = []
        while self._records and self._records[0][0] < cutoff:
            due.append(heapq.heappop(self._records))
        if not due:
            return 0

        async def delete(created: int, graph: str, request_id: str) -> bool:
            try:
                await self.client.delete_item(self.client.tables.write, keys.idempotency_key(graph, request_id),
                                              condition="#c = :c", names={"#c": "created"},
                                              values={":c": num(created)})
            except ConditionFailed:  # gone already, or the id was used again since
                return False
            return True

        return sum(await self.client.gather_bounded([delete(*record) for record in due]))

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

    # --- commit -------------------------------------------------------------------------
    def _remember(self, records: Sequence[IdempotencyRecord]) -> None:
        for record in records:
            heapq.heappush(self._records, (epoch_micros(record.created_at), record.graph, record.request_id))
        while len(self._records) > self._remembered_records:
            heapq.heappop(self._records)  # the oldest: left to the TTL

    async def _send(self, tx: TransactionBuilder) -> None:
        if len(tx) > MAX_ITEMS:
            raise _too_large(len(tx))
        if tx.estimated_bytes > MAX_BYTES:
            raise ValidationFailed(
                f"this command writes about {tx.estimated_bytes // 1024} KiB in one DynamoDB transaction; at most "
                f"{MAX_BYTES // 1024} KiB — split the batch", reason=Reason.BATCH_TOO_LARGE,
                metadata={"limit_bytes": str(MAX_BYTES), "needed_bytes": str(tx.estimated_bytes)})
        try:
            await self.client.transact_write(tx.items, client_token=str(uuid.uuid4()))
        except TransactionCancelled as cancelled:
            error = tx.explain(cancelled)
            if error is None:
                raise _LogMoved() from None
            raise error from None
        except Unavailable as exc:
            if "TransactionConflict" in exc.metadata.get("code", ""):
                raise _LogMoved() from None
            raise

    async def commit_staged(self, state: TransactionBuilder, events: Sequence[DomainEvent],
                     pending: Sequence[PendingIdempotencyRecord], touched: Sequence[str]) -> CommitResult:
        """Send a unit of work's staged ``state``, ``events`` and ``pending`` records."""
        log = _LogAppend(events)
        if log:
            shards = list(log.shards)
        else:
            shards = list(dict.fromkeys(shard_of(graph) for graph in [*touched, *(p.graph for p in pending)]))
        needed = len(state) + len(pending) + log.items_at_least()
        if needed > MAX_ITEMS:  # refused before any read
            raise _too_large(needed)
        table_write, table_log = self.client.tables.write, self.client.tables.log
        policy = self.commit_retry
        for attempt in range(1, policy.max_attempts + 1):
            heads = await read_heads(self.client, shards) if shards else {}
            committed = CommitResult(positions=log.positions(heads) if log else dict(heads))
            if not log and not len(state) and not pending:
                return committed
            tx = state.copy()
            records = [p.complete(committed) for p in pending]
            stage_idempotency(tx, table_write, records, self.clock.now())
            log.stage(tx, table_log, heads)
            try:
                await self._send(tx)
            except _LogMoved:
                if attempt < policy.max_attempts:
                    await asyncio.sleep(policy.delay(attempt))
                continue
            self._remember(records)
            return committed
        raise Unavailable(f"the event log of {', '.join(shards) or 'the graph'} kept moving under this commit "
                          f"({policy.max_attempts} attempts); nothing was written, retry",
                          reason=Reason.STORAGE_UNAVAILABLE, metadata={"shards": ",".join(shards)})


class DynamoUnitOfWork:
    """One command's unit of work (see the module docstring). Used once: ``async with``
    it, read and stage through its repositories, ``commit()``; leaving without a commit,
    or ``rollback()``, sends nothing."""

    def __init__(self, store: DynamoWriteStore) -> None:
        self._store = store
        self.client = store.client
        self.tables = store.client.tables
        self._state = "new"  # new -> open -> committing -> committed | closed
        self._touched: dict[str, None] = {}
        self._aggregates = AggregateTracker()
        self.schemas = DynamoSchemaRepository(self)
        self.nodes = DynamoNodeRepository(self)
        self.edges = DynamoEdgeRepository(self)
        self.idempotency = DynamoIdempotencyStore(self)
        self.cascades = DynamoCascadeJobQueue(self)

    # --- used by the repositories ------------------------------------------------------
    def ensure_open(self, graph: str | None = None) -> None:
        """Refuse a call outside ``async with`` (or after commit/rollback); remember the
        graph it concerns (a commit without events names the heads of those graphs)."""
        if self._state != "open":
            raise Internal("the unit of work is not open (use `async with uow:`)")
        if graph is not None and graph not in self._touched:
            self._touched[graph] = None

    def track(self, aggregate: object) -> None:
        self._aggregates.track(aggregate)

    def now(self) -> datetime:
        return self._store.clock.now()

    async def get_item(self, key: Key) -> Item | None:
        return await self.client.get_item(self.tables.write, key, consistent=True)

    async def batch_get(self, item_keys: Sequence[Key]) -> list[Item]:
        return await self.client.batch_get(self.tables.write, item_keys, consistent=True)

    async def get_items(self, item_keys: Sequence[Key]) -> dict[tuple[str, str], Item]:
        """The items that exist among ``item_keys``, by (pk, sk): one GetItem for one key,
        else BatchGetItem (chunks of 100, concurrently). Strongly consistent."""
        if len(item_keys) == 1:
            item = await self.get_item(item_keys[0])
            return {} if item is None else {key_tuple(item): item}
        return {key_tuple(item): item for item in await self.batch_get(item_keys)}

    async def query_partition(self, partition: str, prefix: str, *, keys_only: bool = False) -> list[Item]:
        """Every item of ``partition`` whose sort key starts with ``prefix`` (consistent, all pages)."""
        return await self.client.query_all(
            self.tables.write, key_condition="#pk = :pk AND begins_with(#sk, :prefix)",
            names={"#pk": PK, "#sk": "sk"}, values={":pk": string(partition), ":prefix": string(prefix)},
            consistent=True, projection=[] if keys_only else None)

    # --- WriteUnitOfWork -------------------------------------------------------------------
    async def prefetch(self, plan: Prefetch) -> None:
        """Load what ``plan`` names and this unit of work has not seen: one BatchGetItem
        (chunks of 100 keys, concurrently) for nodes, edges, counters and unique claims."""
        self.ensure_open()
        for graph in [*(g for g, _ in plan.nodes), *(e.graph for e in plan.edges)]:
            self.ensure_open(graph)
        wanted = [*self.nodes.wanted(plan), *self.edges.wanted(plan)]
        if not wanted:
            return
        found = await self.get_items([key for key, _ in wanted])
        for key, apply in wanted:
            apply(found.get(key_tuple(key)))

    async def __aenter__(self) -> "DynamoUnitOfWork":
        if self._state != "new":
            raise Internal("a unit of work is used once")
        self._state = "open"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._state == "open":
            await self.rollback()
        self._state = "closed"

    async def commit(self) -> CommitResult:
        self.ensure_open()
        # the schemas that cap counters (cardinality), read while the unit of work is open
        schemas = {graph: self.schemas.cached(graph) or await self.schemas.get(graph)
                   for graph in sorted(self.edges.capped_graphs())}
        self._state = "committing"  # from here on, nothing more can be staged
        events = self._aggregates.take_events()
        pending = self.idempotency.take_pending()
        state = TransactionBuilder()
        table = self.tables.write
        self.nodes.stage(state)
        self.edges.stage(state, self.nodes.written(), schemas)
        self.schemas.stage(state)
        stage_type_counters(state, table, self.nodes.type_deltas(), self.edges.type_deltas())
        self.cascades.stage(state)
        result = await self._store.commit_staged(state, events, pending, list(self._touched))
        self._state = "committed"
        return result

    async def rollback(self) -> None:
        """Nothing was sent: forget what was staged. The unit of work is over."""
        if self._state != "open":
            return
        self._state = "closed"
        self._aggregates.discard()
        self._aggregates.take_events()
        self.idempotency.take_pending()
