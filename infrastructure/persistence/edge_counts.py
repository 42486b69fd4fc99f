"""A node view's edge counts packed in one text attribute/column, shared by the read
models of both engines: one ``"{edge type} {OUT|IN} {count}"`` line per non-zero count."""

from __future__ import annotations

from domain.edge import Direction

_DIRECTIONS = {d.value: d for d in (Direction.OUT, Direction.IN)}


def unpack_counts(text: str) -> dict[tuple[str, Direction], int]:
    counts: dict[tuple[str, Direction], int] = {}
    if text:
        for line in text.split("\n"):
            edge_type, direction, count = line.split(" ")
            counts[(edge_type, _DIRECTIONS[direction])] = int(count)
    return counts
