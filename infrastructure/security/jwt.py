"""Bearer-token (JWT) verification: who is calling, from ``authorization: Bearer <JWT>``.

The algorithm is never taken from the token: ``AuthSettings.algorithms`` is the allow-list,
and every key carries its own algorithm (an HS256 secret, an RSA key → RS256, a P-256 key →
ES256). A token's header ``alg`` must be allowed AND equal its key's algorithm before any
signature is computed, which is what defeats algorithm confusion (an HS256 token "signed"
with an RSA public key as the HMAC secret is refused, the HMAC is never computed).

``exp`` and ``nbf`` are checked here against an injected clock with the configured leeway
(PyJWT's own checks read the wall clock). A verified token is cached (bounded LRU, keyed by
its SHA-256) so a repeat caller does not pay the signature again; a cache hit still expires.

Messages say what is wrong and what to do; they never contain the token or a claim value,
except the key id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from domain.errors import Reason, Unauthenticated
from infrastructure.config import AuthSettings, ConfigError
from infrastructure.security.principal import DEV_PRINCIPAL, SCOPES, Principal

_log = logging.getLogger("edgewise.security")

Clock = Callable[[], float]

DEFAULT_CACHE_SIZE = 4096
JWKS_CHECK_INTERVAL_SECONDS = 1.0
MAX_TOKEN_LENGTH = 8192  # far above any real token; refused before it is parsed
MAX_SUBJECT_LENGTH = 256
MAX_GRAPH_PATTERNS = 1000
MAX_GRAPH_PATTERN_LENGTH = 256
MIN_RSA_KEY_BITS = 2048
BEARER = "bearer"

DEV_MODE_WARNING = ("authentication is OFF (EDGEWISE_AUTH_MODE=dev): every caller is principal 'dev' with every "
                    "scope on every graph; never expose this port")

_HINT_NEW_TOKEN = "get a new token (python -m cli token mint, or your identity provider)"


def _shown(key_id: object) -> str:
    """A key id as it may appear in a message: the only token content ever echoed, clipped."""
    return repr(str(key_id)[:64])


def _refuse(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


def valid_graph_pattern(pattern: object) -> bool:
    """A graph name, a prefix ending in ``*`` (``team-a-*``) or ``*``: non-empty, at most
    MAX_GRAPH_PATTERN_LENGTH characters, ``*`` only at the end."""
    return (isinstance(pattern, str) and 0 < len(pattern) <= MAX_GRAPH_PATTERN_LENGTH
            and "*" not in pattern[:-1] and pattern.isprintable())


# -- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationKey:
    """One key a token may be verified with; ``algorithm`` is the only one it verifies."""

    key_id: str
    algorithm: str  # HS256, RS256 or ES256
    material: Any = None  # bytes (HS256) or a cryptography public key
    source: str = ""  # where it was configured, for messages

    def __repr__(self) -> str:  # never the secret
        return f"VerificationKey(key_id={self.key_id!r}, algorithm={self.algorithm!r}, source={self.source!r})"


def algorithm_of_public_key(key: object) -> str | None:
    """RS256 for an RSA public key (at least MIN_RSA_KEY_BITS), ES256 for a P-256 one, else None."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256" if key.key_size >= MIN_RSA_KEY_BITS else None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256" if isinstance(key.curve, ec.SECP256R1) else None
    return None


def _pem_key(key_id: str, path: str) -> VerificationKey:
    where = f"EDGEWISE_JWT_PUBLIC_KEYS: key id {key_id!r} ({path})"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError([f"{where} cannot be read: {exc.strerror}"]) from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError([f"{where} is not a PEM public key ('-----BEGIN PUBLIC KEY-----'; "
                           f"never configure a private key here)"]) from None
    algorithm = algorithm_of_public_key(key)
    if algorithm is None:
        raise ConfigError([f"{where} is a {type(key).__name__.lstrip('_')} key; only RSA keys of at least "
                           f"{MIN_RSA_KEY_BITS} bits (RS256) and EC P-256 keys (ES256) are supported"])
    return VerificationKey(key_id, algorithm, key, source="EDGEWISE_JWT_PUBLIC_KEYS")




def _jwk_key(jwk: object, index: int) -> VerificationKey:
    """One entry of a JWKS file; ValueError names what is wrong with it (never key material)."""
    if not isinstance(jwk, dict):
        raise ValueError(f"keys[{index}] is not an object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= 256 or not kid.isprintable():
        raise ValueError(f"keys[{index}] has no 'kid' (every key needs a key id, so keys can rotate)")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    inferred = "RS256" if kty == "RSA" else "ES256" if (kty, crv) == ("EC", "P-256") else None
    if inferred is None:
        raise ValueError(f"key id {_shown(kid)} is kty {str(kty)[:8]!r}"
                         f"{f' crv {str(crv)[:8]!r}' if kty == 'EC' else ''}: only RSA keys (RS256) and "
                         f"EC P-256 keys (ES256) are supported")
    if any(part in jwk for part in ("d", "p", "q")):
        raise ValueError(f"key id {_shown(kid)} holds private key material: a JWKS file for verification "
                         f"holds public keys only")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"key id {_shown(kid)} has use {str(use)[:8]!r}; only signature keys ('sig') verify")
    alg = jwk.get("alg", inferred)
    if alg != inferred:
        raise ValueError(f"key id {_shown(kid)} says alg {str(alg)[:8]!r} but is a {kty} key ({inferred})")
    try:
        key = jwt.PyJWK(jwk, algorithm=inferred).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"key id {_shown(kid)} is not a valid {kty} public key ({type(exc).__name__})") from None
    if algorithm_of_public_key(key) != inferred:
        raise ValueError(f"key id {_shown(kid)} is not a usable public key (RSA keys need at least "
                         f"{MIN_RSA_KEY_BITS} bits)")
    return VerificationKey(kid, inferred, key, source="EDGEWISE_JWT_JWKS_FILE")


def parse_jwks(data: bytes) -> dict[str, VerificationKey]:
    """The keys of a JWKS document (``{"keys": [...]}``); ValueError on any problem."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("it is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError('it is not a JWKS document ({"keys": [...]})')
    parsed: dict[str, VerificationKey] = {}
    for index, jwk in enumerate(keys):
        key = _jwk_key(jwk, index)
        if key.key_id in parsed:
            raise ValueError(f"it names key id {_shown(key.key_id)} twice")
        parsed[key.key_id] = key
    return parsed


class _JwksFile:
    """The JWKS file's keys, re-read when its mtime, size or inode changes (looked at most
    once per JWKS_CHECK_INTERVAL_SECONDS of ``clock``)."""

    def __init__(self, path: str, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._checked_at = -math.inf
        self._signature: tuple[int, ...] | None = None
        self.keys: dict[str, VerificationKey] = {}

    def _stat(self) -> tuple[int, ...]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load_initial(self) -> None:
        """At build: a missing or broken file is a ConfigError."""
        self._checked_at = self._clock()
        try:
            self._signature = self._stat()
            with open(self.path, "rb") as f:
                self.keys = parse_jwks(f.read())
        except OSError as exc:
            raise ConfigError([f"EDGEWISE_JWT_JWKS_FILE {self.path!r} cannot be read: {exc.strerror}"]) from None
        except ValueError as exc:
            raise ConfigError([f"EDGEWISE_JWT_JWKS_FILE {self.path!r}: {exc}"]) from None

    def changed_keys(self) -> dict[str, VerificationKey] | None:
        """The new keys when the file changed since it was last read (and is good), else None.
        A file that cannot be read or parsed keeps the last good keys, with one warning per change."""
        now = self._clock()
        if 0 <= now - self._checked_at < JWKS_CHECK_INTERVAL_SECONDS:
            return None
        self._checked_at = now
        try:
            signature = self._stat()
        except OSError as exc:
            if self._signature != (-1,):
                self._signature = (-1,)
                _log.warning("JWKS file %s cannot be read (%s); keeping the last good keys (%d)",
                             self.path, exc.strerror, len(self.keys))
            return None
        if signature == self._signature:
            return None
        self._signature = signature  # a broken version is looked at once, not every second
        try:
            with open(self.path, "rb") as f:
                keys = parse_jwks(f.read())
        except OSError as exc:
            _log.warning("JWKS file %s cannot be read (%s); keeping the last good keys (%d)",
                         self.path, exc.strerror, len(self.keys))
            return None
        except ValueError as exc:
            _log.warning("JWKS file %s is broken (%s); keeping the last good keys (%d)", self.path, exc,
                         len(self.keys))
            return None
        return keys


# -- the verifier -------------------------------------------------------------------------


class _TokenCache:
    """Verified tokens by SHA-256, least recently used out first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Principal | None:
        with self._lock:
            principal = self._entries.get(digest)
            if principal is not None:
                self._entries.move_to_end(digest)
            return principal

    def put(self, digest: bytes, principal: Principal) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[digest] = principal
            self._entries.move_to_end(digest)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class JwtVerifier:
    """Verifies bearer tokens with the keys ``AuthSettings`` configures; ConfigError at build
    for a key that cannot be used (naming its key id)."""

    def __init__(self, auth: AuthSettings, *, clock: Clock = time.time,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._clock = clock
        self.algorithms = tuple(auth.algorithms)
        self.issuer = auth.issuer
        self.audience = auth.audience
        self.leeway_seconds = float(auth.leeway_seconds)
        static: dict[str, VerificationKey] = {}
        for kid, secret in auth.hs256_secrets:
            static[kid] = VerificationKey(kid, "HS256", secret.encode("utf-8"), source="EDGEWISE_JWT_HS256_SECRETS")
        for kid, path in auth.public_key_files:
            if kid in static:
                raise ConfigError([f"key id {kid!r} is both an HS256 secret and a public key"])
            static[kid] = _pem_key(kid, path)
        self._static = static
        self._jwks: _JwksFile | None = None
        jwks_keys: dict[str, VerificationKey] = {}
        if auth.jwks_file:
            self._jwks = _JwksFile(auth.jwks_file, clock)
            self._jwks.load_initial()
            jwks_keys = self._jwks.keys
            clash = sorted(set(jwks_keys) & set(static))
            if clash:
                raise ConfigError([f"EDGEWISE_JWT_JWKS_FILE names key id {_shown(clash[0])}, which "
                                   f"EDGEWISE_JWT_HS256_SECRETS or EDGEWISE_JWT_PUBLIC_KEYS configures too"])
        self._keys: Mapping[str, VerificationKey] = {**static, **jwks_keys}
        if not self._keys:
            raise ConfigError(["no key to verify tokens with: set EDGEWISE_JWT_HS256_SECRETS, "
                               "EDGEWISE_JWT_PUBLIC_KEYS or EDGEWISE_JWT_JWKS_FILE"])
        for key in static.values():
            if key.algorithm not in self.algorithms:
                _log.warning("key id %r is %s, which EDGEWISE_JWT_ALGORITHMS (%s) does not allow: no token "
                             "verifies with it", key.key_id, key.algorithm, ",".join(self.algorithms))
        self._cache = _TokenCache(cache_size)

    # for tests and operators: which keys are in force
    @property
    def key_ids(self) -> tuple[str, ...]:
        self._refresh_keys()
        return tuple(sorted(self._keys))

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def _refresh_keys(self) -> None:
        if self._jwks is None:
            return
        keys = self._jwks.changed_keys()
        if keys is None:
            return
        clash = sorted(set(keys) & set(self._static))
        if clash:
            _log.warning("JWKS file %s names key id %s, which EDGEWISE_JWT_HS256_SECRETS or "
                         "EDGEWISE_JWT_PUBLIC_KEYS configures too; keeping the last good keys",
                         self._jwks.path, _shown(clash[0]))
            return
        self._jwks.keys = keys
        self._keys = {**self._static, **keys}
        self._cache.clear()  # a removed key's tokens must stop working now, not at their exp
        _log.info("JWKS file %s reloaded: key ids %s", self._jwks.path, ", ".join(sorted(keys)) or "(none)")

    def _check_time(self, expires_at: float, now: float) -> None:
        if expires_at <= now - self.leeway_seconds:
            raise _refuse(Reason.TOKEN_EXPIRED, f"the token has expired: {_HINT_NEW_TOKEN}")

    def verify(self, token: str) -> Principal:
        """The principal ``token`` stands for, or Unauthenticated with a TOKEN_* reason."""
        self._refresh_keys()
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _refuse(Reason.TOKEN_MALFORMED, f"the bearer token is empty or longer than {MAX_TOKEN_LENGTH} "
                                                  f"characters; send 'authorization: Bearer <JWT>'")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            try:
                self._check_time(cached.expires_at if cached.expires_at is not None else math.inf, now)
            except Unauthenticated:
                self._cache.discard(digest)
                raise
            return cached
        principal = self._verify(token, now)
        self._cache.put(digest, principal)
        return principal

    def _key_for(self, header: dict[str, Any]) -> VerificationKey:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise _refuse(Reason.TOKEN_ALGORITHM_NOT_ALLOWED,
                          f"the token's algorithm is not allowed here (allowed: {', '.join(self.algorithms)}); "
                          f"{_HINT_NEW_TOKEN}")
        kid = header.get("kid")
        if kid is None:
            candidates = [key for key in self._keys.values() if key.algorithm == alg]
            if len(candidates) != 1:
                raise _refuse(Reason.TOKEN_KEY_UNKNOWN,
                              f"the token names no key id ('kid' header) and {len(candidates)} configured keys "
                              f"use {alg}: mint tokens with the key id of the key that signed them")
            key = candidates[0]
        else:
            if not isinstance(kid, str):
                raise _refuse(Reason.TOKEN_MALFORMED, "the token's 'kid' header is not a string")
            found = self._keys.get(kid)
            if found is None:
                raise _refuse(Reason.TOKEN_KEY_UNKNOWN,
                              f"no key with id {_shown(kid)} is configured (unknown or rotated out): "
                              f"{_HINT_NEW_TOKEN}")
            key = found
        if key.algorithm != alg:
            # algorithm confusion (an HS256 token naming an RSA key...): refused before any signature
            raise _refuse(Reason.TOKEN_ALGORITHM_NOT_ALLOWED,
                          f"key id {_shown(key.key_id)} verifies {key.algorithm} only, and the token says "
                          f"another algorithm: {_HINT_NEW_TOKEN}")
        return key

    def _verify(self, token: str, now: float) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse(Reason.TOKEN_MALFORMED, "the bearer token is not a JWT (header.payload.signature, "
                                                  "base64url); send 'authorization: Bearer <JWT>'") from None
        key = self._key_for(header)
        try:
            claims = jwt.decode(
                token, key.material, algorithms=[key.algorithm], audience=self.audience, issuer=self.issuer,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "sub", "iss", "aud"]})
        except jwt.InvalidSignatureError:
            raise _refuse(Reason.TOKEN_SIGNATURE_INVALID,
                          f"the token's signature does not verify with key id {_shown(key.key_id)}: it was "
                          f"altered or signed with another key; {_HINT_NEW_TOKEN}") from None
        except jwt.InvalidAudienceError:
            raise _refuse(Reason.TOKEN_AUDIENCE_INVALID,
                          f"the token is not for this service: its 'aud' claim must be {self.audience!r}; "
                          f"{_HINT_NEW_TOKEN}") from None
        except jwt.InvalidIssuerError:
            raise _refuse(Reason.TOKEN_ISSUER_INVALID,
                          f"the token was not issued by a trusted issuer: its 'iss' claim must be "
                          f"{self.issuer!r}; {_HINT_NEW_TOKEN}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID,
                          f"the token has no {exc.claim!r} claim (required: exp, sub, iss, aud, graphs)") from None
        except (InvalidSubjectError, InvalidJTIError):
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID, "the token's 'sub' or 'jti' claim is not a string") from None
        except jwt.InvalidAlgorithmError:
            raise _refuse(Reason.TOKEN_ALGORITHM_NOT_ALLOWED, "the token's algorithm is not allowed here") from None
        except jwt.PyJWTError:
            raise _refuse(Reason.TOKEN_MALFORMED, "the bearer token cannot be decoded (bad base64url or JSON); "
                                                  "send 'authorization: Bearer <JWT>'") from None
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _number(exp) or (nbf is not None and not _number(nbf)):
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID, "the token's 'exp' and 'nbf' claims must be numbers "
                                                       "(seconds since the epoch)")
        assert isinstance(exp, (int, float))
        self._check_time(float(exp), now)
        if isinstance(nbf, (int, float)) and nbf > now + self.leeway_seconds:
            raise _refuse(Reason.TOKEN_NOT_YET_VALID, "the token is not valid yet (its 'nbf' is in the future): "
                                                      "wait, or check this host's clock")
        return principal_from_claims(claims, key.key_id)


def principal_from_claims(claims: Mapping[str, Any], key_id: str) -> Principal:
    """The principal of verified ``claims``; Unauthenticated(TOKEN_CLAIMS_INVALID) naming the claim."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUBJECT_LENGTH or not sub.isprintable():
        raise _refuse(Reason.TOKEN_CLAIMS_INVALID,
                      f"the token's 'sub' claim must be a non-empty string of at most {MAX_SUBJECT_LENGTH} characters")
    graphs = claims.get("graphs")
    if not isinstance(graphs, list) or len(graphs) > MAX_GRAPH_PATTERNS \
            or not all(valid_graph_pattern(g) for g in graphs):
        raise _refuse(Reason.TOKEN_CLAIMS_INVALID,
                      f"the token's 'graphs' claim must be a list of at most {MAX_GRAPH_PATTERNS} graph names, "
                      f"prefixes ending in '*' (team-a-*) or '*' (it may be empty; it may not be missing)")
    scopes: set[str] = set()
    scope, scp = claims.get("scope"), claims.get("scp")
    if scope is not None:
        if not isinstance(scope, str):
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID, "the token's 'scope' claim must be a space-separated string")
        scopes.update(scope.split())
    if scp is not None:
        if not isinstance(scp, list) or not all(isinstance(s, str) for s in scp):
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID, "the token's 'scp' claim must be a list of strings")
        scopes.update(scp)
    exp = claims["exp"]
    return Principal(subject=sub, graphs=tuple(dict.fromkeys(graphs)),
                     scopes=frozenset(scopes & set(SCOPES)), expires_at=float(exp), key_id=key_id)


# -- authenticators -----------------------------------------------------------------------


class Authenticator(Protocol):
    """Who is calling, from the call's ``authorization`` metadata values."""

    @property
    def leeway_seconds(self) -> float:
        """The clock skew tolerated on a token's exp (a stream ends that long after it)."""
        ...

    def authenticate(self, authorization_values: Sequence[str]) -> Principal: ...


def bearer_token(authorization_values: Sequence[str]) -> str:
    """The token of the one ``authorization: Bearer <token>`` value."""
    if not authorization_values:
        raise _refuse(Reason.TOKEN_MISSING, "this call needs a bearer token: send 'authorization: Bearer <JWT>' "
                                            "(python -m cli token mint makes one)")
    if len(authorization_values) > 1:
        raise _refuse(Reason.TOKEN_MALFORMED, "send exactly one 'authorization' header, not "
                                              f"{len(authorization_values)}")
    value = authorization_values[0]
    scheme, _, token = value.strip().partition(" ") if isinstance(value, str) else ("", "", "")
    token = token.strip()
    if scheme.lower() != BEARER or not token or " " in token:
        raise _refuse(Reason.TOKEN_MALFORMED, "the 'authorization' header must be 'Bearer <JWT>'")
    return token


class JwtAuthenticator:
    def __init__(self, verifier: JwtVerifier) -> None:
        self.verifier = verifier

    @property
    def leeway_seconds(self) -> float:
        return self.verifier.leeway_seconds

    def authenticate(self, authorization_values: Sequence[str]) -> Principal:
        return self.verifier.verify(bearer_token(authorization_values))


class DevAuthenticator:
    """EDGEWISE_AUTH_MODE=dev (and in-process tests): every caller is DEV_PRINCIPAL."""

    leeway_seconds = 0.0

    def authenticate(self, authorization_values: Sequence[str]) -> Principal:
        return DEV_PRINCIPAL


def build_authenticator(auth: AuthSettings | None, *, clock: Clock = time.time) -> Authenticator:
    """None (an in-process test server): dev, silently. Dev mode: dev, with one loud warning.
    Otherwise a JWT authenticator (ConfigError for a key that cannot be used)."""
    if auth is None:
        return DevAuthenticator()
    if auth.dev:
        _log.warning("%s", "!" * 8 + " " + DEV_MODE_WARNING + " " + "!" * 8)
        return DevAuthenticator()
    return JwtAuthenticator(JwtVerifier(auth, clock=clock))
