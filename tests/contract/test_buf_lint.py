"""The contracts are buf STANDARD lint clean (offline: googleapis come from the wheel)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from prepare_buf_deps import prepare  # noqa: E402

pytestmark = pytest.mark.contract


def _buf() -> str:
    found = shutil.which("buf", path=os.path.dirname(sys.executable)) or shutil.which("buf")
    if not found:
        pytest.fail("buf not found: run `make venv` (buf-bin is a pinned dev dependency)")
    return found


def test_buf_lint_is_clean():
    prepare()
    result = subprocess.run([_buf(), "lint", "--path", "protos/edgewise"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_build_compiles_the_workspace():
    prepare()
    result = subprocess.run([_buf(), "build", "-o", os.devnull], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
