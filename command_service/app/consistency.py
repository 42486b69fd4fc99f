"""Consistency tokens: ``sign({"p": {shard: position}, "g": [graph]})`` of the last log
position a write produced and the graph it wrote. The query side verifies them with the same
secret; ``"g"`` lets authorization refuse a token of a graph the caller may not use before
the handler runs (infrastructure.tokens.peek_graphs). Tokens without ``"g"`` still verify."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence


class PayloadSigner(Protocol):
    def sign(self, payload: dict[str, Any]) -> str: ...


class SignedConsistencyTokens:
    def __init__(self, signer: PayloadSigner) -> None:
        self._signer = signer

    def issue(self, positions: Mapping[str, int], graphs: Sequence[str]) -> str:
        return self._signer.sign({"p": {str(k): int(v) for k, v in positions.items()},
                                  "g": list(dict.fromkeys(graphs))})
