"""``DynamoProjectionLease``: one projecting process per (log shard, projector) (ADR 0010).

The lease is an item of the read table (``keys.lease_key``: ``owner``, ``expires_at`` in
epoch milliseconds). ``acquire`` is ONE conditional PutItem that takes a free or expired
lease or renews our own::

    attribute_not_exists(pk) OR owner = :me OR expires_at < :now

so of two processes only one holds it at a time (DynamoDB serialises conditional writes on
one item). The holder renews it on every poll (the projector calls ``acquire`` per shard
each round); a holder that stops renewing loses it ``ttl`` seconds later. ``release`` is a
conditional DeleteItem (``owner = :me``).

Holding a lease is not enough on its own: a process paused past its expiry (GC, a stalled
host) may still believe it holds it. So every projection transaction carries
``condition(shard)`` — a ConditionCheck ``owner = :me AND expires_at > :now`` on the lease
item — and a process that lost its lease cannot write (``LeaseLost``). Clocks: ``now`` is
this process's clock; a lease taken over by another host is safe as long as the hosts'
clocks differ by less than the ttl (renewals keep ``expires_at`` ~ttl ahead).
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from typing import Any, Callable

from domain.errors import Reason, Unavailable

from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.attributes import Item, Key
from infrastructure.persistence.dynamodb.client import DynamoClient
from infrastructure.persistence.dynamodb.errors import ConditionFailed
from infrastructure.persistence.dynamodb.read_items import LEASE_EXPIRES_AT, LEASE_OWNER

# query_service.projection.projector.PROJECTOR_NAME (infrastructure cannot import it)
DEFAULT_PROJECTOR = "read_model"
DEFAULT_TTL_SECONDS = 10.0


class LeaseLost(Unavailable):
    """A projection write was refused: this process no longer holds the shard's lease.
    Retryable in the projector's sense (a DomainError: it pauses and asks for the lease again)."""


def default_owner() -> str:
    """This process: host, pid and a random suffix (a restarted pid is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DynamoProjectionLease:
    """ProjectionLease port for one projector name, on the read table.

    ``owner``: this process's id (default ``default_owner()``); ``ttl``: seconds a lease
    lasts without renewal; ``clock``: epoch seconds (injectable for tests)."""

    def __init__(self, client: DynamoClient, *, projector: str = DEFAULT_PROJECTOR, owner: str | None = None,
                 ttl: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.time) -> None:
        if ttl <= 0:
            raise ValueError("a lease ttl must be positive")
        self._client = client
        self._table = client.tables.read
        self.projector = projector
        self.owner = owner or default_owner()
        self.ttl = ttl
        self.clock = clock
        # The projector asks every poll (~50 ms) for every shard: storage is asked only when
        # a lease we hold has run a third of its life (renewal), or, for one another process
        # holds, a third of a ttl after we last found it taken.
        self._held_until: dict[str, float] = {}
        self._taken_until: dict[str, float] = {}

    def _now_ms(self) -> int:
        return math.floor(self.clock() * 1000)

    def key(self, shard: str) -> Key:
        graph, bucket = keys.parse_shard_id(shard)
        return keys.lease_key(graph, bucket, self.projector)

    async def acquire(self, shard: str) -> bool:
        """Take the lease if it is free or expired, renew it if it is ours; False when
        another live process holds it. Asks storage only when a renewal is due or a taken
        lease is worth trying again (see __init__)."""
        now_s = self.clock()
        held = self._held_until.get(shard)
        if held is not None and held - now_s > self.ttl * 2 / 3:
            return True
        if self._taken_until.get(shard, 0.0) > now_s:
            return False
        self._held_until.pop(shard, None)
        now = self._now_ms()
        item: Item = {**self.key(shard), LEASE_OWNER: {"S": self.owner},
                LEASE_EXPIRES_AT: {"N": str(now + math.ceil(self.ttl * 1000))}}
        try:
            await self._client.put_item(
                self._table, item,
                condition="attribute_not_exists(#pk) OR #owner = :me OR #expires < :now",
                names={"#pk": "pk", "#owner": LEASE_OWNER, "#expires": LEASE_EXPIRES_AT},
                values={":me": {"S": self.owner}, ":now": {"N": str(now)}}, return_old_on_failure=True)
        except ConditionFailed as taken:
            # try again a third of a ttl from now, or as soon as the holder's lease runs out
            expires = taken.item.get(LEASE_EXPIRES_AT) if taken.item else None
            retry = now_s + self.ttl / 3
            if expires is not None and "N" in expires:
                retry = min(retry, int(expires["N"]) / 1000)
            self._taken_until[shard] = retry
            return False
        self._held_until[shard] = now_s + self.ttl
        self._taken_until.pop(shard, None)
        return True

    async def release(self, shard: str) -> None:
        """Give the lease up (another process may take it at once); a no-op if not ours."""
        self._held_until.pop(shard, None)
        try:
            await self._client.delete_item(self._table, self.key(shard), condition="#owner = :me",
                                           names={"#owner": LEASE_OWNER}, values={":me": {"S": self.owner}})
        except ConditionFailed:
            pass

    def condition(self, shard: str) -> dict[str, Any]:
        """The ConditionCheck every projection transaction of ``shard`` carries: the lease is
        ours and has not expired by this process's clock."""
        return {"ConditionCheck": {
            "TableName": self._table, "Key": self.key(shard),
            "ConditionExpression": "#owner = :me AND #expires > :now",
            "ExpressionAttributeNames": {"#owner": LEASE_OWNER, "#expires": LEASE_EXPIRES_AT},
            "ExpressionAttributeValues": {":me": {"S": self.owner}, ":now": {"N": str(self._now_ms())}},
        }}

    def lost(self, shard: str) -> LeaseLost:
        return LeaseLost(f"projector {self.projector!r} no longer holds the lease on shard {shard} "
                         f"(owner {self.owner}); the write was refused", reason=Reason.STORAGE_UNAVAILABLE,
                         metadata={"shard": shard, "projector": self.projector, "lease": "lost"})
