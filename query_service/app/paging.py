"""Page sizes and signed page tokens bound to the request that issued them (AIP-158)."""

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

    def issue(self, method: str, params: dict[str, Any], cursor: Any) -> str:
        return self._signer.sign({"m": method, "h": _fingerprint(params), "c": cursor})

    def read(self, token: str, method: str, params: dict[str, Any], field: str = "page_token") -> Any:
        """The cursor in ``token`` (None for an empty token)."""
        if not token:
            return None
        payload = self._signer.verify(token, field=field, reason=Reason.INVALID_PAGE_TOKEN)
        if not isinstance(payload, dict) or payload.get("m") != method or payload.get("h") != _fingerprint(params):
            raise ValidationFailed(
                f"{field} was issued for a different request; repeat the original arguments or drop the token",
                reason=Reason.INVALID_PAGE_TOKEN,
                violations=[FieldViolation(field, "does not match the request's other arguments")])
        return payload.get("c")
