"""Opaque signed tokens (page tokens, consistency tokens).

Format: ``<urlsafe-b64(compact JSON)>.<urlsafe-b64(HMAC-SHA256 tag)>``, unpadded.
A token is opaque to callers; tampering or garbage is INVALID_ARGUMENT, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from domain.errors import ValidationFailed

MAX_TOKEN_LENGTH = 4096


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes | str) -> None:
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not secret:
            raise ValueError("token secret must not be empty")
        self._secret = secret

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def sign(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True,
                          ensure_ascii=True).encode("ascii")
        return f"{_b64encode(body)}.{_b64encode(self._tag(body))}"

    def verify(self, token: str, *, field: str, reason: str) -> dict[str, Any]:
        """The payload of a token this signer made; ValidationFailed(field, reason) otherwise."""

        def invalid(why: str) -> ValidationFailed:
            return ValidationFailed.of(field, f"invalid token: {why}", reason=reason)

        if not isinstance(token, str) or not token:
            raise invalid("empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise invalid("too long")
        body_text, sep, tag_text = token.partition(".")
        if not sep or not body_text or not tag_text:
            raise invalid("malformed")
        try:
            body = _b64decode(body_text)
            tag = _b64decode(tag_text)
        except (binascii.Error, ValueError):
            raise invalid("malformed") from None
        # Only the canonical encoding is accepted: base64 decoding ignores the unused
        # low bits of the last character, which would let a changed token verify.
        if _b64encode(body) != body_text or _b64encode(tag) != tag_text:
            raise invalid("malformed")
        if not hmac.compare_digest(tag, self._tag(body)):
            raise invalid("signature mismatch")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise invalid("malformed") from None
        if not isinstance(payload, dict):
            raise invalid("malformed")
        return payload


def peek_graphs(token: str) -> list[str]:
    """The graphs an Edgewise token names (``"g"``: a page token's graph, a consistency token's
    list of graphs), read WITHOUT verifying the signature; [] for garbage or a token without them.

    Only for a deny decision taken before the handler runs (authorization): the handler still
    verifies the token, so a caller who edits the payload to name a graph it may use gets a
    token that fails verification, and one who leaves it alone is refused here."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return []
    body_text = token.partition(".")[0]
    try:
        payload = json.loads(_b64decode(body_text))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the limit
        return []
    graphs = payload.get("g") if isinstance(payload, dict) else None
    if isinstance(graphs, str):
        graphs = [graphs]
    if not isinstance(graphs, list):
        return []
    return list(dict.fromkeys(g for g in graphs if isinstance(g, str) and g))
