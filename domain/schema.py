"""The Schema aggregate: one per graph, versioned, evolved additively."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Iterable

from domain.errors import (
    FieldViolation,
    PreconditionViolation,
    Reason,
    RuleViolated,
    ValidationFailed,
    VersionConflict,
)
from domain.events import Causation, DomainEvent, SchemaApplied
from domain.values import (
    MAX_EDGE_PROPERTIES_BYTES,
    MAX_NODE_PROPERTIES_BYTES,
    PROPERTY_NAME_PATTERN,
    TYPE_NAME_PATTERN,
    PropertyKind,
    PropertyValue,
    properties_size,
)


class Cardinality(Enum):
    MANY_TO_MANY = "MANY_TO_MANY"
    ONE_TO_MANY = "ONE_TO_MANY"  # a target has at most one incoming edge of the type
    MANY_TO_ONE = "MANY_TO_ONE"  # a source has at most one outgoing edge of the type
    ONE_TO_ONE = "ONE_TO_ONE"

    @property
    def max_out(self) -> int | None:
        return 1 if self in (Cardinality.MANY_TO_ONE, Cardinality.ONE_TO_ONE) else None

    @property
    def max_in(self) -> int | None:
        return 1 if self in (Cardinality.ONE_TO_MANY, Cardinality.ONE_TO_ONE) else None

    def at_least_as_loose_as(self, other: "Cardinality") -> bool:
        def looser(a: int | None, b: int | None) -> bool:
            return a is None or (b is not None and a >= b)
        return looser(self.max_out, other.max_out) and looser(self.max_in, other.max_in)


class OnDelete(Enum):
    RESTRICT = "RESTRICT"
    CASCADE = "CASCADE"


@dataclass(frozen=True)
class PropertyDef:
    name: str
    kind: PropertyKind
    required: bool = False
    indexed: bool = False
    unique: bool = False

    @property
    def is_indexed(self) -> bool:
        """`unique` implies `indexed`."""
        return self.indexed or self.unique


def _property_named(defs: tuple[PropertyDef, ...], name: str) -> PropertyDef | None:
    return next((p for p in defs if p.name == name), None)


@dataclass(frozen=True)
class NodeType:
    name: str
    properties: tuple[PropertyDef, ...] = ()
    projected: tuple[str, ...] = ()

    def property_def(self, name: str) -> PropertyDef | None:
        return _property_named(self.properties, name)

    @property
    def unique_properties(self) -> tuple[PropertyDef, ...]:
        return tuple(p for p in self.properties if p.unique)

    @property
    def indexed_properties(self) -> tuple[PropertyDef, ...]:
        return tuple(p for p in self.properties if p.is_indexed)


@dataclass(frozen=True)
class EdgeType:
    name: str
    source_type: str
    target_type: str
    cardinality: Cardinality = Cardinality.MANY_TO_MANY
    inverse_name: str | None = None
    symmetric: bool = False
    acyclic: bool = False
    on_delete: OnDelete = OnDelete.RESTRICT
    properties: tuple[PropertyDef, ...] = ()

    def property_def(self, name: str) -> PropertyDef | None:
        return _property_named(self.properties, name)


def validate_properties(
    defs: tuple[PropertyDef, ...],
    values: dict[str, PropertyValue],
    *,
    field_prefix: str,
    owner: str,
    max_bytes: int,
    check_required: bool = True,
) -> dict[str, PropertyValue]:
    """Check kinds, required and unknown names and the size limit; return normalised values."""
    if not values and not (check_required and any(p.required for p in defs)):
        return {}  # most edges: nothing to check ("{}" is far below any limit)
    by_name = {p.name: p for p in defs}
    violations: list[FieldViolation] = []
    out: dict[str, PropertyValue] = {}
    for name, value in values.items():
        pdef = by_name.get(name)
        path = f"{field_prefix}[{name!r}]" if field_prefix else name
        if pdef is None:
            violations.append(FieldViolation(path, f"{owner} has no property {name!r}"))
            continue
        if not pdef.kind.accepts(value):
            got = "NaN" if isinstance(value, float) and value != value else type(value).__name__
            violations.append(FieldViolation(path, f"{name!r} must be a {pdef.kind.value}, got {got}"))
            continue
        out[name] = pdef.kind.normalise(value)
    if check_required:
        for p in defs:
            if p.required and p.name not in values:
                violations.append(FieldViolation(f"{field_prefix}[{p.name!r}]", f"{owner} requires property {p.name!r}"))
    if violations:
        raise ValidationFailed(
            f"properties do not match {owner}: " + "; ".join(v.description for v in violations),
            reason=Reason.INVALID_PROPERTY,
            violations=violations,
            metadata={"type": owner},
        )
    size = properties_size(out)
    if size > max_bytes:
        raise ValidationFailed(
            f"properties of {owner} are {size} bytes, over the {max_bytes} byte limit",
            reason=Reason.PROPERTY_TOO_LARGE,
            violations=[FieldViolation(field_prefix or "properties", f"must be at most {max_bytes} bytes encoded, got {size}")],
            metadata={"limit_bytes": str(max_bytes), "size_bytes": str(size)},
        )
    return out


@dataclass
class Schema:
    """Aggregate root. Version 0 means "no schema applied yet"."""

    graph: str
    version: int = 0
    node_types: dict[str, NodeType] = field(default_factory=dict)
    edge_types: dict[str, EdgeType] = field(default_factory=dict)
    update_time: datetime | None = None
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

    # --- lookups -------------------------------------------------------------------
    def node_type(self, name: str, field_path: str = "type") -> NodeType:
        nt = self.node_types.get(name)
        if nt is None:
            raise ValidationFailed(
                f"graph {self.graph!r} has no node type {name!r}",
                reason=Reason.UNKNOWN_NODE_TYPE,
                violations=[FieldViolation(field_path, f"unknown node type {name!r}")],
                metadata={"node_type": name},
            )
        return nt

    def edge_type(self, name: str, field_path: str = "edge.type") -> EdgeType:
        et = self.edge_types.get(name)
        if et is None:
            raise ValidationFailed(
                f"graph {self.graph!r} has no edge type {name!r}",
                reason=Reason.UNKNOWN_EDGE_TYPE,
                violations=[FieldViolation(field_path, f"unknown edge type {name!r}")],
                metadata={"edge_type": name},
            )
        return et

    def validate_node_properties(self, type_name: str, values: dict[str, PropertyValue], *,
                                 field_prefix: str = "node.properties", check_required: bool = True) -> dict[str, PropertyValue]:
        nt = self.node_type(type_name)
        return validate_properties(nt.properties, values, field_prefix=field_prefix, owner=f"node type {type_name!r}",
                                   max_bytes=MAX_NODE_PROPERTIES_BYTES, check_required=check_required)

    def validate_edge_properties(self, type_name: str, values: dict[str, PropertyValue], *,
                                 field_prefix: str = "edge.properties") -> dict[str, PropertyValue]:
        et = self.edge_type(type_name)
        return validate_properties(et.properties, values, field_prefix=field_prefix, owner=f"edge type {type_name!r}",
                                   max_bytes=MAX_EDGE_PROPERTIES_BYTES)

    # --- behaviour -----------------------------------------------------------------
    def apply(
        self,
        node_types: Iterable[NodeType],
        edge_types: Iterable[EdgeType],
        *,
        expected_version: int | None,
        type_in_use: Callable[[str, str], bool],
        causation: Causation,
    ) -> None:
        """Replace the schema with the given declaration, if the change is additive.

        ``type_in_use(kind, name)`` (kind is "node" or "edge") tells whether stored data
        uses a type that the new declaration drops.
        """
        if expected_version is not None and expected_version != self.version:
            raise VersionConflict(
                f"schema of graph {self.graph!r} is at version {self.version}, not {expected_version}",
                reason=Reason.SCHEMA_VERSION_CONFLICT,
                metadata={"current_version": str(self.version), "expected_version": str(expected_version)},
            )
        node_list, edge_list = list(node_types), list(edge_types)
        _validate_declaration(node_list, edge_list)
        new_nodes = {t.name: t for t in node_list}
        new_edges = {t.name: t for t in edge_list}
        problems = _evolution_problems(self, new_nodes, new_edges, type_in_use)
        if problems:
            raise RuleViolated(
                "schema change is not additive: " + "; ".join(p.description for p in problems),
                reason=problems[0].type,
                violations=problems,
                metadata={"graph": self.graph},
            )
        self.node_types = new_nodes
        self.edge_types = new_edges
        self.version += 1
        self.update_time = causation.occurred_at
        self.events.append(SchemaApplied(
            **causation.event_fields(self.graph, aggregate_id="schema", aggregate_version=self.version),
            schema=schema_to_dict(self),
        ))


def _validate_declaration(node_list: list[NodeType], edge_list: list[EdgeType]) -> None:
    violations: list[FieldViolation] = []
    node_types = {t.name: t for t in node_list}
    seen_types: set[str] = set()
    for path, t in [(f"schema.node_types[{i}]", t) for i, t in enumerate(node_list)] + \
                   [(f"schema.edge_types[{i}]", t) for i, t in enumerate(edge_list)]:
        if t.name in seen_types:
            violations.append(FieldViolation(f"{path}.name", f"duplicate type name {t.name!r}"))
        seen_types.add(t.name)

    def props(path: str, defs: tuple[PropertyDef, ...]) -> None:
        seen: set[str] = set()
        for j, p in enumerate(defs):
            if not PROPERTY_NAME_PATTERN.fullmatch(p.name or ""):
                violations.append(FieldViolation(f"{path}.properties[{j}].name", f"{p.name!r} is not a valid property name"))
            if p.name in seen:
                violations.append(FieldViolation(f"{path}.properties[{j}].name", f"duplicate property {p.name!r}"))
            seen.add(p.name)

    for i, nt in enumerate(node_list):
        path = f"schema.node_types[{i}]"
        if not TYPE_NAME_PATTERN.fullmatch(nt.name or ""):
            violations.append(FieldViolation(f"{path}.name", f"{nt.name!r} is not a valid type name"))
        props(path, nt.properties)
        for name in nt.projected:
            if nt.property_def(name) is None:
                violations.append(FieldViolation(f"{path}.projected", f"projected property {name!r} is not declared"))
    for i, et in enumerate(edge_list):
        path = f"schema.edge_types[{i}]"
        if not TYPE_NAME_PATTERN.fullmatch(et.name or ""):
            violations.append(FieldViolation(f"{path}.name", f"{et.name!r} is not a valid type name"))
        for end, tname in (("source_type", et.source_type), ("target_type", et.target_type)):
            if tname not in node_types:
                violations.append(FieldViolation(f"{path}.{end}", f"unknown node type {tname!r}"))
        if et.symmetric and et.source_type != et.target_type:
            violations.append(FieldViolation(f"{path}.symmetric", "a symmetric edge type needs source_type == target_type"))
        if et.symmetric and et.acyclic:
            violations.append(FieldViolation(f"{path}.acyclic", "a symmetric edge type always has 2-cycles; it cannot be acyclic"))
        if et.symmetric and et.cardinality in (Cardinality.ONE_TO_MANY, Cardinality.MANY_TO_ONE):
            violations.append(FieldViolation(f"{path}.cardinality", "a symmetric edge type must be MANY_TO_MANY or ONE_TO_ONE"))
        if et.inverse_name is not None and et.inverse_name and not TYPE_NAME_PATTERN.fullmatch(et.inverse_name):
            violations.append(FieldViolation(f"{path}.inverse_name", f"{et.inverse_name!r} is not a valid type name"))
        props(path, et.properties)
        for j, p in enumerate(et.properties):
            if p.unique or p.indexed:
                violations.append(FieldViolation(f"{path}.properties[{j}]", "edge properties cannot be indexed or unique"))
    if violations:
        raise ValidationFailed("invalid schema: " + "; ".join(v.description for v in violations),
                               reason=Reason.INVALID_SCHEMA, violations=violations)


def _stricter_property(old: PropertyDef | None, new: PropertyDef, owner: str) -> str | None:
    if old is None:
        return f"new property {owner}.{new.name} cannot be required" if new.required else None
    if old.kind != new.kind:
        return f"{owner}.{new.name} cannot change kind {old.kind.value} -> {new.kind.value}"
    if new.required and not old.required:
        return f"{owner}.{new.name} cannot become required"
    if new.unique and not old.unique:
        return f"{owner}.{new.name} cannot become unique"
    return None


def _evolution_problems(current: Schema, new_nodes: dict[str, NodeType], new_edges: dict[str, EdgeType],
                        type_in_use: Callable[[str, str], bool]) -> list[PreconditionViolation]:
    problems: list[PreconditionViolation] = []

    def add(reason: str, subject: str, description: str) -> None:
        problems.append(PreconditionViolation(type=reason, subject=subject, description=description))

    for name, old in current.node_types.items():
        new = new_nodes.get(name)
        if new is None:
            if type_in_use("node", name):
                add(Reason.TYPE_IN_USE, f"node_types/{name}", f"node type {name!r} is in use and cannot be removed")
            continue
        new_props = {p.name: p for p in new.properties}
        for p in old.properties:
            if p.name not in new_props:
                add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, f"node_types/{name}", f"property {name}.{p.name} cannot be removed")
        for p in new.properties:
            msg = _stricter_property(old.property_def(p.name), p, name)
            if msg:
                add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, f"node_types/{name}", msg)
    for name, old_edge in current.edge_types.items():
        new_edge = new_edges.get(name)
        if new_edge is None:
            if type_in_use("edge", name):
                add(Reason.TYPE_IN_USE, f"edge_types/{name}", f"edge type {name!r} is in use and cannot be removed")
            continue
        subj = f"edge_types/{name}"
        if (new_edge.source_type, new_edge.target_type) != (old_edge.source_type, old_edge.target_type):
            add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, subj, f"edge type {name!r} cannot change its endpoint types")
        if not new_edge.cardinality.at_least_as_loose_as(old_edge.cardinality):
            add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, subj,
                f"edge type {name!r} cannot narrow cardinality {old_edge.cardinality.value} -> {new_edge.cardinality.value}")
        if new_edge.acyclic and not old_edge.acyclic:
            add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, subj, f"edge type {name!r} cannot become acyclic")
        if new_edge.symmetric != old_edge.symmetric:
            add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, subj, f"edge type {name!r} cannot change symmetric")
        if new_edge.on_delete is OnDelete.RESTRICT and old_edge.on_delete is OnDelete.CASCADE:
            add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, subj, f"edge type {name!r} cannot change on_delete CASCADE -> RESTRICT")
        for p in old_edge.properties:
            if new_edge.property_def(p.name) is None:
                add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, subj, f"property {name}.{p.name} cannot be removed")
        for p in new_edge.properties:
            msg = _stricter_property(old_edge.property_def(p.name), p, name)
            if msg:
                add(Reason.SCHEMA_CHANGE_NOT_ADDITIVE, subj, msg)
    return problems


# --- plain-dict form (events, storage) -----------------------------------------------

def _prop_to_dict(p: PropertyDef) -> dict[str, object]:
    return {"name": p.name, "kind": p.kind.value, "required": p.required, "indexed": p.indexed, "unique": p.unique}


def _prop_from_dict(d: dict[str, Any]) -> PropertyDef:
    return PropertyDef(name=d["name"], kind=PropertyKind(d["kind"]), required=bool(d.get("required")),
                       indexed=bool(d.get("indexed")), unique=bool(d.get("unique")))


def schema_to_dict(schema: Schema) -> dict[str, object]:
    return {
        "graph": schema.graph,
        "version": schema.version,
        "update_time": schema.update_time.isoformat() if schema.update_time else None,
        "node_types": [
            {"name": t.name, "properties": [_prop_to_dict(p) for p in t.properties], "projected": list(t.projected)}
            for t in schema.node_types.values()
        ],
        "edge_types": [
            {
                "name": t.name, "source_type": t.source_type, "target_type": t.target_type,
                "cardinality": t.cardinality.value, "inverse_name": t.inverse_name, "symmetric": t.symmetric,
                "acyclic": t.acyclic, "on_delete": t.on_delete.value,
                "properties": [_prop_to_dict(p) for p in t.properties],
            }
            for t in schema.edge_types.values()
        ],
    }


def schema_from_dict(d: dict[str, Any]) -> Schema:
    nts = [NodeType(name=t["name"], properties=tuple(_prop_from_dict(p) for p in t.get("properties", [])),
                    projected=tuple(t.get("projected", []))) for t in d.get("node_types", [])]
    ets = [EdgeType(name=t["name"], source_type=t["source_type"], target_type=t["target_type"],
                    cardinality=Cardinality(t.get("cardinality", "MANY_TO_MANY")), inverse_name=t.get("inverse_name"),
                    symmetric=bool(t.get("symmetric")), acyclic=bool(t.get("acyclic")),
                    on_delete=OnDelete(t.get("on_delete", "RESTRICT")),
                    properties=tuple(_prop_from_dict(p) for p in t.get("properties", [])))
           for t in d.get("edge_types", [])]
    ut = d.get("update_time")
    return Schema(graph=d["graph"], version=int(d.get("version", 0)), node_types={t.name: t for t in nts},
                  edge_types={t.name: t for t in ets},
                  update_time=datetime.fromisoformat(ut) if ut else None)


def schema_changed_concurrently(schema: Schema, current: int) -> VersionConflict:
    """A schema save lost to a concurrent one: the stored version is not the one it follows."""
    return VersionConflict(
        f"schema of graph {schema.graph!r} is at version {current}; cannot store version {schema.version}",
        reason=Reason.SCHEMA_VERSION_CONFLICT,
        metadata={"current_version": str(current), "expected_version": str(schema.version - 1)})
