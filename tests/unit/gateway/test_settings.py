"""GatewaySettings from the environment: defaults, lists of workers, and every problem named."""

import pytest

from gateway.settings import Address, GatewaySettings
from infrastructure.config import ConfigError


def test_defaults():
    s = GatewaySettings.from_env({})
    assert (str(s.grpc_addr), str(s.rest_addr), str(s.admin_addr)) == ("127.0.0.1:8080", "127.0.0.1:8081",
                                                                       "127.0.0.1:9901")
    assert [str(a) for a in s.command_addrs] == ["127.0.0.1:50051"]
    assert [str(a) for a in s.query_addrs] == ["127.0.0.1:50052"]
    assert (s.query.default_timeout_ms, s.query.max_timeout_ms) == (10_000, 60_000)
    assert (s.command.default_timeout_ms, s.command.max_timeout_ms) == (15_000, 60_000)
    assert not s.tls and s.log_level == "warning"


def test_query_workers_are_a_list_and_fall_back_to_the_services_own_setting():
    s = GatewaySettings.from_env({"EDGEWISE_QUERY_ADDR": "127.0.0.1:7000", "EDGEWISE_COMMAND_ADDR": "cmd:6000"})
    assert [str(a) for a in s.query_addrs] == ["127.0.0.1:7000"]
    assert [str(a) for a in s.command_addrs] == ["cmd:6000"]
    s = GatewaySettings.from_env({"EDGEWISE_QUERY_ADDR": "127.0.0.1:7000",
                                  "EDGEWISE_QUERY_ADDRS": "127.0.0.1:7001, 127.0.0.1:7002,[::1]:7003"})
    assert [str(a) for a in s.query_addrs] == ["127.0.0.1:7001", "127.0.0.1:7002", "[::1]:7003"]


def test_everything_can_be_set(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    s = GatewaySettings.from_env({
        "EDGEWISE_EDGE_GRPC_ADDR": "0.0.0.0:443", "EDGEWISE_EDGE_REST_ADDR": "0.0.0.0:8443",
        "EDGEWISE_EDGE_ADMIN_ADDR": "[::1]:9000", "EDGEWISE_EDGE_QUERY_TIMEOUT_MS": "100",
        "EDGEWISE_EDGE_QUERY_MAX_TIMEOUT_MS": "200", "EDGEWISE_EDGE_QUERY_PER_TRY_TIMEOUT_MS": "150",
        "EDGEWISE_EDGE_COMMAND_TIMEOUT_MS": "300", "EDGEWISE_EDGE_TLS_CERT": str(cert),
        "EDGEWISE_EDGE_TLS_KEY": str(key), "EDGEWISE_EDGE_LOG_LEVEL": "INFO", "EDGEWISE_EDGE_CONCURRENCY": "2",
        "EDGEWISE_EDGE_ACCESS_LOG": str(tmp_path / "access.log"), "EDGEWISE_EDGE_DESCRIPTOR_SET": "/x.pb"})
    assert s.admin_addr == Address("::1", 9000) and s.admin_addr.is_loopback
    assert (s.query.default_timeout_ms, s.query.max_timeout_ms, s.query.per_try_timeout_ms) == (100, 200, 150)
    assert s.command.default_timeout_ms == 300
    assert s.tls and s.log_level == "info" and s.concurrency == 2 and s.descriptor_set == "/x.pb"


@pytest.mark.parametrize("env,expected", [
    ({"EDGEWISE_EDGE_ADMIN_ADDR": "0.0.0.0:9901"}, "must be a loopback address"),
    ({"EDGEWISE_EDGE_ADMIN_ADDR": "10.1.2.3:9901"}, "must be a loopback address"),
    ({"EDGEWISE_EDGE_ADMIN_ADDR": "localhost:9901"}, "must be a loopback address"),  # a name could resolve anywhere
    ({"EDGEWISE_EDGE_GRPC_ADDR": "8080"}, "EDGEWISE_EDGE_GRPC_ADDR must be host:port"),
    ({"EDGEWISE_EDGE_REST_ADDR": "127.0.0.1:8080"}, "are the same address"),
    ({"EDGEWISE_QUERY_ADDRS": "127.0.0.1:1,nope"}, "EDGEWISE_QUERY_ADDRS must be host:port"),
    ({"EDGEWISE_QUERY_ADDRS": "127.0.0.1:1,127.0.0.1:1"}, "names an address twice"),
    ({"EDGEWISE_COMMAND_ADDR": "0.0.0.0:50051"}, "listen-on-every-interface"),
    ({"EDGEWISE_EDGE_QUERY_TIMEOUT_MS": "2s"}, "whole number of milliseconds"),
    ({"EDGEWISE_EDGE_QUERY_TIMEOUT_MS": "0"}, "must be from 1"),
    ({"EDGEWISE_EDGE_COMMAND_TIMEOUT_MS": "70000"}, "must not exceed EDGEWISE_EDGE_COMMAND_MAX_TIMEOUT_MS"),
    ({"EDGEWISE_EDGE_TLS_CERT": "/nope.pem"}, "go together"),
    ({"EDGEWISE_EDGE_TLS_CERT": "/nope.pem", "EDGEWISE_EDGE_TLS_KEY": "/nope.key"}, "no such file"),
    ({"EDGEWISE_EDGE_LOG_LEVEL": "loud"}, "EDGEWISE_EDGE_LOG_LEVEL must be one of"),
    ({"EDGEWISE_EDGE_CONCURRENCY": "-1"}, "EDGEWISE_EDGE_CONCURRENCY"),
    ({"EDGEWISE_EDGE_ACCESS_LOG": "/no/such/dir/access.log"}, "does not exist"),
    ({"EDGEWISE_EDGE_LOCAL_RATE_LIMIT": "fast"}, "EDGEWISE_EDGE_LOCAL_RATE_LIMIT"),
    ({"EDGEWISE_EDGE_LOCAL_RATE_LIMIT": "100,0"}, "EDGEWISE_EDGE_LOCAL_RATE_LIMIT"),
    ({"EDGEWISE_EDGE_LOCAL_RATE_LIMIT": "1.5"}, "EDGEWISE_EDGE_LOCAL_RATE_LIMIT"),
])
def test_bad_settings_are_refused(env, expected):
    with pytest.raises(ConfigError) as info:
        GatewaySettings.from_env(env)
    assert expected in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        GatewaySettings.from_env({"EDGEWISE_EDGE_ADMIN_ADDR": "0.0.0.0:1", "EDGEWISE_EDGE_LOG_LEVEL": "loud",
                                  "EDGEWISE_QUERY_ADDRS": "x"})
    assert len(info.value.problems) == 3


def test_settings_built_in_code_are_checked_too():
    with pytest.raises(ConfigError):
        GatewaySettings(admin_addr=Address("192.0.2.1", 9901)).check()


def test_the_local_rate_limit_is_off_unless_set_and_the_burst_defaults_to_the_rate():
    assert GatewaySettings.from_env({}).local_rate_limit == 0
    one = GatewaySettings.from_env({"EDGEWISE_EDGE_LOCAL_RATE_LIMIT": "500"})
    assert (one.local_rate_limit, one.local_rate_limit_burst) == (500, 500)
    two = GatewaySettings.from_env({"EDGEWISE_EDGE_LOCAL_RATE_LIMIT": "500, 2000"})
    assert (two.local_rate_limit, two.local_rate_limit_burst) == (500, 2000)
