"""`make run` gives every process its own /metrics port: the command service the base port,
query worker i base + 1 + i (scripts/run_stack.py ``plan``)."""

from infrastructure.config import Settings
from scripts.run_stack import plan

ENV = {"EDGEWISE_EDGE": "off"}


def _plan(**kw):
    settings = Settings(db_path="unused.db", token_secret=b"0123456789abcdef", query_addr="127.0.0.1:7100",
                        query_workers=3, **kw)
    specs, _ = plan(settings, ENV)
    return {spec.name: spec for spec in specs}


def test_each_process_gets_its_own_metrics_port():
    specs = _plan(metrics_port=9400)
    assert {name: (spec.env.get("EDGEWISE_METRICS_PORT"), spec.ports) for name, spec in specs.items()} == {
        "command": ("9400", ("127.0.0.1:9400",)),
        "query-0": ("9401", ("127.0.0.1:9401",)),
        "query-1": ("9402", ("127.0.0.1:9402",)),
        "query-2": ("9403", ("127.0.0.1:9403",)),
    }


def test_no_metrics_port_no_metrics():
    specs = _plan()
    assert all("EDGEWISE_METRICS_PORT" not in spec.env and not spec.ports for spec in specs.values())
