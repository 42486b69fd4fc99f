"""A missing setting stops a service at start-up with a message; nothing falls back."""

import os
import subprocess
import sys

import pytest

from tests.e2e.stack import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("module", ["command_service", "query_service"])
@pytest.mark.parametrize("missing", ["EDGEWISE_DB_PATH", "EDGEWISE_TOKEN_SECRET"])
def test_missing_required_setting_fails_fast(module, missing, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWISE_")}
    env.update({"PYTHONPATH": str(ROOT), "EDGEWISE_DB_PATH": str(tmp_path / "x.db"),
                "EDGEWISE_TOKEN_SECRET": "0123456789abcdef0123456789", "EDGEWISE_AUTH_MODE": "dev",
                "EDGEWISE_COMMAND_ADDR": "127.0.0.1:0", "EDGEWISE_QUERY_ADDR": "127.0.0.1:0"})
    del env[missing]
    proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0
    assert missing in proc.stderr
    assert not (tmp_path / "x.db").exists()  # no store was created on the way down


def _dynamodb_env(endpoint: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEWISE_", "AWS_"))}
    env.update({"PYTHONPATH": str(ROOT), "EDGEWISE_TOKEN_SECRET": "0123456789abcdef0123456789", "EDGEWISE_AUTH_MODE": "dev",
                "EDGEWISE_COMMAND_ADDR": "127.0.0.1:0", "EDGEWISE_QUERY_ADDR": "127.0.0.1:0",
                "EDGEWISE_STORE": "dynamodb", "EDGEWISE_DYNAMODB_ENDPOINT": endpoint,
                "EDGEWISE_DYNAMODB_TABLE_PREFIX": prefix,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    return env


def _start_and_fail(module: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("edgewise ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("module", ["command_service", "query_service"])
def test_an_unreachable_dynamodb_endpoint_fails_start_up_with_one_line(module):
    from tests.e2e.stack import free_port

    line = _start_and_fail(module, _dynamodb_env(f"http://127.0.0.1:{free_port()}", "edgewise-"))
    assert "cannot start" in line and "DynamoDB" in line


@pytest.mark.parametrize("module", ["command_service", "query_service"])
def test_missing_dynamodb_tables_fail_start_up_naming_the_fix(module, moto_server):
    line = _start_and_fail(module, _dynamodb_env(moto_server.endpoint, "never-created-"))
    assert "never-created-write" in line and "python -m cli tables create" in line
