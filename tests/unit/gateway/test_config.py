"""The rendered Envoy bootstrap: its routes, timeouts, retry policies, breakers, outlier
detection and health checks have the shape ADR 0013 and DESIGN §9 describe. (Envoy itself
validates the whole file in tests/edge/test_config_validates.py.)"""

import dataclasses
import json

import pytest

from gateway.config import QUERY_RETRY_ON, UUID4_REGEX, render
from gateway.settings import Address, GatewaySettings

C, Q = "edgewise.graph.v1.GraphCommandService", "edgewise.graph.v1.GraphQueryService"


@pytest.fixture
def settings():
    return GatewaySettings().with_upstreams(["127.0.0.1:50051"], ["127.0.0.1:50052", "127.0.0.1:50053"])


def listener(config, name):
    [found] = [item for item in config["static_resources"]["listeners"] if item["name"] == name]
    return found


def hcm(config, name):
    return listener(config, name)["filter_chains"][0]["filters"][0]["typed_config"]


def routes(config, name="grpc"):
    return {r["name"]: r for r in hcm(config, name)["route_config"]["virtual_hosts"][0]["routes"]}


def cluster(config, name):
    [found] = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    return found


def test_listeners_and_admin_bind_where_the_settings_say(settings):
    config = render(settings)
    assert listener(config, "grpc")["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}
    assert listener(config, "rest")["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8081}
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    json.dumps(config)  # plain data


def test_routes_by_path_prefix_in_order(settings):
    config = render(settings)
    ordered = [(r["name"], r["match"].get("path") or r["match"]["prefix"], r["route"]["cluster"])
               for r in hcm(config, "grpc")["route_config"]["virtual_hosts"][0]["routes"]]
    assert ordered == [
        ("WatchEvents", f"/{Q}/WatchEvents", "query"),
        ("Watch", "/grpc.health.v1.Health/Watch", "query"),
        ("queries", f"/{Q}/", "query"),
        ("commands-idempotent", f"/{C}/", "command"),
        ("commands", f"/{C}/", "command"),
        ("health", "/grpc.health.v1.Health/", "query"),
        ("v1alpha-reflection", "/grpc.reflection.v1alpha.ServerReflection/", "query"),
        ("v1-reflection", "/grpc.reflection.v1.ServerReflection/", "query"),
        ("other", "/", "query"),
    ]
    # the REST listener shares the route table: the transcoder rewrites to the gRPC path
    assert hcm(config, "rest")["route_config"] == hcm(config, "grpc")["route_config"]


def test_unary_timeouts_honour_grpc_timeout_capped_per_service(settings):
    settings = dataclasses.replace(settings, query=dataclasses.replace(settings.query, default_timeout_ms=2500,
                                                                       max_timeout_ms=30_000))
    r = routes(render(settings))
    assert r["queries"]["route"]["timeout"] == "0s"
    assert r["queries"]["route"]["max_stream_duration"] == {"max_stream_duration": "2.500s",
                                                            "grpc_timeout_header_max": "30.000s"}
    assert r["commands"]["route"]["max_stream_duration"] == {"max_stream_duration": "15.000s",
                                                             "grpc_timeout_header_max": "60.000s"}


def test_streams_are_exempt_from_the_unary_timeouts(settings):
    r = routes(render(settings))
    for name in ("WatchEvents", "Watch", "v1alpha-reflection", "v1-reflection"):
        route = r[name]["route"]
        assert route["timeout"] == "0s" and route["idle_timeout"] == "0s"
        assert route["max_stream_duration"] == {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}
        assert "per_try_timeout" not in route.get("retry_policy", {})


def test_queries_retry_with_per_try_timeouts_and_back_off(settings):
    policy = routes(render(settings))["queries"]["route"]["retry_policy"]
    assert policy["retry_on"] == QUERY_RETRY_ON == "unavailable,reset,connect-failure,refused-stream"
    assert policy["num_retries"] == 2 and policy["per_try_timeout"] == "10.000s"
    assert policy["retry_back_off"] == {"base_interval": "0.025s", "max_interval": "0.250s"}
    assert policy["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


def test_commands_retry_only_with_the_idempotency_header(settings):
    r = routes(render(settings))
    idempotent = r["commands-idempotent"]
    assert idempotent["match"]["headers"] == [{"name": "x-edgewise-request-id",
                                               "string_match": {"safe_regex": {"regex": UUID4_REGEX}}}]
    assert idempotent["route"]["retry_policy"]["retry_on"] == "unavailable,reset,connect-failure,refused-stream"
    assert "retry_policy" not in r["commands"]["route"]
    assert "retry_policy" not in r["other"]["route"]


def test_callers_cannot_steer_envoys_router(settings):
    mutations = hcm(render(settings), "grpc")["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
    removed = {m["remove"] for m in mutations}
    assert {"x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
            "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms"} <= removed


@pytest.mark.parametrize("name,service,endpoints", [("command", C, 1), ("query", Q, 2)])
def test_clusters_http2_breakers_budget_outlier_detection_and_health_checks(settings, name, service, endpoints):
    c = cluster(render(settings), name)
    assert c["type"] == "STATIC"
    assert len(c["load_assignment"]["endpoints"][0]["lb_endpoints"]) == endpoints
    options = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    [thresholds] = c["circuit_breakers"]["thresholds"]
    assert {"max_connections", "max_pending_requests", "max_requests", "max_retries"} <= set(thresholds)
    assert thresholds["retry_budget"] == {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3}
    outlier = c["outlier_detection"]
    assert outlier["consecutive_gateway_failure"] == 3 and outlier["enforcing_consecutive_gateway_failure"] == 100
    assert outlier["consecutive_5xx"] == 5 and outlier["max_ejection_percent"] == 50
    assert outlier["base_ejection_time"] == "10.000s"
    [check] = c["health_checks"]
    assert check["grpc_health_check"] == {"service_name": service}
    assert check["no_traffic_interval"] == check["interval"]


def test_hostnames_are_resolved_by_dns(settings):
    c = cluster(render(settings.with_upstreams(["command:50051"], ["query-0:50052", "query-1:50052"])), "query")
    assert c["type"] == "STRICT_DNS"


def test_the_rest_listener_transcodes_with_the_descriptor_set(settings):
    filters = hcm(render(dataclasses.replace(settings, descriptor_set="/d/edgewise.pb")), "rest")["http_filters"]
    assert [f["name"] for f in filters] == ["envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.router"]
    transcoder = filters[0]["typed_config"]
    assert transcoder["proto_descriptor"] == "/d/edgewise.pb"
    assert transcoder["services"] == [C, Q]
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["url_unescape_spec"] == "ALL_CHARACTERS"
    assert [f["name"] for f in hcm(render(settings), "grpc")["http_filters"]] == ["envoy.filters.http.router"]


def test_request_ids_pass_through_and_are_logged(settings):
    manager = hcm(render(settings), "grpc")
    assert manager["preserve_external_request_id"] is True and manager["generate_request_id"] is True
    log = manager["access_log"][0]
    assert log["name"] == "envoy.access_loggers.stdout"
    fields = log["typed_config"]["log_format"]["json_format"]
    assert fields["x_request_id"] == "%REQ(X-REQUEST-ID)%" and fields["traceparent"] == "%REQ(TRACEPARENT)%"
    to_file = hcm(render(dataclasses.replace(settings, access_log="/tmp/a.log")), "rest")["access_log"][0]
    assert to_file["typed_config"]["path"] == "/tmp/a.log"


def test_tls_only_when_a_certificate_is_set(settings, tmp_path):
    assert "transport_socket" not in listener(render(settings), "grpc")["filter_chains"][0]
    (tmp_path / "c.pem").write_text("c")
    (tmp_path / "k.pem").write_text("k")
    tls = dataclasses.replace(settings, tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k.pem"))
    for name in ("grpc", "rest"):
        socket = listener(render(tls), name)["filter_chains"][0]["transport_socket"]
        context = socket["typed_config"]["common_tls_context"]
        assert context["tls_certificates"][0]["certificate_chain"]["filename"] == str(tmp_path / "c.pem")
        assert context["alpn_protocols"] == ["h2", "http/1.1"]


def test_render_refuses_bad_settings():
    from infrastructure.config import ConfigError

    with pytest.raises(ConfigError):
        render(GatewaySettings(admin_addr=Address("0.0.0.0", 9901)))


def _filters(config, listener_name):
    (listener,) = [entry for entry in config["static_resources"]["listeners"] if entry["name"] == listener_name]
    return [f["name"] for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]]


def test_the_edge_rate_limit_is_rendered_first_on_both_listeners_only_when_set(settings):
    import dataclasses

    assert "envoy.filters.http.local_ratelimit" not in _filters(render(settings), "grpc")
    limited = render(dataclasses.replace(settings, local_rate_limit=200, local_rate_limit_burst=400))
    for name in ("grpc", "rest"):
        assert _filters(limited, name)[0] == "envoy.filters.http.local_ratelimit"
        assert _filters(limited, name)[-1] == "envoy.filters.http.router"
    (grpc_listener,) = [e for e in limited["static_resources"]["listeners"] if e["name"] == "grpc"]
    config = grpc_listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
    assert config["token_bucket"] == {"max_tokens": 400, "tokens_per_fill": 200, "fill_interval": "1s"}
    # refused gRPC calls are RESOURCE_EXHAUSTED: UNAVAILABLE would be retried by callers and the edge
    assert config["rate_limited_as_resource_exhausted"] is True
