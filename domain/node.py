"""The Node aggregate."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.errors import AlreadyExists, FieldViolation, NotFound, Reason, ValidationFailed, VersionConflict
from domain.events import Causation, DomainEvent, NodeCreated, NodeDeleted, NodeUpdated
from domain.schema import Schema
from domain.values import NODE_RESOURCE_TYPE, NodeRef, PropertyValue, check_node_id


def etag_for(version: int) -> str:
    """Etags are opaque to callers (AIP-154); we quote the version like HTTP does."""
    return f'"{version}"'


def version_from_etag(etag: str, field_path: str = "etag") -> int:
    text = etag.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    # ASCII digits only ("²" and "١" pass str.isdigit), and no more than an int64 holds.
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise ValidationFailed.of(field_path, f"{etag!r} is not an etag this service issued", reason=Reason.INVALID_ARGUMENT)
    return int(text)


def check_expected_version(resource: str, current: int, expected: int | None) -> None:
    """Invariant 7: a write with a stale version changes nothing and fails with ABORTED."""
    if expected is not None and expected != current:
        raise VersionConflict(
            f"{resource} is at etag {etag_for(current)}, the request carried {etag_for(expected)}",
            reason=Reason.VERSION_CONFLICT,
            metadata={"resource": resource, "current_etag": etag_for(current), "request_etag": etag_for(expected)},
        )


def node_changed_concurrently(node: "Node", stored: int, expected: int) -> VersionConflict:
    """A save lost to a concurrent one: the stored version is not the one the node was loaded at."""
    return VersionConflict(
        f"{node.name} changed concurrently (stored version {stored}, loaded {expected})",
        reason=Reason.VERSION_CONFLICT,
        metadata={"resource": node.name, "current_etag": f'"{stored}"', "request_etag": f'"{expected}"'})


def node_not_found(ref: NodeRef) -> NotFound:
    return NotFound(f"node {ref.name} does not exist", resource_type=NODE_RESOURCE_TYPE, resource_name=ref.name,
                    reason=Reason.NODE_NOT_FOUND)


def node_already_exists(ref: NodeRef) -> AlreadyExists:
    # Tombstoned ids stay taken: a re-created node would inherit edges still being
    # cascaded away and confuse readers holding the old etag.
    return AlreadyExists(f"node {ref.name} already exists (or existed: deleted ids are not reused)",
                         resource_type=NODE_RESOURCE_TYPE, resource_name=ref.name,
                         reason=Reason.NODE_ALREADY_EXISTS)


@dataclass
class Node:
    graph: str
    id: str
    type: str
    properties: dict[str, PropertyValue]
    version: int
    create_time: datetime
    update_time: datetime
    deleted: bool = False
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

    @property
    def ref(self) -> NodeRef:
        return NodeRef(self.graph, self.id)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def etag(self) -> str:
        return etag_for(self.version)

    @classmethod
    def create(cls, *, graph: str, node_id: str, type_name: str, properties: dict[str, PropertyValue],
               schema: Schema, causation: Causation) -> "Node":
        check_node_id(node_id, "node_id")
        props = schema.validate_node_properties(type_name, properties)
        node = cls(graph=graph, id=node_id, type=type_name, properties=props, version=1,
                   create_time=causation.occurred_at, update_time=causation.occurred_at)
        node.events.append(NodeCreated(**causation.event_fields(graph, aggregate_id=node_id, aggregate_version=1),
                                       node_type=type_name, properties=dict(props)))
        return node

    def update(self, *, properties: dict[str, PropertyValue], update_mask: list[str] | None,
               expected_version: int | None, schema: Schema, causation: Causation,
               type_name: str = "") -> None:
        """AIP-134 partial update.

        Mask paths: ``properties`` (or ``*``) replaces the whole map; ``properties.<name>``
        sets (or, when absent from ``properties``, clears) one property. No mask means
        "every property present in the request". The type is immutable (AIP-203): a
        non-empty ``type_name`` must be the node's type.
        """
        if type_name and type_name != self.type:
            raise ValidationFailed.of("node.type", f"the type is immutable: {self.name} is a {self.type!r}, "
                                      f"the request carried {type_name!r}", reason=Reason.INVALID_ARGUMENT)
        check_expected_version(self.name, self.version, expected_version)
        new_props = dict(self.properties)
        if not update_mask:
            update_mask = [f"properties.{k}" for k in properties]
        violations = []
        for i, path in enumerate(update_mask):
            if path in ("properties", "*"):
                new_props = dict(properties)
            elif path.startswith("properties.") and len(path) > len("properties."):
                key = path[len("properties."):].strip("`")
                if key in properties:
                    new_props[key] = properties[key]
                else:
                    new_props.pop(key, None)
            else:
                violations.append(FieldViolation(f"update_mask.paths[{i}]", f"cannot update {path!r}; "
                                                 "use 'properties' or 'properties.<name>'"))
        if violations:
            raise ValidationFailed("invalid update_mask", reason=Reason.INVALID_ARGUMENT, violations=violations)
        validated = schema.validate_node_properties(self.type, new_props)
        changed = tuple(sorted(k for k in set(validated) | set(self.properties)
                               if validated.get(k) != self.properties.get(k)))
        self.properties = validated
        self.version += 1
        self.update_time = causation.occurred_at
        self.events.append(NodeUpdated(**causation.event_fields(self.graph, aggregate_id=self.id,
                                                                 aggregate_version=self.version),
                                       node_type=self.type, properties=dict(validated), changed=changed))

    def delete(self, *, expected_version: int | None, causation: Causation) -> None:
        check_expected_version(self.name, self.version, expected_version)
        self.deleted = True
        self.version += 1
        self.update_time = causation.occurred_at
        self.events.append(NodeDeleted(**causation.event_fields(self.graph, aggregate_id=self.id,
                                                                 aggregate_version=self.version),
                                       node_type=self.type))

    def unique_values(self, schema: Schema) -> dict[str, PropertyValue]:
        nt = schema.node_type(self.type)
        return {p.name: self.properties[p.name] for p in nt.unique_properties if p.name in self.properties}
