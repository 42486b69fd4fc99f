"""The process shell both services share (infrastructure/process.py)."""

import pytest

from infrastructure import process
from infrastructure.process import EXIT_BAD_CONFIG, EXIT_CANNOT_BIND, EXIT_OK, run_service

GOOD_ENV = {"EDGEWISE_DB_PATH": "/tmp/never-opened.db", "EDGEWISE_TOKEN_SECRET": "0123456789abcdef0123", "EDGEWISE_AUTH_MODE": "dev",
            "EDGEWISE_LOG_LEVEL": "warning"}


@pytest.fixture(autouse=True)
def logging_levels(monkeypatch):
    """Keep the root logger of the test process as it is; record what would be set."""
    levels: list[str] = []
    monkeypatch.setattr(process, "configure_logging", lambda level, service="": levels.append(level))
    return levels


def test_a_bad_configuration_exits_2_naming_every_problem_and_runs_nothing(capsys, logging_levels):
    ran = []

    async def main(settings):
        ran.append(settings)

    code = run_service("test service", main, env={"EDGEWISE_LOG_LEVEL": "LOUD"})
    assert code == EXIT_BAD_CONFIG
    assert ran == [] and logging_levels == []
    err = capsys.readouterr().err
    assert err.startswith("edgewise test service: invalid configuration")
    for key in ("EDGEWISE_DB_PATH", "EDGEWISE_TOKEN_SECRET", "EDGEWISE_LOG_LEVEL"):
        assert key in err


def test_a_good_configuration_configures_logging_then_runs_main(logging_levels):
    ran = []

    async def main(settings):
        ran.append(settings)

    assert run_service("test service", main, env=GOOD_ENV) == EXIT_OK
    assert logging_levels == ["WARNING"]
    assert [s.db_path for s in ran] == ["/tmp/never-opened.db"]


def test_tune_gc_freezes_what_lives_and_collects_less_often():
    import gc

    from infrastructure.process import GC_GEN0_THRESHOLD, tune_gc
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_tune_gc_keeps_a_higher_threshold_a_process_chose():
    import gc

    from infrastructure.process import tune_gc
    before = gc.get_threshold()
    try:
        gc.set_threshold(50_000, 20, 100)  # the command process's choice (ADR 0006)
        tune_gc()
        assert gc.get_threshold() == (50_000, 20, 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_settings_with_defaults_and_exits_0_without_reading_them(capsys, flag):
    ran = []

    async def main(settings):
        ran.append(settings)

    # no EDGEWISE_* at all: --help must not be a configuration error
    code = run_service("query service", main, env={}, argv=[flag], module="query_service", role="query")
    assert code == EXIT_OK and ran == []
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m query_service [--help]")
    assert "EDGEWISE_QUERY_ADDR " in out and "default: 127.0.0.1:50052" in out
    assert "EDGEWISE_READ_CACHE_MB" in out and "EDGEWISE_CYCLE_CHECK_MAX_NODES" not in out  # the command's


def test_an_unexpected_argument_exits_2_pointing_at_help(capsys):
    async def main(settings):
        raise AssertionError("not reached")

    assert run_service("command service", main, env=GOOD_ENV, argv=["--port", "1"],
                       module="command_service") == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "'--port'" in err and "python -m command_service --help" in err


def test_a_taken_port_exits_4_with_one_line(capsys):
    from infrastructure.grpc.server import BindError

    async def main(settings):
        raise BindError("cannot bind gRPC server to 127.0.0.1:1 (in use by another process?)")

    assert run_service("query service", main, env=GOOD_ENV) == EXIT_CANNOT_BIND
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edgewise query service: cannot start: cannot bind gRPC server to 127.0.0.1:1 "
                   "(in use by another process?)"]


def test_served_elsewhere_names_the_other_service_and_every_query_worker():
    from infrastructure.config import Settings
    from infrastructure.grpc.server import COMMAND_SERVICE_NAME, QUERY_SERVICE_NAME
    from infrastructure.process import served_elsewhere

    settings = Settings.from_env({**GOOD_ENV, "EDGEWISE_QUERY_ADDRS": "127.0.0.1:7002,127.0.0.1:7003"})
    assert served_elsewhere(settings, COMMAND_SERVICE_NAME) == {
        QUERY_SERVICE_NAME: ("127.0.0.1:7002", "127.0.0.1:7003")}
    assert served_elsewhere(settings, QUERY_SERVICE_NAME) == {COMMAND_SERVICE_NAME: ("127.0.0.1:50051",)}
    alone = Settings.from_env(GOOD_ENV)
    assert served_elsewhere(alone, COMMAND_SERVICE_NAME) == {QUERY_SERVICE_NAME: ("127.0.0.1:50052",)}
