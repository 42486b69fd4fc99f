"""Type checking: mypy over our code with the project configuration (pyproject.toml
[tool.mypy]: strict, looser only at the gRPC edge; generated code excluded)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.architecture

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_finds_nothing():
    # Incremental (cache in build/mypy_cache): a few seconds cold, well under one warm.
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
