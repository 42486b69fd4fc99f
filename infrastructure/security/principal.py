"""The authenticated caller of one RPC, and the scopes Edgewise knows."""

from __future__ import annotations

from dataclasses import dataclass

# The scopes a principal may hold (the ``scope`` claim, space-separated).
SCOPE_READ = "graph.read"
SCOPE_WRITE = "graph.write"
SCOPE_SCHEMA = "schema.admin"
SCOPES = (SCOPE_READ, SCOPE_WRITE, SCOPE_SCHEMA)

DEV_PRINCIPAL_NAME = "dev"


def graph_pattern_matches(pattern: str, graph: str) -> bool:
    """``pattern`` is a graph name, a prefix ending in ``*`` (``team-a-*``) or ``*`` (every graph)."""
    if pattern.endswith("*"):
        return graph.startswith(pattern[:-1])
    return pattern == graph


@dataclass(frozen=True)
class Principal:
    """``subject`` is the token's ``sub``; ``graphs`` the graph patterns it may use; ``expires_at``
    the token's ``exp`` (seconds since the epoch; None: never, the dev principal only)."""

    subject: str
    graphs: tuple[str, ...]
    scopes: frozenset[str]
    expires_at: float | None = None
    key_id: str = ""
    dev: bool = False

    def may_use(self, graph: str) -> bool:
        return any(graph_pattern_matches(pattern, graph) for pattern in self.graphs)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


DEV_PRINCIPAL = Principal(subject=DEV_PRINCIPAL_NAME, graphs=("*",), scopes=frozenset(SCOPES), dev=True)
