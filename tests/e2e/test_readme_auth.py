"""The README's authentication walk-through, run as written (but for `make run`, which the
fixture replaces with the same stack: both services in jwt mode behind the real Envoy)."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.stack import ROOT, Stack
from tests.e2e.test_readme import readme_block

pytestmark = [pytest.mark.e2e, pytest.mark.security]


def auth_walkthrough() -> str:
    return readme_block("auth-walkthrough")


@pytest.fixture(scope="module")
def jwt_stack(tmp_path_factory):
    from tests.edge.conftest import edge_settings, running

    workdir = tmp_path_factory.mktemp("readme-auth")
    secret = "k1=" + secrets.token_hex(32)
    s = Stack(workdir, {"EDGEWISE_AUTH_MODE": "jwt", "EDGEWISE_JWT_HS256_SECRETS": secret}).start()
    try:
        with running(edge_settings([s.command_addr], [s.query_addr]), workdir / "envoy") as gateway:
            s.edge = gateway.endpoints
            s.jwt_secrets = secret
            yield s
    finally:
        s.stop()


def test_readme_auth_walkthrough_works_as_written(jwt_stack):
    lines = auth_walkthrough().splitlines()
    assert any(line.startswith("EDGEWISE_AUTH_MODE=jwt make run") for line in lines)
    script = "\n".join(line for line in lines if "make run" not in line)  # the fixture is the stack
    script = script.replace("127.0.0.1:8080", jwt_stack.edge.grpc)
    # the README's own `export EDGEWISE_JWT_HS256_SECRETS=...` line mints a fresh secret; the stack
    # was started with this one, so the token the README mints must be signed with it
    script = re.sub(r'export EDGEWISE_JWT_HS256_SECRETS="[^\n]*"',
                    f'export EDGEWISE_JWT_HS256_SECRETS="{jwt_stack.jwt_secrets}"', script)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("EDGEWISE_JWT_HS256_SECRETS", None)
    proc = subprocess.run(["bash", "-e", "-u", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    # -e stops at the first failure; the only command meant to fail is the last one
    assert proc.returncode != 0, out
    assert out.count('"consistency_token"') == 2, out  # ApplySchema and CreateNode answered
    assert '"name": "graphs/team-a-demo/nodes/ada"' in out
    assert '"code": 7' in out and '"reason":"GRAPH_ACCESS_DENIED"' in out.replace(" ", ""), out  # 7: PERMISSION_DENIED
    assert jwt_stack.jwt_secrets.split("=", 1)[1] not in out  # nothing echoes the secret
