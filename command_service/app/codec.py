"""JSON forms of commands and results.

``ResultCodec`` serialises a result for the idempotency record so that a replay
returns exactly the first response (consistency token included). Large responses
(a BatchWrite's hundred results) are stored zlib-compressed: they repeat the same
keys and names over and over, and were the second largest table per edge.
``fingerprint`` hashes a command without its request id and transport metadata:
the same request id with a different fingerprint is a reused id (AIP-155).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from datetime import datetime
from enum import Enum
from typing import Any, Iterable, Mapping

from domain.edge import Edge
from domain.node import Node
from domain.schema import Schema, schema_from_dict, schema_to_dict
from domain.values import decode_properties, encode_properties, encode_value

_NOT_FINGERPRINTED = frozenset(("request_id", "meta"))
# class -> its fingerprinted field names, or None when it is not a dataclass
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    try:
        return _FIELDS[cls]
    except KeyError:
        names = (tuple(f.name for f in dataclasses.fields(cls) if f.name not in _NOT_FINGERPRINTED)
                 if dataclasses.is_dataclass(cls) else None)
        _FIELDS[cls] = names
        return names


def _plain(value: Any) -> Any:
    """A JSON-able, kind-preserving form of a command field. Dispatches on the exact
    type first (the common cases) and remembers each class's fields: a BatchWrite of
    100 operations is hashed in microseconds, with the very same result as before."""
    cls = type(value)
    if cls is str or cls is int or cls is bool or value is None:
        return value
    names = _field_names(cls)
    if names is not None:
        out: dict[str, Any] = {"$type": cls.__name__}
        for name in names:
            field_value = getattr(value, name)
            out[name] = field_value if type(field_value) is str else _plain(field_value)
        return out
    if isinstance(value, Enum):
        return value.value
    if cls is dict or isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if cls is tuple or cls is list or isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, float)):
        return encode_value(value)
    return value


def fingerprint(command: Any) -> str:
    body = json.dumps(_plain(command), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _untime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# A compressed record starts with this byte; a plain one is JSON and starts with "{".
_COMPRESSED = b"Z"
_COMPRESS_FROM_BYTES = 512


class ResultCodec:
    def __init__(self, result_types: Iterable[type]) -> None:
        self._types = {t.__name__: t for t in result_types}
        self._result_fields: dict[type, tuple[str, ...]] = {}  # filled on first use

    def encode(self, result: Any) -> bytes:
        body = json.dumps(self._enc(result), separators=(",", ":"), sort_keys=True).encode("utf-8")
        if len(body) < _COMPRESS_FROM_BYTES:
            return body
        return _COMPRESSED + zlib.compress(body, 6)

    def decode(self, data: bytes) -> Any:
        if data[:1] == _COMPRESSED:
            data = zlib.decompress(data[1:])
        return self._dec(json.loads(data.decode("utf-8")))

    def _edge_rows(self, results: tuple[Any, ...]) -> list[list[Any]] | None:
        """A tuple of plain AddEdgeResults (a BatchWrite of edges) as rows
        ``[graph, source, type, target, properties, create_time]``: a fraction of the
        bytes and of the time of one tagged object per result. None: not that shape."""
        added: Any = self._types.get("AddEdgeResult")
        if added is None:
            return None
        rows = []
        times: dict[datetime, str | None] = {}
        for r in results:
            if type(r) is not added or r.consistency_token or type(r.edge) is not Edge:
                return None
            e = r.edge
            at = e.create_time
            iso = times.get(at)
            if iso is None:
                iso = times[at] = _time(at)
            rows.append([e.graph, e.source, e.type, e.target,
                         encode_properties(e.properties) if e.properties else {}, iso])
        return rows

    def _enc(self, value: Any) -> Any:
        cls = type(value)
        if value is None or cls is str or cls is int or cls is bool:
            return value
        if cls is tuple:
            rows = self._edge_rows(value) if value else None
            if rows is not None:
                return {"$edge_results": rows}
            return {"$tuple": [self._enc(v) for v in value]}
        names = self._result_fields.get(cls)
        if names is not None:  # a registered result type: no Node/Edge/Schema checks needed
            return {"$result": cls.__name__, "fields": {n: self._enc(getattr(value, n)) for n in names}}
        if isinstance(value, Node):
            return {"$node": {"graph": value.graph, "id": value.id, "type": value.type,
                              "properties": encode_properties(value.properties), "version": value.version,
                              "create_time": _time(value.create_time), "update_time": _time(value.update_time),
                              "deleted": value.deleted}}
        if isinstance(value, Edge):
            return {"$edge": {"graph": value.graph, "source": value.source, "type": value.type,
                              "target": value.target, "properties": encode_properties(value.properties),
                              "create_time": _time(value.create_time)}}
        if isinstance(value, Schema):
            return {"$schema": schema_to_dict(value)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = cls.__name__
            if name not in self._types:
                raise TypeError(f"{name} is not a registered result type")
            self._result_fields[cls] = tuple(f.name for f in dataclasses.fields(value))
            return self._enc(value)
        if isinstance(value, (list, tuple)):
            return {"$tuple": [self._enc(v) for v in value]}
        if value is None or isinstance(value, (str, int, bool)):
            return value
        raise TypeError(f"cannot encode {type(value).__name__} in a result")

    def _dec(self, raw: Any) -> Any:
        if isinstance(raw, dict):
            if "$node" in raw:
                d = raw["$node"]
                return Node(graph=d["graph"], id=d["id"], type=d["type"],
                            properties=decode_properties(d["properties"]), version=int(d["version"]),
                            create_time=_untime(d["create_time"]), update_time=_untime(d["update_time"]),  # type: ignore[arg-type]
                            deleted=bool(d["deleted"]))
            if "$edge" in raw:
                d = raw["$edge"]
                return Edge(graph=d["graph"], source=d["source"], type=d["type"], target=d["target"],
                            properties=decode_properties(d["properties"]),
                            create_time=_untime(d["create_time"]))  # type: ignore[arg-type]
            if "$schema" in raw:
                return schema_from_dict(raw["$schema"])
            if "$result" in raw:
                cls = self._types[raw["$result"]]
                return cls(**{k: self._dec(v) for k, v in raw["fields"].items()})
            if "$tuple" in raw:
                return tuple(self._dec(v) for v in raw["$tuple"])
            if "$edge_results" in raw:
                added = self._types["AddEdgeResult"]
                times: dict[str, datetime | None] = {}
                out = []
                for graph, source, type_, target, props, at in raw["$edge_results"]:
                    when = times.get(at)
                    if when is None:
                        when = times[at] = _untime(at)
                    out.append(added(edge=Edge(graph=graph, source=source, type=type_, target=target,
                                               properties=decode_properties(props) if props else {},
                                               create_time=when)))  # type: ignore[arg-type]
                return tuple(out)
        return raw
