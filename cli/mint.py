"""``python -m cli token mint``: a bearer token for a principal, its graphs and scopes.

HS256 with a secret of EDGEWISE_JWT_HS256_SECRETS (the services' own setting), or RS256/ES256
with a PEM private key file (the algorithm follows the key). The secret is never printed.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cli.sqlite_files import CliError
from infrastructure.config import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER, AuthSettings
from infrastructure.security.jwt import MAX_SUBJECT_LENGTH, MIN_RSA_KEY_BITS, valid_graph_pattern

EXIT_USAGE = 2
DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 30 * 24 * 3600
NO_KEY = ("no signing key: set EDGEWISE_JWT_HS256_SECRETS (key-id=secret, as the services have it) "
          "or pass --private-key FILE --key-id ID (RS256/ES256)")


def parse_time(text: str) -> float:
    """Seconds since the epoch, or an ISO 8601 time (``2026-12-01T00:00:00Z``; no zone = UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _hs256_key(key_id: str | None, getenv: Callable[[str], str]) -> tuple[str, str, bytes]:
    problems: list[str] = []
    auth = AuthSettings.from_env(getenv, problems)
    mine = [p for p in problems if p.startswith("EDGEWISE_JWT_HS256_SECRETS")]
    if mine:
        raise CliError("; ".join(mine), exit_code=EXIT_USAGE)
    if not auth.hs256_secrets:
        raise CliError(NO_KEY, exit_code=EXIT_USAGE)
    secrets = dict(auth.hs256_secrets)
    if key_id is None:
        key_id = auth.hs256_secrets[0][0]
    elif key_id not in secrets:
        raise CliError(f"--key-id {key_id!r} is not in EDGEWISE_JWT_HS256_SECRETS (key ids there: "
                       f"{', '.join(secrets)})", exit_code=EXIT_USAGE)
    return key_id, "HS256", secrets[key_id].encode("utf-8")


def _private_key(path: str, key_id: str | None) -> tuple[str, str, Any]:
    if not key_id:
        raise CliError("--private-key needs --key-id (the id the services know the public key by)",
                       exit_code=EXIT_USAGE)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CliError(f"--private-key {path!r} cannot be read: {exc.strerror}", exit_code=EXIT_USAGE) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CliError(f"--private-key {path!r} is encrypted; give an unencrypted PEM key",
                       exit_code=EXIT_USAGE) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CliError(f"--private-key {path!r} is not a PEM private key", exit_code=EXIT_USAGE) from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= MIN_RSA_KEY_BITS:
        return key_id, "RS256", key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key_id, "ES256", key
    raise CliError(f"--private-key {path!r}: only RSA keys of at least {MIN_RSA_KEY_BITS} bits (RS256) and EC "
                   f"P-256 keys (ES256) are supported", exit_code=EXIT_USAGE)


def mint(*, subject: str, graphs: Sequence[str], scopes: Sequence[str], ttl: int, not_before: str | None,
         key_id: str | None, private_key: str | None, issuer: str | None, audience: str | None,
         getenv: Callable[[str], str] = lambda name: os.environ.get(name, ""),
         clock: Callable[[], float] = time.time) -> dict[str, Any]:
    if not subject or len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable():
        raise CliError(f"--subject must be 1 to {MAX_SUBJECT_LENGTH} printable characters", exit_code=EXIT_USAGE)
    bad = [g for g in graphs if not valid_graph_pattern(g)]
    if bad:
        raise CliError(f"--graph {bad[0]!r} is not a graph name, a prefix ending in '*' (team-a-*) or '*'",
                       exit_code=EXIT_USAGE)
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise CliError(f"--ttl must be 1 to {MAX_TTL_SECONDS} seconds (30 days), got {ttl}", exit_code=EXIT_USAGE)
    now = clock()
    try:
        nbf = parse_time(not_before) if not_before else None
    except ValueError:
        raise CliError(f"--not-before {not_before!r} is neither seconds since the epoch nor an ISO 8601 time",
                       exit_code=EXIT_USAGE) from None
    if private_key:
        kid, algorithm, key = _private_key(private_key, key_id)
    else:
        kid, algorithm, key = _hs256_key(key_id, getenv)
    exp = int((nbf if nbf is not None else now) + ttl)
    scopes = list(dict.fromkeys(scopes))
    graphs = list(dict.fromkeys(graphs))
    claims: dict[str, Any] = {
        "iss": issuer or getenv("EDGEWISE_JWT_ISSUER") or DEFAULT_JWT_ISSUER,
        "aud": audience or getenv("EDGEWISE_JWT_AUDIENCE") or DEFAULT_JWT_AUDIENCE,
        "sub": subject, "graphs": graphs, "scope": " ".join(scopes),
        "iat": int(now), "exp": exp, "jti": str(uuid.uuid4()),
    }
    if nbf is not None:
        claims["nbf"] = int(nbf)
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})
    result: dict[str, Any] = {"token": token, "subject": subject, "graphs": graphs, "scopes": scopes,
                              "key_id": kid, "algorithm": algorithm, "issuer": claims["iss"],
                              "audience": claims["aud"], "expires_at": iso(exp)}
    if nbf is not None:
        result["not_before"] = iso(int(nbf))
    return result
