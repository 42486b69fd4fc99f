import pytest

from infrastructure.config import ConfigError, DynamoDBSettings, Settings

BASE = {"EDGEWISE_DB_PATH": "/tmp/e.db", "EDGEWISE_TOKEN_SECRET": "x" * 32, "EDGEWISE_AUTH_MODE": "dev"}


def test_defaults_for_optional_settings():
    settings = Settings.from_env(BASE)
    assert settings.db_path == "/tmp/e.db"
    assert settings.token_secret == b"x" * 32
    assert settings.command_addr == "127.0.0.1:50051"
    assert settings.query_addr == "127.0.0.1:50052"
    assert settings.log_level == "INFO"
    assert settings.projector_enabled is True
    assert settings.projector_poll_interval_ms == 50


def test_everything_can_be_set():
    settings = Settings.from_env({
        **BASE, "EDGEWISE_COMMAND_ADDR": "0.0.0.0:6001", "EDGEWISE_QUERY_ADDR": "[::]:6002",
        "EDGEWISE_LOG_LEVEL": "debug", "EDGEWISE_PROJECTOR_ENABLED": "false",
        "EDGEWISE_PROJECTOR_POLL_INTERVAL_MS": "10"})
    assert (settings.command_addr, settings.query_addr) == ("0.0.0.0:6001", "[::]:6002")
    assert settings.log_level == "DEBUG"
    assert settings.projector_enabled is False
    assert settings.projector_poll_interval_ms == 10


@pytest.mark.parametrize("missing", ["EDGEWISE_DB_PATH", "EDGEWISE_TOKEN_SECRET"])
def test_missing_required_setting_fails_loudly(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert missing in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"EDGEWISE_LOG_LEVEL": "loud", "EDGEWISE_COMMAND_ADDR": "nope",
                           "EDGEWISE_PROJECTOR_POLL_INTERVAL_MS": "-5",
                           "EDGEWISE_PROJECTOR_ENABLED": "maybe"})
    # the six above, and jwt authentication (the default) with no key to verify with
    assert len(info.value.problems) == 7


def test_short_secret_is_refused():
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Settings.from_env({**BASE, "EDGEWISE_TOKEN_SECRET": "short"})


def test_repr_hides_the_secret():
    assert "xxxx" not in repr(Settings.from_env(BASE))


def test_read_cache_and_metrics_settings():
    settings = Settings.from_env(BASE)
    assert (settings.read_cache_mb, settings.metrics_port) == (1024, 0)
    settings = Settings.from_env({**BASE, "EDGEWISE_READ_CACHE_MB": "0", "EDGEWISE_METRICS_PORT": "9464"})
    assert (settings.read_cache_mb, settings.metrics_port) == (0, 9464)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "EDGEWISE_READ_CACHE_MB": "-1", "EDGEWISE_METRICS_PORT": "70000"})
    assert len(info.value.problems) == 2


def test_cycle_check_bound_setting() -> None:
    assert Settings.from_env(BASE).cycle_check_max_nodes == 100_000
    assert Settings.from_env({**BASE, "EDGEWISE_CYCLE_CHECK_MAX_NODES": "500"}).cycle_check_max_nodes == 500
    for bad in ("0", "-3", "many"):
        with pytest.raises(ConfigError, match="EDGEWISE_CYCLE_CHECK_MAX_NODES"):
            Settings.from_env({**BASE, "EDGEWISE_CYCLE_CHECK_MAX_NODES": bad})

# --- storage engine (EDGEWISE_STORE) and DynamoDB settings -----------------------------

def test_store_defaults_to_sqlite_with_dynamodb_defaults():
    settings = Settings.from_env(BASE)
    assert settings.store == "sqlite"
    assert settings.dynamodb == DynamoDBSettings(endpoint="", region="us-east-1", table_prefix="edgewise-")
    assert settings.dynamodb.describe_endpoint() == "the AWS default endpoint of us-east-1"


def test_dynamodb_settings_can_be_set():
    settings = Settings.from_env({
        **BASE, "EDGEWISE_STORE": "DynamoDB", "EDGEWISE_DYNAMODB_ENDPOINT": "http://127.0.0.1:8000/",
        "EDGEWISE_DYNAMODB_REGION": "eu-west-3", "EDGEWISE_DYNAMODB_TABLE_PREFIX": "prod.graph_"})
    assert settings.store == "dynamodb"
    assert settings.dynamodb == DynamoDBSettings(endpoint="http://127.0.0.1:8000", region="eu-west-3",
                                                 table_prefix="prod.graph_")
    assert "eu-west-3" in repr(settings)


def test_dynamodb_store_needs_no_data_file():
    settings = Settings.from_env({"EDGEWISE_TOKEN_SECRET": "x" * 32, "EDGEWISE_AUTH_MODE": "dev", "EDGEWISE_STORE": "dynamodb"})
    assert (settings.store, settings.db_path) == ("dynamodb", "")
    with pytest.raises(ConfigError, match="EDGEWISE_DB_PATH"):
        Settings.from_env({"EDGEWISE_TOKEN_SECRET": "x" * 32, "EDGEWISE_AUTH_MODE": "dev", "EDGEWISE_STORE": "sqlite"})


@pytest.mark.parametrize("key, value, fragment", [
    ("EDGEWISE_STORE", "postgres", "EDGEWISE_STORE must be one of sqlite, dynamodb"),
    ("EDGEWISE_DYNAMODB_ENDPOINT", "localhost:8000", "EDGEWISE_DYNAMODB_ENDPOINT"),
    ("EDGEWISE_DYNAMODB_ENDPOINT", "ftp://127.0.0.1:8000", "EDGEWISE_DYNAMODB_ENDPOINT"),
    ("EDGEWISE_DYNAMODB_ENDPOINT", "http://127.0.0.1:99999", "EDGEWISE_DYNAMODB_ENDPOINT"),
    ("EDGEWISE_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000/some/path", "EDGEWISE_DYNAMODB_ENDPOINT"),
    ("EDGEWISE_DYNAMODB_ENDPOINT", "http://", "EDGEWISE_DYNAMODB_ENDPOINT"),
    ("EDGEWISE_DYNAMODB_REGION", "US-EAST-1", "EDGEWISE_DYNAMODB_REGION"),
    ("EDGEWISE_DYNAMODB_REGION", "useast1", "EDGEWISE_DYNAMODB_REGION"),
    ("EDGEWISE_DYNAMODB_TABLE_PREFIX", "my tables/", "EDGEWISE_DYNAMODB_TABLE_PREFIX"),
    ("EDGEWISE_DYNAMODB_TABLE_PREFIX", "p" * 251, "EDGEWISE_DYNAMODB_TABLE_PREFIX"),
])
def test_malformed_store_settings_are_refused(key, value, fragment):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, key: value})
    assert len(info.value.problems) == 1
    assert fragment in info.value.problems[0]


def test_https_endpoints_and_gov_regions_are_accepted():
    settings = Settings.from_env({**BASE, "EDGEWISE_DYNAMODB_ENDPOINT": "https://dynamodb.us-gov-west-1.amazonaws.com",
                                  "EDGEWISE_DYNAMODB_REGION": "us-gov-west-1"})
    assert settings.dynamodb.endpoint == "https://dynamodb.us-gov-west-1.amazonaws.com"


def test_dynamodb_problems_are_reported_with_the_others():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"EDGEWISE_STORE": "dynamodb", "EDGEWISE_DYNAMODB_ENDPOINT": "nope",
                           "EDGEWISE_DYNAMODB_REGION": "?", "EDGEWISE_LOG_LEVEL": "loud",
                           "EDGEWISE_AUTH_MODE": "dev"})
    # the secret, the endpoint, the region, the log level; no data file needed
    assert len(info.value.problems) == 4


def test_dynamodb_settings_parse_names_the_given_flags():
    settings, problems = DynamoDBSettings.parse("nope", "us-east-1", "x", names=("--endpoint", "--region", "--prefix"))
    assert problems and problems[0].startswith("--endpoint ")
    assert settings.table_prefix == "x"


def test_a_db_path_whose_directory_does_not_exist_is_refused_naming_it(tmp_path):
    missing = tmp_path / "no-such-dir" / "edgewise.db"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "EDGEWISE_DB_PATH": str(missing)})
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    assert not missing.parent.exists()  # nothing was created on the way
    with pytest.raises(ConfigError, match="is a directory"):
        Settings.from_env({**BASE, "EDGEWISE_DB_PATH": str(tmp_path)})
    # the file itself may be new; DynamoDB has no data file to check
    assert Settings.from_env({**BASE, "EDGEWISE_DB_PATH": str(tmp_path / "new.db")}).db_path.endswith("new.db")
    Settings.from_env({**BASE, "EDGEWISE_STORE": "dynamodb", "EDGEWISE_DB_PATH": str(missing)})


def test_query_workers_default_to_the_cores_and_the_addresses_to_the_query_address(monkeypatch):
    import infrastructure.config as config

    monkeypatch.setattr(config.os, "cpu_count", lambda: 6)
    settings = Settings.from_env(BASE)
    assert settings.query_workers == 6
    assert settings.query_addrs == () and settings.query_addresses() == ("127.0.0.1:50052",)
    monkeypatch.setattr(config.os, "cpu_count", lambda: None)
    assert Settings.from_env(BASE).query_workers == 1


def test_query_worker_settings_are_validated():
    s = Settings.from_env({**BASE, "EDGEWISE_QUERY_WORKERS": "3"})
    assert s.query_workers == 3
    s = Settings.from_env({**BASE, "EDGEWISE_QUERY_ADDRS": "127.0.0.1:7002, 127.0.0.1:7003"})
    assert s.query_addrs == ("127.0.0.1:7002", "127.0.0.1:7003") and s.query_workers == 2
    for env, text in (({"EDGEWISE_QUERY_WORKERS": "0"}, "from 1 to"),
                      ({"EDGEWISE_QUERY_WORKERS": "many"}, "from 1 to"),
                      ({"EDGEWISE_QUERY_WORKERS": "1000"}, "from 1 to"),
                      ({"EDGEWISE_QUERY_ADDRS": "127.0.0.1:1,nope"}, "'nope'"),
                      ({"EDGEWISE_QUERY_ADDRS": "127.0.0.1:1,127.0.0.1:1"}, "twice"),
                      ({"EDGEWISE_QUERY_ADDRS": "127.0.0.1:1", "EDGEWISE_QUERY_WORKERS": "2"}, "disagree")):
        with pytest.raises(ConfigError, match=text):
            Settings.from_env({**BASE, **env})


def test_worker_addresses_count_up_from_the_base_port():
    from infrastructure.config import worker_addresses

    assert worker_addresses("127.0.0.1:50052", 3) == ("127.0.0.1:50052", "127.0.0.1:50053", "127.0.0.1:50054")
    assert worker_addresses("[::1]:9000", 2) == ("[::1]:9000", "[::1]:9001")
    assert worker_addresses("127.0.0.1:0", 1) == ("127.0.0.1:0",)
    with pytest.raises(ValueError, match="fixed base port"):
        worker_addresses("127.0.0.1:0", 2)
    with pytest.raises(ValueError, match="past 65535"):
        worker_addresses("127.0.0.1:65535", 2)


def test_help_text_covers_every_setting_the_readme_documents():
    import re
    from pathlib import Path

    from infrastructure.config import SETTINGS_DOC, settings_help

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    documented = set(re.findall(r"^\| `(EDGEWISE_[A-Z0-9_]+)` \|", readme, re.M))
    assert documented == {d.name for d in SETTINGS_DOC}
    text = settings_help("python -m command_service", "The command service.", "command")
    assert "EDGEWISE_CYCLE_CHECK_MAX_NODES" in text and "EDGEWISE_READ_CACHE_MB" not in text


def test_rate_limits_parse_and_refuse_nonsense():
    settings = Settings.from_env({**BASE, "EDGEWISE_RATE_LIMIT_READS": "50,200", "EDGEWISE_RATE_LIMIT_WRITES": "0",
                                  "EDGEWISE_RATE_LIMIT_PRINCIPAL_FACTOR": "4"})
    assert settings.rate_limits.reads == (50.0, 200) and settings.rate_limits.writes[0] == 0.0
    assert settings.rate_limits.principal_factor == 4
    for key, value in (("EDGEWISE_RATE_LIMIT_READS", "fast"), ("EDGEWISE_RATE_LIMIT_SCHEMA", "1,0"),
                       ("EDGEWISE_RATE_LIMIT_PRINCIPAL_FACTOR", "-1"), ("EDGEWISE_RATE_LIMIT_MAX_BUCKETS", "0")):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({**BASE, key: value})
        assert key in str(info.value)
