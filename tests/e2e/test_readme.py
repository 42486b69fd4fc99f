"""The README's grpcurl walk-through, run as written against a fresh stack."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import engine_env
from tests.e2e.stack import ROOT, Stack

pytestmark = pytest.mark.e2e


def readme_block(marker: str) -> str:
    """The ```sh block between ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->`` in the README."""
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {marker}:start -->\s*```sh\n(.*?)```\s*<!-- {marker}:end -->", text, re.S)
    assert block, f"README lost its {marker} block"
    return block.group(1)


def walkthrough() -> str:
    return readme_block("walkthrough")


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory, engine, request):
    """As `make run` (and `make run STORE=dynamodb`) serves it: both services behind the real
    Envoy, the walk-through's gRPC calls on the edge's one port, its curl on the REST port."""
    from tests.edge.conftest import edge_settings, running

    workdir = tmp_path_factory.mktemp(f"readme-{engine}")
    s = Stack(workdir, engine_env(engine, request)).start()
    try:
        with running(edge_settings([s.command_addr], [s.query_addr]), workdir / "envoy") as gateway:
            s.edge = gateway.endpoints
            yield s
    finally:
        s.stop()


def as_written(stack: Stack) -> str:
    """The walk-through with the README's addresses replaced by this stack's."""
    return walkthrough().replace("127.0.0.1:8080", stack.edge.grpc).replace("127.0.0.1:8081", stack.edge.rest)


def test_readme_walkthrough_works_as_written(fresh_stack):
    script = as_written(fresh_stack)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-e", "-u", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    # -e stops at the first failure; the only command meant to fail is the last one.
    assert proc.returncode != 0, out
    assert out.count("\"consistency_token\"") == 9, out  # schema, 5 nodes, 3 edges
    assert '"version": "1"' in out
    assert '"target": "graphs/demo/nodes/grace"' in out
    assert '"depth": 2' in out and "graphs/demo/nodes/linus" in out
    assert '"plan": "INDEX_RANGE(Person.age)"' in out
    assert '"reason":"CARDINALITY_VIOLATED"' in out.replace(" ", "")
    assert '"name":"graphs/demo/nodes/ada"' in out.replace(" ", "")  # the REST/JSON GetNode


def test_the_readme_quotes_what_grpcurl_prints(fresh_stack):
    """grpcurl prints numeric codes with -format-error and CamelCase names without: the prose
    around the walk-through quotes both as they appear."""
    readme = (ROOT / "README.md").read_text()
    script = as_written(fresh_stack)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    # twice, going on past errors (no -e): the second run meets the graph "demo" the first left
    for _ in range(2):
        proc = subprocess.run(["bash", "-u", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    out = proc.stdout + proc.stderr
    assert "Code: Aborted" in out and "SCHEMA_VERSION_CONFLICT" in out
    assert "`Code: Aborted` with the reason `SCHEMA_VERSION_CONFLICT`" in readme
    assert '"code": 9,' in out
    assert '`"code": 9` (FAILED_PRECONDITION)' in readme
