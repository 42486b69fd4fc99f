"""Invariant 3 (acyclic edge types never form a cycle) without a recursive query.

The engines cannot all walk a graph for us (DynamoDB has no recursive query), so the
walk lives here, over one engine-neutral primitive: ``EdgeRepository.out_neighbours``,
one storage round per BFS level. Its answer is only as good as the state it read, so
a write that adds an edge of an acyclic type also serialises on the (graph, edge type)
topology version (``guard_topology``): of two concurrent writes that each saw no cycle,
the second to commit fails with ABORTED and, retried, sees the first one's edge.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from domain.rules import CycleCheckWithinBound, check_rule

# The most nodes one cycle check may visit before the write is refused (CYCLE_CHECK_TOO_LARGE).
DEFAULT_MAX_VISITED = 100_000


class Neighbours(Protocol):
    """The part of ``domain.ports.EdgeRepository`` the cycle check reads."""

    async def out_neighbours(self, graph: str, edge_type: str, node_ids: Sequence[str]) -> dict[str, list[str]]: ...


class TopologyVersions(Protocol):
    """The part of ``domain.ports.EdgeRepository`` that serialises acyclic writes."""

    async def topology_version(self, graph: str, edge_type: str) -> int: ...

    def bump_topology(self, graph: str, edge_type: str, expected: int) -> None: ...


async def guard_topology(edges: TopologyVersions, graph: str, edge_type: str) -> None:
    """Read the topology version of (graph, edge type) and stage its conditional bump.

    Call it BEFORE the cycle check reads anything: a change committed after this read
    then fails this unit of work's commit (VersionConflict), so the check can never
    rest on a topology that changed under it."""
    version = await edges.topology_version(graph, edge_type)
    edges.bump_topology(graph, edge_type, version)


async def reaches(edges: Neighbours, graph: str, edge_type: str, from_id: str, to_id: str, *,
                  max_visited: int = DEFAULT_MAX_VISITED) -> bool:
    """Whether following OUT edges of ``edge_type`` leads from ``from_id`` to ``to_id``
    (a node reaches itself: a self-loop closes a cycle).

    Level-synchronous BFS: one ``out_neighbours`` call per level, so a path of length
    *d* is found with *d* calls and a search that fails ends after at most one call
    more than the depth of what it explored. Once more than ``max_visited`` nodes
    (``from_id`` included) were seen and the walk is not over, it refuses the write
    (RuleViolated, CYCLE_CHECK_TOO_LARGE) rather than read on or guess."""
    if from_id == to_id:
        return True
    visited = {from_id}
    frontier = [from_id]
    while frontier:
        found = await edges.out_neighbours(graph, edge_type, frontier)
        following: list[str] = []
        for node in frontier:
            for target in found.get(node, ()):
                if target == to_id:
                    return True
                if target not in visited:
                    visited.add(target)
                    following.append(target)
        if following:  # a walk that ended has its answer, whatever it cost
            check_rule(CycleCheckWithinBound(edge_type, len(visited), max_visited))
        frontier = following
    return False


__all__ = ["DEFAULT_MAX_VISITED", "Neighbours", "TopologyVersions", "guard_topology", "reaches"]
