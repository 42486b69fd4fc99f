"""The process shell both services share (infrastructure/process.py)."""

import pytest

from infrastructure import process
from infrastructure.process import EXIT_BAD_CONFIG, EXIT_OK, run_service

GOOD_ENV = {"EDGEWISE_DB_PATH": "/tmp/never-opened.db", "EDGEWISE_TOKEN_SECRET": "0123456789abcdef0123",
            "EDGEWISE_LOG_LEVEL": "warning"}


@pytest.fixture(autouse=True)
def logging_levels(monkeypatch):
    """Keep the root logger of the test process as it is; record what would be set."""
    levels: list[str] = []
    monkeypatch.setattr(process, "configure_logging", levels.append)
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
