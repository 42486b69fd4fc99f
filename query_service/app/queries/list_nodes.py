"""ListNodes: nodes of a type, filtered (AIP-160 subset) and ordered (AIP-132).

The planner picks the access path; rows are read in chunks in the path's natural
order and the residual filter drops non-matching ones. The page token holds the
keyset position of the last row examined, so a page may come back short when the
scan budget runs out (AIP-158 allows that) but paging never skips or repeats.
An ``order_by`` the access path cannot produce sorts the matches in memory, up
to ``max_sort_rows``; past that the call is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.schema import Schema
from domain.specifications import parse_filter
from domain.values import sortable
from domain.views import NodeView
from query_service.app.consistency import Consistency, ConsistencyGate
from query_service.app.paging import PageTokens, page_size
from query_service.app.ports import ReadModel
from query_service.planning.planner import OrderKey, Plan, QueryPlanner, parse_order_by

SCAN_BUDGET = 10_000
MAX_SCAN_CHUNK = 1000
MAX_SORT_ROWS = 10_000


@dataclass(frozen=True)
class ListNodes:
    graph: str
    node_type: str
    filter: str = ""
    order_by: str = ""
    page_size: int = 0
    page_token: str = ""
    explain: bool = False
    consistency: Consistency | None = None


@dataclass(frozen=True)
class NodePage:
    nodes: list[NodeView]
    next_page_token: str = ""
    plan: str = ""


def _sorted(views: list[NodeView], keys: tuple[OrderKey, ...]) -> list[NodeView]:
    out = sorted(views, key=lambda v: v.id)
    for key in reversed(keys):  # stable sorts, least significant key first; missing values last
        def k(v: NodeView, p: str = key.property, desc: bool = key.descending) -> tuple[Any, ...]:
            raw = v.properties.get(p)
            value = None if raw is None else sortable(raw)
            return (value is not None, value) if desc else (value is None, value)
        out.sort(key=k, reverse=key.descending)
    return out


class ListNodesHandler:
    def __init__(self, read_model: ReadModel, gate: ConsistencyGate, tokens: PageTokens, planner: QueryPlanner,
                 *, scan_budget: int = SCAN_BUDGET, max_sort_rows: int = MAX_SORT_ROWS) -> None:
        self._rm = read_model
        self._gate = gate
        self._tokens = tokens
        self._planner = planner
        self._scan_budget = scan_budget
        self._max_sort = max_sort_rows

    async def __call__(self, query: ListNodes) -> NodePage:
        size = page_size(query.page_size)
        params = {"graph": query.graph, "type": query.node_type, "filter": query.filter, "order_by": query.order_by}
        await self._gate.ensure(query.consistency, query.graph)
        schema = await self._rm.get_schema(query.graph) or Schema(graph=query.graph)
        node_type = schema.node_type(query.node_type, "type")
        spec = parse_filter(query.filter, node_type)
        order = parse_order_by(query.order_by, node_type)
        plan = self._planner.plan(node_type, spec, order)
        # A cursor is a position in one access path (an id, an (index value, id), an offset):
        # bind it to the plan, so a token from before a schema change that altered the plan
        # is refused (INVALID_PAGE_TOKEN) instead of being read as another path's position.
        params["plan"] = plan.text
        cursor = self._tokens.read(query.page_token, "ListNodes", params, graph=query.graph)
        if plan.sort:
            nodes, token = await self._sorted_page(query, plan, size, params, cursor)
        else:
            nodes, token = await self._keyset_page(query, plan, size, params, cursor)
        return NodePage(nodes=nodes, next_page_token=token, plan=plan.explain() if query.explain else "")

    async def _keyset_page(self, query: ListNodes, plan: Plan, size: int, params: dict[str, Any],
                           cursor: list[Any] | None) -> tuple[list[NodeView], str]:
        after = tuple(cursor) if cursor else None
        out: list[NodeView] = []
        last_key: tuple[Any, ...] | None = None
        scanned = 0
        chunk = max(size + 1, 100)
        while True:
            rows = await self._rm.scan_nodes(query.graph, plan.access, after=after, limit=chunk)
            for key, view in rows:
                scanned += 1
                if plan.residual.is_satisfied_by(view.properties):
                    if len(out) == size:  # one more match exists: the page is full
                        return out, self._tokens.issue("ListNodes", params, list(last_key or ()), graph=query.graph)
                    out.append(view)
                last_key = key
            if len(rows) < chunk:
                return out, ""
            after = rows[-1][0]
            if scanned >= self._scan_budget:
                return out, self._tokens.issue("ListNodes", params, list(after), graph=query.graph)
            # matches are sparse: read more at a time, so a selective residual filter costs
            # one round trip per thousand rows (after a few smaller ones), not per hundred
            if chunk < MAX_SCAN_CHUNK:
                chunk = min(chunk * 2, MAX_SCAN_CHUNK)

    async def _sorted_page(self, query: ListNodes, plan: Plan, size: int, params: dict[str, Any],
                           cursor: list[Any] | None) -> tuple[list[NodeView], str]:
        matches: list[NodeView] = []
        after = None
        scanned = 0
        while True:
            rows = await self._rm.scan_nodes(query.graph, plan.access, after=after, limit=MAX_SCAN_CHUNK)
            scanned += len(rows)
            matches += [v for _, v in rows if plan.residual.is_satisfied_by(v.properties)]
            if scanned > self._max_sort or len(matches) > self._max_sort:
                raise ValidationFailed(
                    f"order_by {query.order_by!r} needs an in-memory sort of more than {self._max_sort} nodes; "
                    "narrow the filter or order by an indexed required property",
                    reason=Reason.INVALID_ARGUMENT, violations=[FieldViolation("order_by", "too many rows to sort")])
            if len(rows) < MAX_SCAN_CHUNK:
                break
            after = rows[-1][0]
        ordered = _sorted(matches, plan.sort)
        offset = int(cursor[0]) if cursor else 0
        page = ordered[offset:offset + size]
        more = offset + size < len(ordered)
        token = self._tokens.issue("ListNodes", params, [offset + size], graph=query.graph) if more else ""
        return page, token
