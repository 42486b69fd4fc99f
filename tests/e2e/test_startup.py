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
                "EDGEWISE_TOKEN_SECRET": "0123456789abcdef0123456789",
                "EDGEWISE_COMMAND_ADDR": "127.0.0.1:0", "EDGEWISE_QUERY_ADDR": "127.0.0.1:0"})
    del env[missing]
    proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0
    assert missing in proc.stderr
    assert not (tmp_path / "x.db").exists()  # no store was created on the way down
