"""Bearer-token verification (infrastructure/security/jwt.py): every way a token is refused,
each with its ErrorInfo reason, and the keys (HS256 secrets, PEM files, a rotating JWKS file)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from domain.errors import Reason, Unauthenticated
from infrastructure.config import AuthSettings, ConfigError
from infrastructure.security import jwt as security_jwt
from infrastructure.security.jwt import (
    DEV_MODE_WARNING,
    DevAuthenticator,
    JwtAuthenticator,
    JwtVerifier,
    build_authenticator,
)
from infrastructure.security.principal import DEV_PRINCIPAL, SCOPE_READ, SCOPE_SCHEMA, SCOPE_WRITE

NOW = 1_800_000_000.0
SECRET = "s3cret-s3cret-s3cret-s3cret-0123456789"
OTHER_SECRET = "another-secret-another-secret-0123456789"


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def keys():
    return {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP256R1()),
            "ec2": ec.generate_private_key(ec.SECP256R1()),
            "p384": ec.generate_private_key(ec.SECP384R1()),
            "ed": ed25519.Ed25519PrivateKey.generate()}


def public_pem(private) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def write_pem(tmp_path, name: str, private) -> str:
    path = tmp_path / f"{name}.pem"
    path.write_bytes(public_pem(private))
    return str(path)


def jwk_of(private, kid: str, *, alg: bool = True) -> dict:
    algorithm = pyjwt.algorithms.RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else pyjwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    jwk["kid"] = kid
    if alg:
        jwk["alg"] = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
    else:
        jwk.pop("alg", None)
    return jwk


def write_jwks(path, *jwks: dict) -> str:
    path.write_text(json.dumps({"keys": list(jwks)}))
    return str(path)


def claims(**overrides) -> dict:
    base = {"iss": "edgewise", "aud": "edgewise", "sub": "alice", "graphs": ["g1", "team-a-*"],
            "scope": "graph.read graph.write", "exp": NOW + 600, "iat": NOW}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict, key=SECRET, algorithm: str = "HS256", kid: str | None = "hs1") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return pyjwt.encode(payload, key, algorithm=algorithm, headers=headers)


def auth(**overrides) -> AuthSettings:
    values = dict(mode="jwt", hs256_secrets=(("hs1", SECRET),), leeway_seconds=30)
    values.update(overrides)
    return AuthSettings(**values)


def verifier(clock: Clock | None = None, **overrides) -> JwtVerifier:
    return JwtVerifier(auth(**overrides), clock=clock or Clock())


def refused(v: JwtVerifier, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        v.verify(token)
    return info.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed_hs256(payload: dict, secret: bytes, kid: object) -> str:
    """What an attacker builds, e.g. an HS256 token 'signed' with a public key's PEM as the
    secret (PyJWT itself refuses to encode it)."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}." \
                    f"{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


# -- the header --------------------------------------------------------------------------


def test_a_good_hs256_token_gives_its_principal():
    principal = verifier().verify(sign(claims()))
    assert principal.subject == "alice"
    assert principal.graphs == ("g1", "team-a-*")
    assert principal.scopes == frozenset({SCOPE_READ, SCOPE_WRITE})
    assert principal.expires_at == NOW + 600
    assert principal.key_id == "hs1"
    assert not principal.dev


def test_a_missing_header_is_token_missing():
    authenticator = JwtAuthenticator(verifier())
    with pytest.raises(Unauthenticated) as info:
        authenticator.authenticate([])
    assert info.value.reason == Reason.TOKEN_MISSING
    assert "authorization: Bearer" in info.value.message


@pytest.mark.parametrize("values", [["Basic dXNlcjpwYXNz"], ["Bearer"], ["Bearer "], ["token-without-scheme"],
                                    ["Bearer a b"], ["Bearer x", "Bearer y"]])
def test_a_header_that_is_not_one_bearer_token_is_malformed(values):
    with pytest.raises(Unauthenticated) as info:
        JwtAuthenticator(verifier()).authenticate(values)
    assert info.value.reason == Reason.TOKEN_MALFORMED


def test_the_scheme_is_case_insensitive():
    token = sign(claims())
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert JwtAuthenticator(verifier()).authenticate([f"{scheme} {token}"]).subject == "alice"


@pytest.mark.parametrize("token", ["abc", "a.b.c", "a.b", "....", "x" * 9000,
                                   b64(b"{not json") + "." + b64(b"{}") + ".sig"])
def test_a_token_that_is_not_a_jwt_is_malformed(token):
    assert refused(verifier(), token).reason == Reason.TOKEN_MALFORMED


def test_a_payload_that_is_not_json_is_malformed():
    good = sign(claims())
    header, _, signature = good.split(".")
    payload = b64(b"not json")
    signing_input = f"{header}.{payload}"
    resigned = b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())
    assert refused(verifier(), f"{signing_input}.{resigned}").reason == Reason.TOKEN_MALFORMED


def test_a_wrong_signature_is_refused():
    v = verifier()
    assert refused(v, sign(claims(), OTHER_SECRET)).reason == Reason.TOKEN_SIGNATURE_INVALID
    header, payload, signature = sign(claims()).split(".")
    forged = b64(json.dumps(claims(graphs=["*"])).encode())
    assert refused(v, f"{header}.{forged}.{signature}").reason == Reason.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("kid", ["hs1", None])
def test_alg_none_is_never_accepted(kid):
    token = pyjwt.encode(claims(), None, algorithm="none", headers={"kid": kid} if kid else {})
    error = refused(verifier(), token)
    assert error.reason == Reason.TOKEN_ALGORITHM_NOT_ALLOWED
    assert "HS256" in error.message  # it says what is allowed


def test_an_algorithm_left_out_of_the_allow_list_is_refused_even_with_a_good_signature():
    v = verifier(algorithms=("RS256",))
    assert refused(v, sign(claims())).reason == Reason.TOKEN_ALGORITHM_NOT_ALLOWED


def test_hs_rs_confusion_is_refused_before_any_hmac(tmp_path, keys, monkeypatch):
    """An HS256 token whose 'secret' is the RSA public key's PEM, naming the RSA key's id."""
    v = verifier(public_key_files=(("rsa1", write_pem(tmp_path, "rsa1", keys["rsa"])),))
    token = hand_signed_hs256(claims(), public_pem(keys["rsa"]), "rsa1")
    calls = []
    monkeypatch.setattr(security_jwt.jwt, "decode", lambda *a, **k: calls.append(a) or {})
    error = refused(v, token)
    assert error.reason == Reason.TOKEN_ALGORITHM_NOT_ALLOWED
    assert "'rsa1'" in error.message and "RS256" in error.message
    assert calls == []  # no HMAC was computed


def test_es_rs_confusion_is_refused(tmp_path, keys):
    v = verifier(public_key_files=(("rsa1", write_pem(tmp_path, "rsa1", keys["rsa"])),
                                   ("ec1", write_pem(tmp_path, "ec1", keys["ec"]))))
    assert refused(v, sign(claims(), keys["ec"], "ES256", kid="rsa1")).reason == Reason.TOKEN_ALGORITHM_NOT_ALLOWED
    assert refused(v, sign(claims(), keys["rsa"], "RS256", kid="ec1")).reason == Reason.TOKEN_ALGORITHM_NOT_ALLOWED
    assert refused(v, sign(claims(), SECRET, "HS256", kid="ec1")).reason == Reason.TOKEN_ALGORITHM_NOT_ALLOWED


def test_an_unknown_key_id_is_refused_naming_it():
    error = refused(verifier(), sign(claims(), kid="rotated-out"))
    assert error.reason == Reason.TOKEN_KEY_UNKNOWN
    assert "'rotated-out'" in error.message


def test_a_kid_that_is_not_a_string_is_malformed():
    assert refused(verifier(), hand_signed_hs256(claims(), SECRET.encode(), 7)).reason == Reason.TOKEN_MALFORMED


def test_no_kid_is_accepted_when_one_key_has_the_algorithm(tmp_path, keys):
    v = verifier(public_key_files=(("rsa1", write_pem(tmp_path, "rsa1", keys["rsa"])),))
    assert v.verify(sign(claims(), kid=None)).key_id == "hs1"
    assert v.verify(sign(claims(sub="bob"), keys["rsa"], "RS256", kid=None)).key_id == "rsa1"


def test_no_kid_is_refused_when_several_keys_have_the_algorithm():
    v = verifier(hs256_secrets=(("hs1", SECRET), ("hs2", OTHER_SECRET)))
    error = refused(v, sign(claims(), kid=None))
    assert error.reason == Reason.TOKEN_KEY_UNKNOWN
    assert "2 configured keys" in error.message
    assert v.verify(sign(claims(), OTHER_SECRET, kid="hs2")).key_id == "hs2"


# -- time --------------------------------------------------------------------------------


def test_an_expired_token_is_refused():
    error = refused(verifier(), sign(claims(exp=NOW - 31)))
    assert error.reason == Reason.TOKEN_EXPIRED
    assert "new token" in error.message


def test_a_token_not_yet_valid_is_refused():
    assert refused(verifier(), sign(claims(nbf=NOW + 31))).reason == Reason.TOKEN_NOT_YET_VALID


def test_the_leeway_applies_on_both_sides():
    v = verifier()  # 30 s
    assert v.verify(sign(claims(exp=NOW - 29))).subject == "alice"
    assert v.verify(sign(claims(sub="bob", nbf=NOW + 29))).subject == "bob"
    assert refused(v, sign(claims(exp=NOW - 30))).reason == Reason.TOKEN_EXPIRED  # exp <= now - leeway
    strict = verifier(leeway_seconds=0)
    assert refused(strict, sign(claims(exp=NOW - 1))).reason == Reason.TOKEN_EXPIRED
    assert refused(strict, sign(claims(nbf=NOW + 1))).reason == Reason.TOKEN_NOT_YET_VALID


def test_time_comes_from_the_injected_clock_not_the_wall():
    clock = Clock()
    v = verifier(clock)
    token = sign(claims(nbf=NOW + 100, exp=NOW + 200, iat=NOW + 100))
    assert refused(v, token).reason == Reason.TOKEN_NOT_YET_VALID
    clock.t = NOW + 100
    assert v.verify(token).subject == "alice"


def test_a_cached_token_still_expires_and_skips_the_signature(monkeypatch):
    clock = Clock()
    v = verifier(clock)
    token = sign(claims(exp=NOW + 60))
    decodes = []
    real_decode = security_jwt.jwt.decode
    monkeypatch.setattr(security_jwt.jwt, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    assert v.verify(token).subject == "alice"
    assert v.verify(token).subject == "alice"
    assert len(decodes) == 1  # the second call was a cache hit
    clock.t = NOW + 60 + 30  # exp + leeway
    assert refused(v, token).reason == Reason.TOKEN_EXPIRED
    assert v.cache_size == 0


def test_the_cache_is_bounded():
    v = JwtVerifier(auth(), clock=Clock(), cache_size=3)
    tokens = [sign(claims(sub=f"user-{i}")) for i in range(10)]
    for token in tokens:
        v.verify(token)
    assert v.cache_size == 3
    assert JwtVerifier(auth(), clock=Clock()).verify(tokens[0]).subject == "user-0"


# -- claims ------------------------------------------------------------------------------


def test_a_wrong_audience_is_refused():
    error = refused(verifier(), sign(claims(aud="someone-else")))
    assert error.reason == Reason.TOKEN_AUDIENCE_INVALID
    assert "someone-else" not in error.message


def test_a_wrong_issuer_is_refused():
    error = refused(verifier(), sign(claims(iss="evil")))
    assert error.reason == Reason.TOKEN_ISSUER_INVALID
    assert "evil" not in error.message


def test_issuer_and_audience_are_configurable():
    v = verifier(issuer="idp", audience="graphs")
    assert v.verify(sign(claims(iss="idp", aud=["other", "graphs"]))).subject == "alice"
    assert refused(v, sign(claims())).reason == Reason.TOKEN_ISSUER_INVALID


@pytest.mark.parametrize("missing", ["sub", "graphs", "exp", "iss", "aud"])
def test_a_missing_claim_is_refused(missing):
    error = refused(verifier(), sign({k: v for k, v in claims().items() if k != missing}))
    assert error.reason == Reason.TOKEN_CLAIMS_INVALID
    assert repr(missing) in error.message


@pytest.mark.parametrize("bad", [{"sub": ""}, {"sub": 7}, {"sub": "x" * 257}, {"graphs": "g1"},
                                 {"graphs": [1]}, {"graphs": [""]}, {"graphs": ["a*b"]}, {"exp": "soon"},
                                 {"nbf": "later"}, {"scope": ["graph.read"]}, {"scp": "graph.read"},
                                 {"exp": True}])
def test_an_ill_typed_claim_is_refused_without_echoing_it(bad):
    error = refused(verifier(), sign(claims(**bad)))
    assert error.reason == Reason.TOKEN_CLAIMS_INVALID
    for value in bad.values():
        if isinstance(value, str) and value:
            assert value not in error.message


def test_empty_graphs_are_allowed():
    assert verifier().verify(sign(claims(graphs=[]))).graphs == ()


def test_scopes_come_from_scope_or_scp_and_unknown_ones_are_ignored():
    v = verifier()
    assert v.verify(sign(claims(scope="graph.read admin:everything"))).scopes == {SCOPE_READ}
    assert v.verify(sign(claims(sub="b", scope=None, scp=["schema.admin", "x"]))).scopes == {SCOPE_SCHEMA}
    assert v.verify(sign(claims(sub="c", scope=None))).scopes == frozenset()


def test_graph_patterns_are_names_prefixes_or_everything():
    v = verifier()
    principal = v.verify(sign(claims(graphs=["g1", "team-a-*"])))
    assert principal.may_use("g1") and principal.may_use("team-a-x") and principal.may_use("team-a-")
    assert not principal.may_use("g10") and not principal.may_use("team-b") and not principal.may_use("g")
    assert v.verify(sign(claims(sub="root", graphs=["*"]))).may_use("anything")


def test_messages_never_echo_the_token():
    v = verifier()
    for token in (sign(claims(), OTHER_SECRET), sign(claims(exp=NOW - 100)), sign(claims(aud="x-aud-x"))):
        error = refused(v, token)
        for part in token.split("."):
            assert part not in error.message and part not in repr(error)


# -- keys --------------------------------------------------------------------------------


def test_rs256_and_es256_verify_with_pem_files(tmp_path, keys):
    v = verifier(hs256_secrets=(), public_key_files=(("rsa1", write_pem(tmp_path, "rsa1", keys["rsa"])),
                                                      ("ec1", write_pem(tmp_path, "ec1", keys["ec"]))))
    assert v.verify(sign(claims(), keys["rsa"], "RS256", kid="rsa1")).key_id == "rsa1"
    assert v.verify(sign(claims(), keys["ec"], "ES256", kid="ec1")).key_id == "ec1"
    assert refused(v, sign(claims(), keys["rsa2"], "RS256", kid="rsa1")).reason == Reason.TOKEN_SIGNATURE_INVALID
    assert refused(v, sign(claims(), keys["ec2"], "ES256", kid="ec1")).reason == Reason.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("name", ["p384", "ed"])
def test_an_unsupported_public_key_is_a_config_error_naming_its_id(tmp_path, keys, name):
    with pytest.raises(ConfigError) as info:
        verifier(public_key_files=(("odd-key", write_pem(tmp_path, name, keys[name])),))
    assert "'odd-key'" in str(info.value)


def test_a_file_that_is_no_public_key_is_a_config_error(tmp_path, keys):
    private = tmp_path / "private.pem"
    private.write_bytes(keys["rsa"].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    with pytest.raises(ConfigError) as info:
        verifier(public_key_files=(("oops", str(private)),))
    assert "'oops'" in str(info.value) and "PRIVATE" not in str(info.value)


def test_rs256_and_es256_verify_with_a_jwks_file(tmp_path, keys):
    path = write_jwks(tmp_path / "jwks.json", jwk_of(keys["rsa"], "r1"), jwk_of(keys["ec"], "e1", alg=False))
    v = verifier(hs256_secrets=(), jwks_file=path)
    assert v.key_ids == ("e1", "r1")
    assert v.verify(sign(claims(), keys["rsa"], "RS256", kid="r1")).key_id == "r1"
    assert v.verify(sign(claims(), keys["ec"], "ES256", kid="e1")).key_id == "e1"  # alg inferred from kty/crv
    assert refused(v, sign(claims(), keys["ec"], "ES256", kid="r1")).reason == Reason.TOKEN_ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize("document", [
    "not json", '{"no": "keys"}', '{"keys": [{"kty": "RSA"}]}',
    '{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}',
])
def test_a_broken_jwks_file_at_start_is_a_config_error(tmp_path, document):
    path = tmp_path / "jwks.json"
    path.write_text(document)
    with pytest.raises(ConfigError) as info:
        verifier(jwks_file=str(path))
    assert "EDGEWISE_JWT_JWKS_FILE" in str(info.value)


def test_a_jwks_key_with_private_material_or_a_clashing_id_is_refused(tmp_path, keys):
    private = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(keys["ec"]))
    private["kid"] = "e1"
    with pytest.raises(ConfigError, match="private key material"):
        verifier(jwks_file=write_jwks(tmp_path / "a.json", private))
    with pytest.raises(ConfigError, match="'hs1'"):
        verifier(jwks_file=write_jwks(tmp_path / "b.json", jwk_of(keys["ec"], "hs1")))


def test_jwks_keys_rotate_without_a_restart(tmp_path, keys, caplog):
    clock = Clock()
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk_of(keys["rsa"], "old"))
    v = verifier(clock, hs256_secrets=(), jwks_file=str(path))
    old_token = sign(claims(), keys["rsa"], "RS256", kid="old")
    new_token = sign(claims(sub="bob"), keys["rsa2"], "RS256", kid="new")
    assert v.verify(old_token).subject == "alice"

    write_jwks(path, jwk_of(keys["rsa2"], "new"))
    os.utime(path, ns=(1, 1_000_000_001))
    clock.t += 0.5  # looked at most once a second: not yet
    assert refused(v, new_token).reason == Reason.TOKEN_KEY_UNKNOWN
    clock.t += 0.6
    assert v.verify(new_token).subject == "bob"
    assert refused(v, old_token).reason == Reason.TOKEN_KEY_UNKNOWN  # the cached verification went too

    caplog.set_level(logging.WARNING, logger="edgewise.security")
    path.write_text('{"keys": [')  # a half-written file keeps the last good keys
    os.utime(path, ns=(2, 2_000_000_002))
    clock.t += 1.1
    assert v.verify(new_token).subject == "bob"
    warnings = [r for r in caplog.records if r.name == "edgewise.security" and "keeping the last good keys" in
                r.getMessage()]
    assert len(warnings) == 1
    clock.t += 1.1
    v.verify(new_token)
    assert len([r for r in caplog.records if "keeping the last good keys" in r.getMessage()]) == 1  # once per change

    path.unlink()
    clock.t += 1.1
    assert v.verify(new_token).subject == "bob"
    write_jwks(path, jwk_of(keys["rsa"], "old"), jwk_of(keys["rsa2"], "new"))
    clock.t += 1.1
    assert v.verify(old_token).subject == "alice"


# -- building ----------------------------------------------------------------------------


def test_no_settings_is_dev_silently(caplog):
    caplog.set_level(logging.DEBUG, logger="edgewise.security")
    authenticator = build_authenticator(None)
    assert isinstance(authenticator, DevAuthenticator)
    assert authenticator.authenticate([]) is DEV_PRINCIPAL
    assert not [r for r in caplog.records if r.name == "edgewise.security"]


def test_dev_mode_is_loud_in_one_line(caplog):
    caplog.set_level(logging.DEBUG, logger="edgewise.security")
    authenticator = build_authenticator(AuthSettings(mode="dev"))
    assert authenticator.authenticate(["Bearer whatever"]) is DEV_PRINCIPAL
    lines = [r for r in caplog.records if r.name == "edgewise.security"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert DEV_MODE_WARNING in lines[0].getMessage() and "\n" not in lines[0].getMessage()


def test_jwt_mode_builds_a_verifying_authenticator():
    authenticator = build_authenticator(auth(), clock=Clock())
    assert isinstance(authenticator, JwtAuthenticator)
    assert authenticator.leeway_seconds == 30
    assert authenticator.authenticate([f"Bearer {sign(claims())}"]).subject == "alice"
    with pytest.raises(ConfigError):
        build_authenticator(AuthSettings(mode="jwt"))  # no key at all
