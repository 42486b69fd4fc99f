"""Consistency tokens: ``sign({"p": {shard: position}})`` of the last log position a
write produced. The query side verifies them with the same secret."""

from __future__ import annotations

from typing import Any, Mapping, Protocol


class PayloadSigner(Protocol):
    def sign(self, payload: dict[str, Any]) -> str: ...


class SignedConsistencyTokens:
    def __init__(self, signer: PayloadSigner) -> None:
        self._signer = signer

    def issue(self, positions: Mapping[str, int]) -> str:
        return self._signer.sign({"p": {str(k): int(v) for k, v in positions.items()}})
