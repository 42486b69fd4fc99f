import base64
import json

import pytest

from domain.errors import Reason, ValidationFailed
from infrastructure.tokens import TokenSigner

SIGNER = TokenSigner(b"0123456789abcdef-test-secret")


def test_round_trip():
    payload = {"after": ["b", 3], "type": "Person", "n": 1.5, "ok": True}
    token = SIGNER.sign(payload)
    assert "=" not in token and "+" not in token and "/" not in token
    assert SIGNER.verify(token, field="page_token", reason=Reason.INVALID_PAGE_TOKEN) == payload


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def _forge_body(token: str) -> str:
    body, tag = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["after"] = "z"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{forged}.{tag}"


@pytest.mark.parametrize("mangle", [
    lambda t: _flip(t, 2),
    lambda t: _flip(t, len(t) - 2),
    lambda t: t.split(".")[0],
    lambda t: t + "x",
    lambda t: "",
    lambda t: "not a token",
    lambda t: "....",
    lambda t: "%%%.%%%",
    lambda t: "x" * 10_000,
    _forge_body,
    lambda t: TokenSigner(b"another-secret-of-16+bytes").sign({"after": "a"}),
], ids=["body-bit", "tag-bit", "no-tag", "suffix", "empty", "garbage", "dots", "bad-b64",
        "huge", "forged-body", "other-secret"])
def test_tampered_or_garbage_tokens_are_rejected_with_the_field_and_reason(mangle):
    token = mangle(SIGNER.sign({"after": "a"}))
    with pytest.raises(ValidationFailed) as info:
        SIGNER.verify(token, field="page_token", reason=Reason.INVALID_PAGE_TOKEN)
    assert info.value.reason == "INVALID_PAGE_TOKEN"
    assert info.value.violations[0].field == "page_token"


def test_every_single_character_change_is_detected():
    token = SIGNER.sign({"after": "a"})
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(token):
        for other in alphabet.replace(ch, "")[:8] + alphabet[-4:].replace(ch, ""):
            with pytest.raises(ValidationFailed):
                SIGNER.verify(token[:i] + other + token[i + 1:], field="f", reason="R")


def test_signed_non_object_payload_is_rejected():
    body = base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=").decode()
    tag = SIGNER.sign({}).split(".")[1]
    with pytest.raises(ValidationFailed):
        SIGNER.verify(f"{body}.{tag}", field="f", reason="R")


def test_empty_secret_is_refused():
    with pytest.raises(ValueError):
        TokenSigner(b"")
