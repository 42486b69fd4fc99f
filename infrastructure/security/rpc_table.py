"""The one table from RPC to the scope it requires (and so to its rate-limit class).

Every method of both Edgewise services has an entry (tests/unit/infrastructure check it);
health and reflection are open (no principal needed)."""

from __future__ import annotations

from infrastructure.security.principal import SCOPE_READ, SCOPE_SCHEMA, SCOPE_WRITE

_COMMAND = "/edgewise.graph.v1.GraphCommandService/"
_QUERY = "/edgewise.graph.v1.GraphQueryService/"

METHOD_SCOPES: dict[str, str] = {
    _COMMAND + "ApplySchema": SCOPE_SCHEMA,
    _COMMAND + "CreateNode": SCOPE_WRITE,
    _COMMAND + "UpdateNode": SCOPE_WRITE,
    _COMMAND + "DeleteNode": SCOPE_WRITE,
    _COMMAND + "AddEdge": SCOPE_WRITE,
    _COMMAND + "RemoveEdge": SCOPE_WRITE,
    _COMMAND + "BatchWrite": SCOPE_WRITE,
    _QUERY + "GetSchema": SCOPE_READ,
    _QUERY + "GetNode": SCOPE_READ,
    _QUERY + "BatchGetNodes": SCOPE_READ,
    _QUERY + "GetEdge": SCOPE_READ,
    _QUERY + "CountEdges": SCOPE_READ,
    _QUERY + "ListEdges": SCOPE_READ,
    _QUERY + "ListNodes": SCOPE_READ,
    _QUERY + "Traverse": SCOPE_READ,
    _QUERY + "FindPath": SCOPE_READ,
    _QUERY + "WatchEvents": SCOPE_READ,
}

# The rate-limit class of a method follows from its scope (config.RATE_CLASSES).
RATE_CLASS_OF_SCOPE = {SCOPE_READ: "reads", SCOPE_WRITE: "writes", SCOPE_SCHEMA: "schema"}

# Callable without a principal: probes and tooling must work before anyone has a token.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                        "/grpc.reflection.v1.ServerReflection/")


def is_open(method: str) -> bool:
    return method.startswith(OPEN_METHOD_PREFIXES)


def required_scope(method: str) -> str | None:
    """The scope ``method`` needs; None for a method Edgewise does not serve (it is answered
    UNIMPLEMENTED by the fallback handler, whoever asks)."""
    return METHOD_SCOPES.get(method)


def rate_class(method: str) -> str | None:
    scope = METHOD_SCOPES.get(method)
    return RATE_CLASS_OF_SCOPE[scope] if scope is not None else None
