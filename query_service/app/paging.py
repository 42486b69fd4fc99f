"""Page sizes and signed page tokens bound to the request that issued them (AIP-158).

A page token names its graph in the clear (``"g"``), so authorization can refuse a token of a
graph the caller may not use before the handler runs (infrastructure.tokens.peek_graphs); the
signature still decides whether the token is valid. Tokens issued before the graph was added
have no ``"g"`` and are refused as INVALID_PAGE_TOKEN (the caller starts the listing again)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from domain.errors import FieldViolation, Reason, ValidationFailed
from query_service.app.ports import TokenSigner

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise ValidationFailed(f"{field} must not be negative", reason=Reason.INVALID_ARGUMENT,
                               violations=[FieldViolation(field, "must be >= 0")])
    return DEFAULT_PAGE_SIZE if value == 0 else min(value, MAX_PAGE_SIZE)


def _fingerprint(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:24]


class PageTokens:
    def __init__(self, signer: TokenSigner) -> None:
        self._signer = signer

    def issue(self, method: str, params: dict[str, Any], cursor: Any, *, graph: str) -> str:
        """A token for the page after ``cursor`` of the listing ``method(params)`` in ``graph``."""
        return self._signer.sign({"m": method, "g": graph, "h": _fingerprint(params), "c": cursor})

    def read(self, token: str, method: str, params: dict[str, Any], *, graph: str,
             field: str = "page_token") -> Any:
        """The cursor in ``token`` (None for an empty token)."""
        if not token:
            return None
        payload = self._signer.verify(token, field=field, reason=Reason.INVALID_PAGE_TOKEN)
        if (not isinstance(payload, dict) or payload.get("m") != method or payload.get("g") != graph
                or payload.get("h") != _fingerprint(params)):
            raise ValidationFailed(
                f"{field} was issued for a different request; repeat the original arguments or drop the token",
                reason=Reason.INVALID_PAGE_TOKEN,
                violations=[FieldViolation(field, "does not match the request's other arguments")])
        return payload.get("c")
