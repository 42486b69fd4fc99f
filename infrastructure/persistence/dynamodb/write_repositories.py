"""Repositories of the write model over one DynamoDB unit of work.

Every read is strongly consistent (GetItem / BatchGetItem ``ConsistentRead``, Query
``ConsistentRead``): a rule is never checked against a stale replica. Each repository
keeps an identity map of what it read (present, or known absent) and STAGES its changes;
nothing is written before ``commit``, which renders every staged change into ONE
TransactWriteItems (``stage``), each item with the condition that makes the decision
taken on the read race free, and a ``Guard`` naming the domain error its failure means:

- node: Put ``attribute_not_exists(pk)`` (add) or ``version = :expected`` (save);
- edge: out-edge and in-edge mirror items, Put ``attribute_not_exists(pk)`` (add) or
  Delete ``attribute_exists(pk)`` (remove);
- endpoint: ConditionCheck that each endpoint of an added edge exists and is not
  tombstoned — merged away when the node item is written in the same transaction;
- per-node edge counters: one ``ADD`` per counter item (aggregated), with
  ``attribute_not_exists(c) OR c <= :limit - delta`` where the edge type's cardinality caps
  the direction (a second MANY_TO_ONE edge cannot commit, whatever was read);
- unique claims: Put ``attribute_not_exists(pk) OR holder = :me``, releases Delete
  ``holder = :me``;
- type counters: one ``ADD`` per (graph, kind, type), on one random bucket of eight;
- topology versions: ``SET v = :expected + 1`` if ``v = :expected`` (``attribute_not_exists``
  from 0);
- schema: Put version v + 1 ``attribute_not_exists(pk)``;
- cascade jobs: Update ``if_not_exists`` per attribute (enqueue keeps the first) or Delete.

Item attributes (write table; keys in keys.py):
node ``type, props (properties_json), version, created, updated (epoch µs), deleted``;
edge (both directions) ``props, created``; counters ``c``; claim ``holder``; schema
``body (schema_to_dict JSON), applied``; idempotency ``operation, fingerprint, response (B),
created, expires_at (TTL, epoch s)``; topology ``v``; cascade job ``graph, node,
request_id, trace, created`` + the ``pending`` index attributes.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from deploy.dynamodb.tables import PENDING_INDEX, PENDING_PK, PENDING_SK, PK, SK, TTL_ATTRIBUTE
from domain.edge import Direction, Edge, edge_already_exists, edge_not_found, topology_changed_concurrently
from domain.errors import DomainError, Internal, Reason, RuleViolated, VersionConflict
from domain.node import Node, node_already_exists, node_changed_concurrently, node_not_found
from domain.ports import CascadeJob, IdempotencyRecord, Prefetch
from domain.rules import BusinessRule, CardinalityRespected, EndpointExists, UniqueValueFree, check_rule
from domain.schema import EdgeType, Schema, schema_changed_concurrently, schema_from_dict, schema_to_dict
from domain.values import (
    EdgeKey,
    NodeRef,
    PropertyValue,
    epoch_micros,
    from_epoch_micros,
    properties_from_json,
    properties_json,
)

from infrastructure.persistence.idempotency import StagedIdempotencyStore
from infrastructure.persistence.dynamodb import keys
from infrastructure.persistence.dynamodb.attributes import (
    AttributeValue,
    Item,
    Key,
    binary,
    boolean,
    get_bool,
    get_bytes,
    get_int,
    get_str,
    key_tuple,
    num,
    string,
)
from infrastructure.persistence.dynamodb.transaction import Guard, TransactionBuilder
from infrastructure.persistence.tracking import NodeIdentityMap

if TYPE_CHECKING:
    from infrastructure.persistence.dynamodb.write_store import DynamoUnitOfWork

NodeId = tuple[str, str]  # (graph, node id)
CounterId = tuple[str, str, str, str]  # (graph, node id, edge type, "OUT" | "IN")
ClaimId = tuple[str, str, str, str]  # (graph, node type, property, keys.claim_value(value))
TypeId = tuple[str, str]  # (graph, type name)
# What a prefetch asked for: the key, and what to do with the item read (None: absent).
Wanted = tuple[Key, Callable[[Item | None], None]]

COUNT = "c"
_NOT_EXISTS = "attribute_not_exists(#pk)"
_EXISTS = "attribute_exists(#pk)"
_PK_NAME = {"#pk": PK}


def _regardless(make: Callable[[], DomainError]) -> Callable[[Item | None], DomainError]:
    """A guard's explanation that does not depend on the stored item."""
    def explain(old: Item | None) -> DomainError:
        return make()
    return explain


def _rule_error(rule: BusinessRule, fallback: str) -> DomainError:
    """The RuleViolated ``check_rule`` raises for ``rule``; a VersionConflict when what
    DynamoDB returned does not break it (the item changed again since)."""
    try:
        check_rule(rule)
    except RuleViolated as error:
        return error
    return VersionConflict(f"{fallback} changed concurrently; nothing was written, retry",
                           reason=Reason.VERSION_CONFLICT)


# --- item codecs ------------------------------------------------------------------------

def node_item(node: Node) -> Item:
    return {**keys.node_key(node.graph, node.id), "type": string(node.type),
            "props": string(properties_json(node.properties)), "version": num(node.version),
            "created": num(epoch_micros(node.create_time)), "updated": num(epoch_micros(node.update_time)),
            "deleted": boolean(node.deleted)}


def node_from_item(item: Item) -> Node:
    graph, node_id = keys.parse_node_partition(get_str(item, PK))
    return Node(graph=graph, id=node_id, type=get_str(item, "type"), properties=properties_from_json(get_str(item, "props")),
                version=get_int(item, "version"), create_time=from_epoch_micros(get_int(item, "created")),
                update_time=from_epoch_micros(get_int(item, "updated")), deleted=get_bool(item, "deleted"))


def edge_items(edge: Edge) -> tuple[Item, Item]:
    """(out-edge item under the source, in-edge mirror under the target): both carry the
    properties and create time, so a listing in either direction reads one range."""
    body: Item = {"props": string(properties_json(edge.properties)), "created": num(epoch_micros(edge.create_time))}
    out_key, in_key = keys.edge_item_keys(edge.key)
    return {**out_key, **body}, {**in_key, **body}


def edge_from_item(item: Item) -> Edge:
    graph, node_id = keys.parse_node_partition(get_str(item, PK))
    direction, edge_type, neighbour = keys.parse_edge_sk(get_str(item, SK))
    source, target = (node_id, neighbour) if direction is Direction.OUT else (neighbour, node_id)
    return Edge(graph=graph, source=source, type=edge_type, target=target,
                properties=properties_from_json(get_str(item, "props")),
                create_time=from_epoch_micros(get_int(item, "created")))


def _count(item: Item | None) -> int:
    return 0 if item is None or COUNT not in item else get_int(item, COUNT)








# --- schemas ----------------------------------------------------------------------------

class DynamoSchemaRepository:
    def __init__(self, uow: "DynamoUnitOfWork") -> None:
        self._uow = uow
        self._seen: dict[str, Schema] = {}
        self._stored: dict[str, int] = {}  # graph -> newest version stored (as read, or as staged)
        self._staged: list[Schema] = []

    def cached(self, graph: str) -> Schema | None:
        return self._seen.get(graph)

    async def _newest(self, graph: str, *, body: bool) -> Item | None:
        page = await self._uow.client.query(
            self._uow.tables.write, key_condition="#pk = :pk", names=_PK_NAME,
            values={":pk": string(keys.schema_partition(graph))}, forward=False, limit=1, consistent=True,
            projection=None if body else [])
        return page.items[0] if page.items else None

    async def get(self, graph: str) -> Schema:
        self._uow.ensure_open(graph)
        if graph in self._seen:
            return self._seen[graph]
        item = await self._newest(graph, body=True)
        schema = schema_from_dict(json.loads(get_str(item, "body"))) if item is not None else Schema(graph)
        self._seen[graph] = schema
        self._stored.setdefault(graph, schema.version)
        self._uow.track(schema)
        return schema

    async def save(self, schema: Schema) -> None:
        self._uow.ensure_open(schema.graph)
        graph = schema.graph
        if graph not in self._stored:
            item = await self._newest(graph, body=False)
            self._stored[graph] = int(get_str(item, SK)) if item is not None else 0
        current = self._stored[graph]
        if current != schema.version - 1:
            raise schema_changed_concurrently(schema, current)
        self._staged.append(schema)
        self._stored[graph] = schema.version
        self._seen[graph] = schema
        self._uow.track(schema)

    def stage(self, tx: TransactionBuilder) -> None:
        for schema in self._staged:
            applied = epoch_micros(schema.update_time) if schema.update_time else 0
            item = {**keys.schema_key(schema.graph, schema.version),
                    "body": string(json.dumps(schema_to_dict(schema), separators=(",", ":"))),
                    "applied": num(applied)}

            def explain(old: Item | None, schema: Schema = schema) -> DomainError:
                return schema_changed_concurrently(schema, schema.version)  # version v exists: another writer stored it

            tx.add("Put", self._uow.tables.write, item=item, condition=_NOT_EXISTS, names=_PK_NAME,
                   guard=Guard(explain, what="schema"))


# --- nodes ------------------------------------------------------------------------------

class DynamoNodeRepository:
    """An identity map of nodes (one object per node, and the version each is stored at:
    the condition of its save), unique claims as read and as changed, staged writes."""

    def __init__(self, uow: "DynamoUnitOfWork") -> None:
        self._uow = uow
        self._identity = NodeIdentityMap(uow)
        self._absent: set[NodeId] = set()
        self._stored_deleted: dict[NodeId, bool] = {}  # as stored when read (type counters move on a change)
        self._writes: dict[NodeId, int | None] = {}  # None: insert; else update conditional on that version
        self._holders: dict[ClaimId, str | None] = {}  # claim -> holder as stored (None: free)
        self._claims: dict[ClaimId, str | None] = {}  # claim -> holder after this unit of work
        self._claim_values: dict[ClaimId, PropertyValue] = {}
        self._type_counts: dict[TypeId, int] = {}  # stored sum of a type's counter buckets

    # --- reading ------------------------------------------------------------------------
    def _remember(self, item: Item) -> Node:
        node = node_from_item(item)
        known: Node | None = self._identity.get(node.graph, node.id)
        if known is not None:
            return known
        self._stored_deleted[(node.graph, node.id)] = node.deleted
        remembered: Node = self._identity.remember(node)
        return remembered

    def _loaded(self, key: NodeId, item: Item | None) -> None:
        if item is None:
            if self._identity.get(*key) is None:
                self._absent.add(key)
        else:
            self._remember(item)

    def _node(self, key: NodeId) -> Node:
        node: Node | None = self._identity.get(*key)
        if node is None:
            raise Internal(f"node {key[1]} was staged but is not in the identity map")
        return node

    def _known(self, key: NodeId) -> bool:
        return key in self._absent or self._identity.get(*key) is not None

    def wanted(self, plan: Prefetch) -> list[Wanted]:
        out: list[Wanted] = []
        for key in plan.nodes:
            if not self._known(key):
                out.append((keys.node_key(*key), partial(self._loaded, key)))
        claims: set[ClaimId] = set()
        for graph, node_type, prop, value in plan.unique_values:
            try:
                claim = (graph, node_type, prop, keys.claim_value(value))
            except (TypeError, ValueError):  # not a property value: the command refuses it
                continue
            if claim in self._holders or claim in self._claims or claim in claims:
                continue
            claims.add(claim)
            out.append((keys.unique_claim_key(graph, node_type, prop, value), partial(self._claim_loaded, claim)))
        return out

    def _claim_loaded(self, claim: ClaimId, item: Item | None) -> None:
        self._holders.setdefault(claim, None if item is None else get_str(item, "holder"))

    async def get(self, graph: str, node_id: str) -> Node | None:
        self._uow.ensure_open(graph)
        key = (graph, node_id)
        node: Node | None = self._identity.get(graph, node_id)
        if node is not None or key in self._absent:
            return node
        self._loaded(key, await self._uow.get_item(keys.node_key(graph, node_id)))
        found: Node | None = self._identity.get(graph, node_id)
        return found

    async def get_many(self, graph: str, node_ids: Sequence[str]) -> dict[str, Node]:
        self._uow.ensure_open(graph)
        out: dict[str, Node] = {}
        missing: list[NodeId] = []
        for node_id in node_ids:
            key = (graph, node_id)
            node = self._identity.get(graph, node_id)
            if node is not None:
                out[node_id] = node
            elif key not in self._absent and key not in missing:
                missing.append(key)
        if missing:
            found = await self._uow.get_items([keys.node_key(*k) for k in missing])
            for key in missing:
                self._loaded(key, found.get(key_tuple(keys.node_key(*key))))
                node = self._identity.get(*key)
                if node is not None:
                    out[key[1]] = node
        return out

    # --- staging ------------------------------------------------------------------------
    async def add(self, node: Node) -> None:
        self._uow.ensure_open(node.graph)
        key = (node.graph, node.id)
        if not self._known(key):
            await self.get(*key)
        if key not in self._absent:
            raise node_already_exists(node.ref)
        self._absent.discard(key)
        self._writes[key] = None
        self._identity.remember(node)

    async def save(self, node: Node) -> None:
        self._uow.ensure_open(node.graph)
        key = (node.graph, node.id)
        expected: int = self._identity.stored_version(node)
        if self._identity.get(*key) is None:  # loaded by another unit of work: check its version now
            item = None if key in self._absent else await self._uow.get_item(keys.node_key(*key))
            if item is None:
                raise node_not_found(node.ref)
            stored = get_int(item, "version")
            if stored != expected:
                raise node_changed_concurrently(node, stored, expected)
            self._stored_deleted[key] = get_bool(item, "deleted")
        self._writes.setdefault(key, expected)
        self._identity.remember(node)

    def written(self) -> set[NodeId]:
        """The nodes whose item this unit of work writes (no endpoint check needed)."""
        return set(self._writes)

    def type_deltas(self) -> Counter[TypeId]:
        """Live nodes per (graph, type) this unit of work adds (+) or tombstones (-)."""
        deltas: Counter[TypeId] = Counter()
        for key, expected in self._writes.items():
            node = self._node(key)
            before = 0 if expected is None or self._stored_deleted.get(key, False) else 1
            after = 0 if node.deleted else 1
            if after != before:
                deltas[(node.graph, node.type)] += after - before
        return deltas

    async def count_of_type(self, graph: str, node_type: str) -> int:
        self._uow.ensure_open(graph)
        type_id = (graph, node_type)
        if type_id not in self._type_counts:
            items = await self._uow.batch_get(keys.type_counter_keys(graph, "node", node_type))
            self._type_counts[type_id] = sum(_count(item) for item in items)
        return self._type_counts[type_id] + self.type_deltas()[type_id]

    # --- unique claims ------------------------------------------------------------------
    async def _holder(self, claim: ClaimId, value: PropertyValue) -> str | None:
        self._uow.ensure_open(claim[0])
        if claim in self._claims:
            return self._claims[claim]
        if claim not in self._holders:
            self._claim_loaded(claim, await self._uow.get_item(keys.unique_claim_key(claim[0], claim[1], claim[2],
                                                                                      value)))
        return self._holders[claim]

    async def unique_holder(self, graph: str, node_type: str, property_name: str,
                            value: PropertyValue) -> str | None:
        self._uow.ensure_open(graph)
        return await self._holder((graph, node_type, property_name, keys.claim_value(value)), value)

    async def claim_unique(self, graph: str, node_type: str, property_name: str,
                           value: PropertyValue, node_id: str) -> None:
        self._uow.ensure_open(graph)
        claim = (graph, node_type, property_name, keys.claim_value(value))
        holder = await self._holder(claim, value)
        if holder == node_id:  # already claimed by this very node
            return
        check_rule(UniqueValueFree(node_type, property_name, value, holder, node_id))
        self._claims[claim] = node_id
        self._claim_values[claim] = value

    async def release_unique(self, graph: str, node_type: str, property_name: str,
                             value: PropertyValue, node_id: str) -> None:
        self._uow.ensure_open(graph)
        claim = (graph, node_type, property_name, keys.claim_value(value))
        if await self._holder(claim, value) != node_id:  # not the holder: nothing to release
            return
        self._claims[claim] = None
        self._claim_values[claim] = value

    # --- commit -------------------------------------------------------------------------
    def stage(self, tx: TransactionBuilder) -> None:
        table = self._uow.tables.write
        for node_id, expected in self._writes.items():
            node = self._node(node_id)
            if expected is None:
                tx.add("Put", table, item=node_item(node), condition=_NOT_EXISTS, names=_PK_NAME,
                       guard=Guard(_regardless(partial(node_already_exists, node.ref)), what="node"))
                continue

            def explain(old: Item | None, node: Node = node, expected: int = expected) -> DomainError:
                if old is None:
                    return node_not_found(node.ref)
                return node_changed_concurrently(node, get_int(old, "version"), expected)

            tx.add("Put", table, item=node_item(node), condition="#v = :expected", names={"#v": "version"},
                   values={":expected": num(expected)}, guard=Guard(explain, what="node"), return_old=True)
        for claim, holder in self._claims.items():
            stored = self._holders.get(claim)
            if holder == stored:
                continue
            graph, node_type, prop, _ = claim
            value = self._claim_values[claim]
            claim_key = keys.unique_claim_key(graph, node_type, prop, value)
            if holder is None:
                assert stored is not None

                def released(old: Item | None, claim: ClaimId = claim) -> DomainError:
                    return VersionConflict(f"the claim of {claim[1]}.{claim[2]} changed concurrently; nothing "
                                           "was written, retry", reason=Reason.VERSION_CONFLICT)

                tx.add("Delete", table, key=claim_key, condition="#h = :stored", names={"#h": "holder"},
                       values={":stored": string(stored)}, guard=Guard(released, what="claim"))
                continue
            condition = "attribute_not_exists(#pk) OR #h = :me" if stored is None else "#h = :stored OR #h = :me"
            values: dict[str, AttributeValue] = {":me": string(holder)}
            if stored is not None:
                values[":stored"] = string(stored)

            def taken(old: Item | None, node_type: str = node_type, prop: str = prop, value: PropertyValue = value,
                      holder: str = holder) -> DomainError:
                current = None if old is None or "holder" not in old else get_str(old, "holder")
                return _rule_error(UniqueValueFree(node_type, prop, value, current, holder), f"{node_type}.{prop}")

            tx.add("Put", table, item={**claim_key, "holder": string(holder)}, condition=condition,
                   names={"#pk": PK, "#h": "holder"}, values=values, guard=Guard(taken, what="claim"),
                   return_old=True)


# --- edges ------------------------------------------------------------------------------

def _counters_of(key: EdgeKey) -> tuple[CounterId, CounterId]:
    return ((key.graph, key.source, key.type, "OUT"), (key.graph, key.target, key.type, "IN"))


def _limit(edge_type: EdgeType | None, direction: str) -> int | None:
    if edge_type is None:
        return None
    return edge_type.cardinality.max_out if direction == "OUT" else edge_type.cardinality.max_in


class DynamoEdgeRepository:
    def __init__(self, uow: "DynamoUnitOfWork") -> None:
        self._uow = uow
        self._edges: dict[EdgeKey, Edge | None] = {}  # as this unit of work sees them (None: absent)
        self._stored: dict[EdgeKey, bool] = {}  # whether the out-edge item existed when read
        self._changed: dict[EdgeKey, None] = {}  # keys added or removed here, in order
        self._counts: dict[CounterId, int] = {}  # counter values as read
        self._deltas: Counter[CounterId] = Counter()
        self._type_counts: dict[TypeId, int] = {}
        self._type_deltas: Counter[TypeId] = Counter()
        self._topology: dict[TypeId, int] = {}  # as first read (or bumped from) here
        self._bumps: dict[TypeId, int] = {}  # -> expected

    # --- reading ------------------------------------------------------------------------
    def _loaded(self, key: EdgeKey, item: Item | None) -> None:
        if key in self._edges:
            return
        self._stored[key] = item is not None
        self._edges[key] = None if item is None else edge_from_item(item)

    def _counter_loaded(self, counter: CounterId, item: Item | None) -> None:
        self._counts[counter] = _count(item)

    @staticmethod
    def _counter_key(counter: CounterId) -> Key:
        graph, node, edge_type, direction = counter
        return keys.edge_counter_key(graph, node, edge_type, Direction(direction))

    def wanted(self, plan: Prefetch) -> list[Wanted]:
        out: list[Wanted] = []
        for key in plan.edges:
            if key not in self._edges:
                out.append((keys.out_edge_key(key.graph, key.source, key.type, key.target),
                            partial(self._loaded, key)))
        for counter in plan.counters:
            if counter not in self._counts:
                out.append((self._counter_key(counter), partial(self._counter_loaded, counter)))
        return out

    async def _load(self, wanted: Sequence[EdgeKey]) -> None:
        unknown = [key for key in dict.fromkeys(wanted) if key not in self._edges]
        if not unknown:
            return
        item_keys = {key: keys.out_edge_key(key.graph, key.source, key.type, key.target) for key in unknown}
        found = await self._uow.get_items(list(item_keys.values()))
        for key, item_key in item_keys.items():
            self._loaded(key, found.get(key_tuple(item_key)))

    async def get(self, key: EdgeKey) -> Edge | None:
        self._uow.ensure_open(key.graph)
        await self._load([key])
        edge = self._edges[key]
        if edge is not None:
            self._uow.track(edge)
        return edge

    # --- staging ------------------------------------------------------------------------
    async def add(self, edge: Edge) -> None:
        self._uow.ensure_open(edge.graph)
        key = edge.key
        await self._load([key])
        if self._edges[key] is not None:
            raise edge_already_exists(key)
        self._edges[key] = edge
        self._changed[key] = None
        for counter in _counters_of(key):
            self._deltas[counter] += 1
        self._type_deltas[(key.graph, key.type)] += 1
        self._uow.track(edge)

    async def remove_many(self, edges: Sequence[Edge]) -> None:
        """All or nothing: every edge is checked before any is removed."""
        if not edges:
            self._uow.ensure_open()
            return
        for edge in edges:
            self._uow.ensure_open(edge.graph)
        await self._load([e.key for e in edges])
        removed: set[EdgeKey] = set()
        for edge in edges:
            if edge.key in removed or self._edges[edge.key] is None:
                raise edge_not_found(edge.key)
            removed.add(edge.key)
        for edge in edges:
            key = edge.key
            self._edges[key] = None
            self._changed[key] = None
            for counter in _counters_of(key):
                self._deltas[counter] -= 1
            self._type_deltas[(key.graph, key.type)] -= 1
            self._uow.track(edge)

    # --- counters and queries -----------------------------------------------------------
    async def count(self, graph: str, node_id: str, edge_type: str, direction: Direction) -> int:
        self._uow.ensure_open(graph)
        directions = ("OUT", "IN") if direction is Direction.BOTH else (direction.value,)
        counters = [(graph, node_id, edge_type, d) for d in directions]
        unknown = [c for c in counters if c not in self._counts]
        if unknown:
            found = await self._uow.get_items([self._counter_key(c) for c in unknown])
            for counter in unknown:
                self._counter_loaded(counter, found.get(key_tuple(self._counter_key(counter))))
        return sum(self._counts[c] + self._deltas[c] for c in counters)

    async def counts_for_node(self, graph: str, node_id: str) -> dict[tuple[str, Direction], int]:
        self._uow.ensure_open(graph)
        items = await self._uow.query_partition(keys.node_partition(graph, node_id), keys.COUNTERS_PREFIX)
        stored: dict[CounterId, int] = {}
        for item in items:
            direction, edge_type = keys.parse_counter_sk(get_str(item, SK))
            stored[(graph, node_id, edge_type, direction.value)] = _count(item)
        for counter in [c for c in self._counts if c[0] == graph and c[1] == node_id]:
            self._counts[counter] = stored.get(counter, 0)
        self._counts.update(stored)
        out: dict[tuple[str, Direction], int] = {}
        for counter in dict.fromkeys([*stored, *(c for c in self._deltas if c[0] == graph and c[1] == node_id)]):
            total = self._counts.get(counter, 0) + self._deltas[counter]
            if total > 0:
                out[(counter[2], Direction(counter[3]))] = total
        return out

    async def list_for_node(self, graph: str, node_id: str, direction: Direction,
                            edge_type: str | None = None, limit: int = 1000) -> list[Edge]:
        """Newest first, OUT then IN for BOTH. The write model has no time-ordered index:
        the node's whole range in each direction is read (consistent Query pages) and
        sorted here, so this costs O(degree) — fine for DeleteNode's bounded cascades."""
        self._uow.ensure_open(graph)
        sides = [side for side in (Direction.OUT, Direction.IN) if direction in (side, Direction.BOTH)]
        partition = keys.node_partition(graph, node_id)
        ranges = await self._uow.client.gather_bounded(
            [self._uow.query_partition(partition, keys.edges_prefix(side, edge_type)) for side in sides])
        out: list[Edge] = []
        for side, items in zip(sides, ranges):
            if len(out) >= limit:
                break
            found: dict[EdgeKey, Edge] = {}
            for item in items:
                edge = edge_from_item(item)
                key = edge.key
                if key not in self._changed:  # what is stored, unless this unit of work changed it
                    self._stored[key] = True
                    self._edges[key] = self._edges.get(key) or edge
                current = self._edges[key]
                if current is not None:
                    found[key] = current
            for key in self._changed:  # added here, not stored yet
                current = self._edges[key]
                end = key.source if side is Direction.OUT else key.target
                if (current is not None and key not in found and key.graph == graph and end == node_id
                        and (edge_type is None or key.type == edge_type)):
                    found[key] = current
            ordered = sorted(found.values(), key=lambda e: (e.source, e.type, e.target))
            ordered.sort(key=lambda e: e.create_time, reverse=True)
            out.extend(ordered[:limit - len(out)])
        for edge in out:
            self._uow.track(edge)
        return out

    async def out_neighbours(self, graph: str, edge_type: str, node_ids: Sequence[str]) -> dict[str, list[str]]:
        """A consistent Query of ``O#{type}#`` under each node, run concurrently
        (``ClientOptions.query_concurrency`` at a time), with the edges staged here.

        One round for a frontier that fits one wave of Queries. A larger one first reads
        the nodes' OUT counters of the type (BatchGetItem: 100 per call, concurrently) and
        queries only the nodes that have such edges: most of a big frontier are leaves, so
        this saves most of the requests for one more round. (The two reads are not one
        snapshot, nor are the Queries among themselves: the acyclicity check needs none,
        its topology version fails the commit if the type's edges changed meanwhile.)"""
        self._uow.ensure_open(graph)
        sources = list(dict.fromkeys(node_ids))
        if not sources:
            return {}
        queried = sources
        if len(sources) > self._uow.client.options.query_concurrency:
            counters = [(graph, source, edge_type, "OUT") for source in sources]
            found = await self._uow.get_items([self._counter_key(c) for c in counters])
            for counter in counters:
                self._counter_loaded(counter, found.get(key_tuple(self._counter_key(counter))))
            queried = [counter[1] for counter in counters if self._counts[counter] > 0]
        prefix = keys.edges_prefix(Direction.OUT, edge_type)
        ranges = await self._uow.client.gather_bounded(
            [self._uow.query_partition(keys.node_partition(graph, s), prefix, keys_only=True) for s in queried])
        out: dict[str, list[str]] = {}
        for source, items in zip(queried, ranges):
            if items:
                out[source] = [keys.parse_edge_sk(get_str(item, SK))[2] for item in items]
        wanted = set(sources)
        for key in self._changed:
            if key.graph != graph or key.type != edge_type or key.source not in wanted:
                continue
            targets = out.setdefault(key.source, [])
            if self._edges[key] is None:
                if key.target in targets:
                    targets.remove(key.target)
            elif key.target not in targets:
                targets.append(key.target)
        return {source: targets for source, targets in out.items() if targets}

    async def topology_version(self, graph: str, edge_type: str) -> int:
        self._uow.ensure_open(graph)
        key = (graph, edge_type)
        if key not in self._topology:
            item = await self._uow.get_item(keys.topology_key(graph, edge_type))
            self._topology.setdefault(key, 0 if item is None else get_int(item, "v"))
        return self._topology[key]

    def bump_topology(self, graph: str, edge_type: str, expected: int) -> None:
        self._uow.ensure_open(graph)
        key = (graph, edge_type)
        staged = self._bumps.get(key)
        if staged is not None:
            if staged != expected:
                raise topology_changed_concurrently(graph, edge_type, staged, expected)
            return
        self._bumps[key] = expected
        self._topology.setdefault(key, expected)

    async def count_of_type(self, graph: str, edge_type: str) -> int:
        self._uow.ensure_open(graph)
        type_id = (graph, edge_type)
        if type_id not in self._type_counts:
            items = await self._uow.batch_get(keys.type_counter_keys(graph, "edge", edge_type))
            self._type_counts[type_id] = sum(_count(item) for item in items)
        return self._type_counts[type_id] + self._type_deltas[type_id]

    # --- commit -------------------------------------------------------------------------
    def type_deltas(self) -> Counter[TypeId]:
        return self._type_deltas

    def capped_graphs(self) -> set[str]:
        """Graphs whose schema the commit needs: those with counters that grow."""
        return {counter[0] for counter, delta in self._deltas.items() if delta > 0}

    def stage(self, tx: TransactionBuilder, written_nodes: set[NodeId], schemas: dict[str, Schema]) -> None:
        table = self._uow.tables.write
        endpoints: dict[NodeId, str] = {}  # node -> the role it plays first ("source" / "target")
        for key in self._changed:
            stored, final = self._stored[key], self._edges[key]
            if final is None and not stored:
                continue  # added and removed again here
            if final is not None:
                out_item, in_item = edge_items(final)
                condition = _EXISTS if stored else _NOT_EXISTS
                explain = _regardless(partial(edge_not_found if stored else edge_already_exists, key))
                for item in (out_item, in_item):
                    tx.add("Put", table, item=item, condition=condition, names=_PK_NAME,
                           guard=Guard(explain, what="edge"))
                for node_key, role in (((key.graph, key.source), "source"), ((key.graph, key.target), "target")):
                    endpoints.setdefault(node_key, role)
            else:
                for item_key in keys.edge_item_keys(key):
                    tx.add("Delete", table, key=item_key, condition=_EXISTS, names=_PK_NAME,
                           guard=Guard(_regardless(partial(edge_not_found, key)), what="edge"))
        for (graph, node_id), role in endpoints.items():
            if (graph, node_id) in written_nodes:
                continue  # the node's own Put carries its condition; a transaction touches an item once
            ref = NodeRef(graph, node_id)
            tx.add("ConditionCheck", table, key=keys.node_key(graph, node_id),
                   condition="attribute_exists(#pk) AND #d = :false", names={"#pk": PK, "#d": "deleted"},
                   values={":false": boolean(False)},
                   guard=Guard(_regardless(partial(_rule_error, EndpointExists(role, ref.name, None), ref.name)),
                               what="endpoint"))
        for counter, delta in self._deltas.items():
            if delta == 0:
                continue
            graph, node_id, edge_type, direction = counter
            schema = schemas.get(graph)
            et = schema.edge_types.get(edge_type) if schema is not None else None
            limit = _limit(et, direction) if delta > 0 else None
            names = {"#c": COUNT}
            values: dict[str, AttributeValue] = {":d": num(delta)}
            if limit is None or et is None:
                tx.add("Update", table, key=self._counter_key(counter), update="ADD #c :d", names=names, values=values)
                continue
            name = NodeRef(graph, node_id).name
            if delta > limit:  # the domain's rules refuse this first; never send it
                raise _rule_error(CardinalityRespected(et, name, direction, delta - 1), name)
            values[":max"] = num(limit - delta)

            def capped(old: Item | None, et: EdgeType = et, name: str = name, direction: str = direction) -> DomainError:
                return _rule_error(CardinalityRespected(et, name, direction, _count(old)), name)

            tx.add("Update", table, key=self._counter_key(counter), update="ADD #c :d",
                   condition="attribute_not_exists(#c) OR #c <= :max", names=names, values=values,
                   guard=Guard(capped, what="counter"), return_old=True)
        for (graph, edge_type), expected in self._bumps.items():
            if expected == 0:
                condition, values = "attribute_not_exists(#pk)", {":next": num(1)}
            else:
                condition, values = "#v = :expected", {":expected": num(expected), ":next": num(expected + 1)}

            def moved(old: Item | None, graph: str = graph, edge_type: str = edge_type,
                      expected: int = expected) -> DomainError:
                current = 0 if old is None or "v" not in old else get_int(old, "v")
                return topology_changed_concurrently(graph, edge_type, current, expected)

            tx.add("Update", table, key=keys.topology_key(graph, edge_type), update="SET #v = :next",
                   condition=condition, names={"#pk": PK, "#v": "v"} if expected == 0 else {"#v": "v"},
                   values=values, guard=Guard(moved, what="topology"), return_old=True)


def stage_type_counters(tx: TransactionBuilder, table: str, node_deltas: Counter[TypeId],
                        edge_deltas: Counter[TypeId]) -> None:
    """One ADD per (graph, kind, type) whose count changes, on a random bucket: only the
    buckets' sum is meaningful (keys.type_counter_key)."""
    kinds: tuple[tuple[keys.TypeKind, Counter[TypeId]], ...] = (("node", node_deltas), ("edge", edge_deltas))
    for kind, deltas in kinds:
        for (graph, type_name), delta in deltas.items():
            if delta:
                bucket = random.randrange(keys.TYPE_COUNTER_BUCKETS)
                tx.add("Update", table, key=keys.type_counter_key(graph, kind, type_name, bucket),
                       update="ADD #c :d", names={"#c": COUNT}, values={":d": num(delta)})


# --- idempotency ------------------------------------------------------------------------

def idempotency_item(record: IdempotencyRecord) -> Item:
    return {**keys.idempotency_key(record.graph, record.request_id), "operation": string(record.operation),
            "fingerprint": string(record.fingerprint), "response": binary(record.response),
            "created": num(epoch_micros(record.created_at)), **keys.idempotency_expires_at(record.created_at)}


def idempotency_record(item: Item, graph: str, request_id: str) -> IdempotencyRecord:
    return IdempotencyRecord(graph=graph, request_id=request_id, operation=get_str(item, "operation"),
                             fingerprint=get_str(item, "fingerprint"), response=bytes(get_bytes(item, "response")),
                             created_at=from_epoch_micros(get_int(item, "created")))


def expired(item: Item, now: datetime) -> bool:
    """TTL deletes lazily (up to days late): a record past ``expires_at`` is gone already."""
    return TTL_ATTRIBUTE in item and get_int(item, TTL_ATTRIBUTE) <= now.timestamp()


class DynamoIdempotencyStore(StagedIdempotencyStore):
    def __init__(self, uow: "DynamoUnitOfWork") -> None:
        super().__init__()
        self._uow = uow

    def _ensure_open(self, graph: str) -> None:
        self._uow.ensure_open(graph)

    async def _load(self, graph: str, request_id: str) -> IdempotencyRecord | None:
        item = await self._uow.get_item(keys.idempotency_key(graph, request_id))
        if item is None or expired(item, self._uow.now()):
            return None
        return idempotency_record(item, graph, request_id)


def stage_idempotency(tx: TransactionBuilder, table: str, records: Iterable[IdempotencyRecord],
                      now: datetime) -> None:
    """The completed records: Put if absent (or expired: TTL has not deleted it yet)."""
    for record in records:
        def concurrent(old: Item | None, record: IdempotencyRecord = record) -> DomainError:
            return VersionConflict(
                f"request id {record.request_id!r} was committed by a concurrent call (a retry of the same "
                "request?); nothing was written: retry, and the stored response is returned",
                reason=Reason.VERSION_CONFLICT, metadata={"request_id": record.request_id})

        tx.add("Put", table, item=idempotency_item(record), condition="attribute_not_exists(#pk) OR #e <= :now",
               names={"#pk": PK, "#e": TTL_ATTRIBUTE}, values={":now": num(int(now.timestamp()))},
               guard=Guard(concurrent, what="idempotency"))


# --- cascade jobs -----------------------------------------------------------------------

_JOB_ATTRIBUTES = ("graph", "node", "request_id", "trace", "created", PENDING_PK, PENDING_SK)


def job_from_item(item: Item) -> CascadeJob:
    return CascadeJob(graph=get_str(item, "graph"), node_id=get_str(item, "node"),
                      request_id=get_str(item, "request_id"), trace_context=get_str(item, "trace"),
                      created_at=from_epoch_micros(get_int(item, "created")))


def _job_order(job: CascadeJob) -> tuple[int, str, str]:
    return epoch_micros(job.created_at), job.graph, job.node_id


class DynamoCascadeJobQueue:
    """Jobs are items under the tombstoned node (``J``), listed oldest first by the sparse
    ``pending`` index. GSIs are eventually consistent: ``next`` may miss a job enqueued a
    moment ago (the worker polls again) or return one completed a moment ago — it then
    reads the job item itself (consistent) and skips it if it is gone."""

    def __init__(self, uow: "DynamoUnitOfWork") -> None:
        self._uow = uow
        self._jobs: dict[NodeId, CascadeJob | None] = {}  # staged: a job to enqueue, None to complete

    async def enqueue(self, job: CascadeJob) -> None:
        self._uow.ensure_open(job.graph)
        key = (job.graph, job.node_id)
        if self._jobs.get(key) is None:
            self._jobs[key] = job

    async def complete(self, graph: str, node_id: str) -> None:
        self._uow.ensure_open(graph)
        self._jobs[(graph, node_id)] = None

    async def next(self) -> CascadeJob | None:
        self._uow.ensure_open()
        staged = [job for job in self._jobs.values() if job is not None]
        stored = await self._oldest_stored()
        candidates = [*staged, *([stored] if stored is not None else [])]
        return min(candidates, key=_job_order) if candidates else None

    async def _oldest_stored(self) -> CascadeJob | None:
        client, table = self._uow.client, self._uow.tables.write
        skip = set(self._jobs)
        start: Key | None = None
        while True:
            page = await client.query(table, index=PENDING_INDEX, key_condition="#p = :p", names={"#p": PENDING_PK},
                                      values={":p": string(keys.PENDING_CASCADE)}, limit=len(skip) + 1,
                                      start_key=start)
            for entry in page.items:
                _, graph, node_id = keys.parse_pending_sk(get_str(entry, PENDING_SK))
                if (graph, node_id) in skip:
                    continue
                item = await self._uow.get_item(keys.cascade_job_key(graph, node_id))
                if item is not None:  # else completed since the index was updated
                    return job_from_item(item)
            start = page.last_key
            if start is None:
                return None

    def stage(self, tx: TransactionBuilder) -> None:
        table = self._uow.tables.write
        for (graph, node_id), job in self._jobs.items():
            key = keys.cascade_job_key(graph, node_id)
            if job is None:
                tx.add("Delete", table, key=key)
                continue
            values: dict[str, AttributeValue] = {
                ":graph": string(job.graph), ":node": string(job.node_id), ":request_id": string(job.request_id),
                ":trace": string(job.trace_context), ":created": num(epoch_micros(job.created_at))}
            index = keys.cascade_job_index_attributes(job.graph, job.node_id, job.created_at)
            values[":pending_pk"], values[":pending_sk"] = index[PENDING_PK], index[PENDING_SK]
            names = {f"#a{i}": name for i, name in enumerate(_JOB_ATTRIBUTES)}
            placeholders = [":graph", ":node", ":request_id", ":trace", ":created", ":pending_pk", ":pending_sk"]
            update = "SET " + ", ".join(f"#a{i} = if_not_exists(#a{i}, {placeholders[i]})"
                                        for i in range(len(_JOB_ATTRIBUTES)))
            tx.add("Update", table, key=key, update=update, names=names, values=values)


__all__ = [
    "DynamoSchemaRepository", "DynamoNodeRepository", "DynamoEdgeRepository", "DynamoIdempotencyStore",
    "DynamoCascadeJobQueue", "stage_type_counters", "stage_idempotency", "node_item", "node_from_item",
    "edge_items", "edge_from_item",
]
