"""``python -m cli token mint``: the tokens it mints verify with a verifier built from the
same settings the services read; it never prints the secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cli.main import main
from domain.errors import Reason, Unauthenticated
from infrastructure.config import AuthSettings
from infrastructure.security.jwt import JwtVerifier

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET_1 = "first-signing-secret-0123456789abcdef"
SECRET_2 = "second-signing-secret-0123456789abcdef"
HS_ENV = {"EDGEWISE_JWT_HS256_SECRETS": f"k1={SECRET_1},k2={SECRET_2}"}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """As an operator runs it, with exactly ``env``'s Edgewise settings."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWISE_")}
    full.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=60)


def verifier_for(env: dict[str, str]) -> JwtVerifier:
    problems: list[str] = []
    auth = AuthSettings.from_env(lambda name: env.get(name, ""), problems)
    assert problems == []
    return JwtVerifier(auth)


@pytest.fixture
def mint(monkeypatch, capsys):
    """``main(["token", "mint", ...])`` in-process with ``env`` as the environment."""

    def run(env: dict[str, str], *args: str) -> tuple[int, dict, str]:
        for name in [n for n in os.environ if n.startswith("EDGEWISE_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = main(["token", "mint", *args])
        captured = capsys.readouterr()
        return code, json.loads(captured.out), captured.err

    return run


def test_an_hs256_token_verifies_with_the_services_settings(mint):
    code, out, err = mint(HS_ENV, "--subject", "alice", "--graph", "g1", "--graph", "team-a-*",
                          "--scope", "graph.read", "--scope", "graph.write", "--ttl", "120")
    assert code == 0, err
    assert (out["subject"], out["graphs"], out["scopes"]) == ("alice", ["g1", "team-a-*"], ["graph.read", "graph.write"])
    assert (out["key_id"], out["algorithm"]) == ("k1", "HS256")  # the first key by default
    expires = datetime.fromisoformat(out["expires_at"].replace("Z", "+00:00")).timestamp()
    assert 0 < expires - time.time() <= 121
    principal = verifier_for(HS_ENV).verify(out["token"])
    assert principal.subject == "alice" and principal.key_id == "k1"
    assert principal.may_use("team-a-x") and not principal.may_use("g2")
    assert principal.scopes == {"graph.read", "graph.write"}
    assert SECRET_1 not in json.dumps(out) + err


def test_the_key_id_chooses_the_secret(mint):
    code, out, _ = mint(HS_ENV, "--subject", "bob", "--key-id", "k2")
    assert code == 0 and out["key_id"] == "k2"
    assert verifier_for(HS_ENV).verify(out["token"]).key_id == "k2"
    code, out, err = mint(HS_ENV, "--subject", "bob", "--key-id", "k3")
    assert code == 2 and "k3" in err and SECRET_1 not in err


def test_issuer_and_audience_follow_the_settings(mint):
    env = {**HS_ENV, "EDGEWISE_JWT_ISSUER": "idp", "EDGEWISE_JWT_AUDIENCE": "graphs"}
    code, out, _ = mint(env, "--subject", "carol", "--graph", "g")
    assert code == 0 and (out["issuer"], out["audience"]) == ("idp", "graphs")
    assert verifier_for(env).verify(out["token"]).subject == "carol"
    with pytest.raises(Unauthenticated) as info:
        verifier_for(HS_ENV).verify(out["token"])
    assert info.value.reason == Reason.TOKEN_ISSUER_INVALID


def test_not_before_delays_the_token(mint):
    start = int(time.time()) + 3600
    code, out, _ = mint(HS_ENV, "--subject", "dave", "--not-before", str(start), "--ttl", "60")
    assert code == 0
    assert out["not_before"] < out["expires_at"]
    with pytest.raises(Unauthenticated) as info:
        verifier_for(HS_ENV).verify(out["token"])
    assert info.value.reason == Reason.TOKEN_NOT_YET_VALID


@pytest.mark.parametrize("kind, algorithm", [("rsa", "RS256"), ("ec", "ES256")])
def test_a_private_key_file_mints_rs256_or_es256(mint, tmp_path, kind, algorithm):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "private.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / "public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    code, out, err = mint({}, "--subject", "svc", "--graph", "*", "--private-key", str(private), "--key-id", "signer")
    assert code == 0, err
    assert (out["algorithm"], out["key_id"]) == (algorithm, "signer")
    assert verifier_for({"EDGEWISE_JWT_PUBLIC_KEYS": f"signer={public}"}).verify(out["token"]).subject == "svc"
    code, _, err = mint({}, "--subject", "svc", "--private-key", str(private))
    assert code == 2 and "--key-id" in err


@pytest.mark.parametrize("args", [["--ttl", "0"], ["--ttl", str(31 * 24 * 3600)], ["--graph", "a*b"],
                                  ["--not-before", "someday"]])
def test_bad_arguments_are_usage_errors(mint, args):
    code, out, err = mint(HS_ENV, "--subject", "x", *args)
    assert code == 2 and out["ok"] is False and err.count("\n") == 1


def test_an_unknown_scope_is_refused():
    proc = run_cli(HS_ENV, "token", "mint", "--subject", "x", "--scope", "graph.everything")
    assert proc.returncode == 2 and "graph.everything" in proc.stderr


def test_raw_prints_only_the_token():
    proc = run_cli(HS_ENV, "token", "mint", "--subject", "erin", "--graph", "g", "--scope", "graph.read", "--raw")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert proc.stdout.count("\n") == 1 and token.count(".") == 2
    assert verifier_for(HS_ENV).verify(token).subject == "erin"
    assert SECRET_1 not in proc.stdout + proc.stderr


def test_no_key_configured_is_exit_2_naming_the_settings():
    proc = run_cli({}, "token", "mint", "--subject", "x")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "EDGEWISE_JWT_HS256_SECRETS" in proc.stderr and "--private-key" in proc.stderr
    assert json.loads(proc.stdout)["ok"] is False
