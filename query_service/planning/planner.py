"""The ListNodes planner: choose an access path by cost, cache plans by filter shape.

Costs (lower is better): a unique lookup < an indexed equality < an indexed range
< a type scan. Only top-level AND terms can drive an index; whatever the access
path does not answer stays as a residual filter evaluated on each candidate.
Plans are cached by the filter's *shape* (literals replaced by ``?``), the node
type's declaration and the ordering, then bound to the literals of each request.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from dataclasses import dataclass

from domain.errors import FieldViolation, Reason, ValidationFailed
from domain.schema import NodeType
from domain.specifications import MATCH_ALL, Comparison, Specification, all_of, conjuncts
from domain.values import sortable
from domain.views import AccessKind, NodeAccess

COST = {AccessKind.UNIQUE: 1, AccessKind.INDEX_EQ: 10, AccessKind.INDEX_RANGE: 100, AccessKind.TYPE_SCAN: 1000}


@dataclass(frozen=True)
class OrderKey:
    property: str
    descending: bool = False

    def render(self) -> str:
        return self.property + (" desc" if self.descending else "")


def parse_order_by(text: str, node_type: NodeType, *, field: str = "order_by") -> tuple[OrderKey, ...]:
    """AIP-132: ``prop [asc|desc], ...`` over the node type's properties."""
    keys: list[OrderKey] = []
    if not (text or "").strip():
        return ()
    for part in text.split(","):
        words = part.split()
        problem = None
        if not words or len(words) > 2:
            problem = f"{part.strip()!r} is not `property [asc|desc]`"
        elif len(words) == 2 and words[1].lower() not in ("asc", "desc"):
            problem = f"unknown direction {words[1]!r}; use asc or desc"
        elif node_type.property_def(words[0]) is None:
            problem = f"node type {node_type.name!r} has no property {words[0]!r}"
        elif any(k.property == words[0] for k in keys):
            problem = f"property {words[0]!r} appears twice"
        if problem:
            raise ValidationFailed(f"invalid {field}: {problem}", reason=Reason.INVALID_ARGUMENT,
                                   violations=[FieldViolation(field, problem)])
        keys.append(OrderKey(words[0], len(words) == 2 and words[1].lower() == "desc"))
    return tuple(keys)


@dataclass(frozen=True)
class _Template:
    kind: AccessKind
    property: str | None
    used: tuple[int, ...]  # indices of the conjuncts the access path answers
    residual: tuple[int, ...]
    descending: bool
    sort: tuple[OrderKey, ...]  # empty when the access path's order is already the requested one
    text: str


@dataclass(frozen=True)
class Plan:
    access: NodeAccess
    residual: Specification
    sort: tuple[OrderKey, ...]
    text: str
    cached: bool = False

    def explain(self) -> str:
        return self.text


def _strip_parens(text: str) -> str:
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


class QueryPlanner:
    def __init__(self, cache_size: int = 512) -> None:
        self._cache: OrderedDict[tuple[Any, ...], _Template] = OrderedDict()
        self._size = cache_size
        self.hits = 0
        self.misses = 0

    def plan(self, node_type: NodeType, spec: Specification = MATCH_ALL,
             order_by: tuple[OrderKey, ...] = ()) -> Plan:
        key = (node_type, spec.shape(), order_by)
        template = self._cache.get(key)
        cached = template is not None
        if template is None:
            self.misses += 1
            template = self._choose(node_type, spec, order_by)
            self._cache[key] = template
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self.hits += 1
            self._cache.move_to_end(key)
        return self._bind(template, node_type, spec, cached)

    # --- choosing -------------------------------------------------------------------
    def _choose(self, node_type: NodeType, spec: Specification, order_by: tuple[OrderKey, ...]) -> _Template:
        terms = conjuncts(spec)
        best: tuple[int, AccessKind, str | None, tuple[int, ...]] = (COST[AccessKind.TYPE_SCAN],
                                                                     AccessKind.TYPE_SCAN, None, ())
        ranges: dict[str, list[int]] = {}
        for i, term in enumerate(terms):
            if not isinstance(term, Comparison):
                continue
            pdef = node_type.property_def(term.property)
            if pdef is None or not pdef.is_indexed:
                continue
            if term.op == "=":
                kind = AccessKind.UNIQUE if pdef.unique else AccessKind.INDEX_EQ
                if COST[kind] < best[0]:
                    best = (COST[kind], kind, term.property, (i,))
            elif term.op != "!=":
                ranges.setdefault(term.property, []).append(i)
        if best[1] is AccessKind.TYPE_SCAN:
            for ranged, idx in ranges.items():
                cost = COST[AccessKind.INDEX_RANGE]
                # the range that matches the requested order avoids a sort: prefer it
                if order_by and order_by[0].property == ranged and len(order_by) == 1:
                    cost -= 1
                if cost < best[0]:
                    best = (cost, AccessKind.INDEX_RANGE, ranged, tuple(idx))
        _, kind, prop, used = best
        descending = False
        sort = order_by
        if kind is AccessKind.TYPE_SCAN and len(order_by) == 1:
            # an index over a required property lists every node in order: no sort needed
            pdef = node_type.property_def(order_by[0].property)
            if pdef is not None and pdef.is_indexed and pdef.required:
                kind, prop = AccessKind.INDEX_RANGE, pdef.name
        if kind is AccessKind.INDEX_RANGE and len(order_by) == 1 and order_by[0].property == prop:
            descending, sort = order_by[0].descending, ()
        residual = tuple(i for i in range(len(terms)) if i not in used)
        text = f"{kind.value}({node_type.name}.{prop})" if prop else f"{kind.value}({node_type.name})"
        if residual:
            text += f" + FILTER({_strip_parens(all_of([terms[i] for i in residual]).shape())})"
        if sort:
            text += f" + SORT({', '.join(k.render() for k in sort)})"
        elif descending:
            text += " DESC"
        return _Template(kind, prop, used, residual, descending, sort, text)

    # --- binding --------------------------------------------------------------------
    @staticmethod
    def _bind(t: _Template, node_type: NodeType, spec: Specification, cached: bool) -> Plan:
        terms = conjuncts(spec)
        access = NodeAccess(kind=t.kind, node_type=node_type.name, property=t.property, descending=t.descending)
        if t.kind in (AccessKind.UNIQUE, AccessKind.INDEX_EQ):
            term = terms[t.used[0]]
            assert isinstance(term, Comparison)
            access = NodeAccess(kind=t.kind, node_type=node_type.name, property=t.property,
                                value=sortable(term.value))
        elif t.kind is AccessKind.INDEX_RANGE:
            lower = upper = None
            lower_inc = upper_inc = True
            for i in t.used:
                term = terms[i]
                assert isinstance(term, Comparison)
                v = sortable(term.value)
                if term.op in (">", ">="):
                    inc = term.op == ">="
                    if lower is None or v > lower or (v == lower and not inc):  # type: ignore[operator]
                        lower, lower_inc = v, inc
                else:
                    inc = term.op == "<="
                    if upper is None or v < upper or (v == upper and not inc):  # type: ignore[operator]
                        upper, upper_inc = v, inc
            access = NodeAccess(kind=t.kind, node_type=node_type.name, property=t.property, lower=lower,
                                lower_inclusive=lower_inc, upper=upper, upper_inclusive=upper_inc,
                                descending=t.descending)
        residual = all_of([terms[i] for i in t.residual])
        return Plan(access=access, residual=residual, sort=t.sort, text=t.text, cached=cached)
