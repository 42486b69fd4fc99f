"""The Envoy bootstrap, rendered from GatewaySettings as a plain dict (dumped as JSON, which
Envoy reads as it reads YAML).

Listeners:
- ``grpc`` (EDGEWISE_EDGE_GRPC_ADDR): routes by gRPC path prefix — GraphCommandService to
  the ``command`` cluster, GraphQueryService, health, reflection and anything else to the
  ``query`` cluster (so ``grpcurl list``/``describe`` and every RPC work on one port, and an
  unknown method gets the worker's own UNIMPLEMENTED answer).
- ``rest`` (EDGEWISE_EDGE_REST_ADDR): the same routes behind ``grpc_json_transcoder``
  (the protos' ``google.api.http`` annotations, from the descriptor set ``make protos``
  writes); errors keep their ``google.rpc.Status`` details as JSON.

Timeouts (both listeners): a route has no router timeout; ``max_stream_duration`` is the
service's default when the caller sends no ``grpc-timeout``, else the caller's
``grpc-timeout`` capped at the service's maximum (``grpc_timeout_header_max``). When it
expires the caller gets DEADLINE_EXCEEDED and the upstream stream is reset (cancelled). The
upstream is told its deadline: Envoy rewrites ``grpc-timeout`` to the stream's (the per-try
timeout goes only into ``x-envoy-expected-rq-timeout-ms``).
Streams (WatchEvents, health Watch, reflection) have no duration or idle limit.

Retries: queries on ``unavailable,reset,connect-failure,refused-stream`` with a per-try
timeout, jittered back-off and another host when there is one. Commands only when the
caller sent ``x-edgewise-request-id`` (a UUID4, equal to the body's ``request_id``, which
the command service checks): AIP-155 makes exactly those safe (ADR 0013). ``x-envoy-*``
request headers are dropped on arrival, so no caller can switch retries on by itself.

Clusters: HTTP/2, one endpoint per process, circuit-breaker thresholds, a retry budget,
outlier detection and active gRPC health checks with the cluster's service name.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.settings import (
    COMMAND_SERVICE,
    IDEMPOTENCY_HEADER,
    QUERY_SERVICE,
    Address,
    GatewaySettings,
    ServicePolicy,
)

JSON = dict[str, Any]

COMMAND_CLUSTER = "command"
QUERY_CLUSTER = "query"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")
# Server-streaming or bidirectional methods: no unary timeout, no per-try timeout.
STREAMING_METHODS = (f"/{QUERY_SERVICE}/WatchEvents", f"/{HEALTH_SERVICE}/Watch")
QUERY_RETRY_ON = "unavailable,reset,connect-failure,refused-stream"
COMMAND_RETRY_ON = QUERY_RETRY_ON
UUID4_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
# The request headers through which a caller could steer Envoy's router (retries, timeouts):
# the edge decides those, not the caller.
ENVOY_CONTROL_HEADERS = (
    "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names", "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout", "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms",
    "x-envoy-upstream-alt-stat-name", "x-envoy-force-trace", "x-envoy-internal",
)
# One JSON object per request on the access log: who, what, how it ended, the ids to join
# it with the services' own logs (they log the same x-request-id and traceparent).
ACCESS_LOG_FORMAT: JSON = {
    "time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    # never the query string: a REST filter carries property values, and page tokens ride there too
    "path": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "grpc_path": "%REQ(:PATH)%",
    "protocol": "%PROTOCOL%",
    "http_status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS_NUMBER%",
    "response_flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "downstream": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "x_request_id": "%REQ(X-REQUEST-ID)%",
    "traceparent": "%REQ(TRACEPARENT)%",
    "idempotency_key": f"%REQ({IDEMPOTENCY_HEADER.upper()})%",
}


def _duration(ms: int) -> str:
    return f"{ms / 1000:.3f}s"


def _typed(type_name: str, **fields: Any) -> JSON:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def _socket(addr: Address) -> JSON:
    return {"socket_address": {"address": addr.host, "port_value": addr.port}}


# --- clusters ------------------------------------------------------------------------------

def cluster(name: str, service: str, addrs: tuple[Address, ...], policy: ServicePolicy) -> JSON:
    b, o, h = policy.breakers, policy.outlier, policy.health
    return {
        "name": name,
        # Hostnames (compose, Kubernetes Services) are resolved and re-resolved; IPs are static.
        "type": "STATIC" if all(a.is_ip for a in addrs) else "STRICT_DNS",
        "connect_timeout": "1s",
        # Several query workers: send each request to the less busy of two random ones.
        "lb_policy": "LEAST_REQUEST" if name == QUERY_CLUSTER else "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _socket(a)}} for a in addrs]}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {
                    # a dead upstream connection is noticed without waiting for a request
                    "connection_keepalive": {"interval": "30s", "timeout": "5s"}}}),
        },
        "circuit_breakers": {"thresholds": [{
            "priority": "DEFAULT",
            "max_connections": b.max_connections,
            "max_pending_requests": b.max_pending_requests,
            "max_requests": b.max_requests,
            "max_retries": b.max_retries,
            "retry_budget": {"budget_percent": {"value": b.budget_percent},
                             "min_retry_concurrency": b.min_retry_concurrency},
            "track_remaining": True,
        }]},
        "outlier_detection": {
            "consecutive_gateway_failure": o.consecutive_gateway_failure,
            "enforcing_consecutive_gateway_failure": 100,
            "consecutive_5xx": o.consecutive_5xx,
            "enforcing_consecutive_5xx": 100,
            "interval": _duration(o.interval_ms),
            "base_ejection_time": _duration(o.base_ejection_time_ms),
            "max_ejection_percent": o.max_ejection_percent,
            "enforcing_success_rate": 0,
        },
        "health_checks": [{
            "timeout": _duration(h.timeout_ms),
            "interval": _duration(h.interval_ms),
            # Envoy's default is 60 s until a cluster first sees traffic: a worker that died
            # before the first request would stay "healthy" for a minute
            "no_traffic_interval": _duration(h.interval_ms),
            "interval_jitter": _duration(h.interval_ms // 10),
            "unhealthy_threshold": h.unhealthy_threshold,
            "healthy_threshold": h.healthy_threshold,
            "grpc_health_check": {"service_name": service},
            "always_log_health_check_failures": True,
        }],
        # Below half the hosts healthy, spread over all of them rather than crush the rest.
        "common_lb_config": {"healthy_panic_threshold": {"value": 50.0}},
    }


# --- routes --------------------------------------------------------------------------------

def retry_policy(policy: ServicePolicy, retry_on: str, *, per_try: bool = True) -> JSON:
    out: JSON = {
        "retry_on": retry_on,
        "num_retries": policy.num_retries,
        "retry_back_off": {"base_interval": _duration(policy.retry_base_interval_ms),
                           "max_interval": _duration(policy.retry_max_interval_ms)},
        # Try another endpoint when there is one (a query worker that just failed is likely
        # to fail again); with one endpoint, the same one after the back-off.
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": _typed("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
        }],
        "host_selection_retry_max_attempts": 5,
    }
    if per_try:
        out["per_try_timeout"] = _duration(policy.per_try_timeout_ms)
    return out


def unary_action(cluster_name: str, policy: ServicePolicy, retry: JSON | None) -> JSON:
    action: JSON = {
        "cluster": cluster_name,
        "timeout": "0s",  # the stream's duration below is the one limit
        "max_stream_duration": {
            "max_stream_duration": _duration(policy.default_timeout_ms),
            "grpc_timeout_header_max": _duration(policy.max_timeout_ms),
        },
    }
    if retry is not None:
        action["retry_policy"] = retry
    return action


def stream_action(cluster_name: str, retry: JSON | None) -> JSON:
    """A stream lasts as long as its caller wants: no duration, no idle limit (a caller's
    own grpc-timeout is still honoured, uncapped). Retried only before a response began."""
    action: JSON = {
        "cluster": cluster_name,
        "timeout": "0s",
        "idle_timeout": "0s",
        "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
    }
    if retry is not None:
        action["retry_policy"] = retry
    return action


def routes(settings: GatewaySettings) -> list[JSON]:
    q, c = settings.query, settings.command
    query_retry = retry_policy(q, QUERY_RETRY_ON)
    query_stream_retry = retry_policy(q, QUERY_RETRY_ON, per_try=False)
    out: list[JSON] = [
        {"name": method.rsplit("/", 1)[1], "match": {"path": method},
         "route": stream_action(QUERY_CLUSTER, query_stream_retry)}
        for method in STREAMING_METHODS
    ]
    out += [
        {"name": "queries", "match": {"prefix": f"/{QUERY_SERVICE}/"},
         "route": unary_action(QUERY_CLUSTER, q, query_retry)},
        # Only a command that carries an idempotency key is retried (ADR 0013).
        {"name": "commands-idempotent", "match": {
            "prefix": f"/{COMMAND_SERVICE}/",
            "headers": [{"name": IDEMPOTENCY_HEADER,
                         "string_match": {"safe_regex": {"regex": UUID4_REGEX}}}]},
         "route": unary_action(COMMAND_CLUSTER, c, retry_policy(c, COMMAND_RETRY_ON))},
        {"name": "commands", "match": {"prefix": f"/{COMMAND_SERVICE}/"},
         "route": unary_action(COMMAND_CLUSTER, c, None)},
        {"name": "health", "match": {"prefix": f"/{HEALTH_SERVICE}/"},
         "route": unary_action(QUERY_CLUSTER, q, query_retry)},
    ]
    out += [
        {"name": service.split(".")[2] + "-reflection", "match": {"prefix": f"/{service}/"},
         "route": stream_action(QUERY_CLUSTER, query_stream_retry)}
        for service in REFLECTION_SERVICES
    ]
    # Anything else (an unknown service or method): the query worker answers it, with its
    # UNIMPLEMENTED status, rather than Envoy with a bare 404.
    out.append({"name": "other", "match": {"prefix": "/"}, "route": unary_action(QUERY_CLUSTER, q, None)})
    return out


def route_config(settings: GatewaySettings) -> JSON:
    return {
        "name": "edgewise",
        "virtual_hosts": [{"name": "edgewise", "domains": ["*"], "routes": routes(settings)}],
    }


# --- listeners -----------------------------------------------------------------------------

def access_log(settings: GatewaySettings, listener_name: str) -> list[JSON]:
    fields = {"listener": listener_name, **ACCESS_LOG_FORMAT}
    if listener_name == "rest":
        # the transcoder turned the gRPC status into the HTTP one; Envoy would log a status
        # guessed back from that (404 -> UNIMPLEMENTED), which is wrong more often than not
        del fields["grpc_status"]
    log_format = {"json_format": fields, "formatters": [{
        "name": "envoy.formatter.req_without_query",
        "typed_config": _typed("envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery")}]}
    if settings.access_log:
        return [{"name": "envoy.access_loggers.file", "typed_config": _typed(
            "envoy.extensions.access_loggers.file.v3.FileAccessLog", path=settings.access_log,
            log_format=log_format)}]
    return [{"name": "envoy.access_loggers.stdout", "typed_config": _typed(
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", log_format=log_format)}]


def transcoder(settings: GatewaySettings) -> JSON:
    return {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": _typed(
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor=settings.descriptor_set,
        services=[COMMAND_SERVICE, QUERY_SERVICE],
        print_options={"add_whitespace": False, "always_print_primitive_fields": True,
                       "always_print_enums_as_ints": False, "preserve_proto_field_names": False},
        # A gRPC error becomes its google.rpc.Status as JSON, details (ErrorInfo...) included.
        convert_grpc_status=True,
        # Path variables are percent-decoded, ':' and '/' included: a node id with ':' is
        # sent as %3A (a literal ':' in the last segment reads as a custom verb).
        url_unescape_spec="ALL_CHARACTERS",
        case_insensitive_enum_parsing=True,
        request_validation_options={"reject_unknown_method": True, "reject_unknown_query_parameters": True},
    )}


def local_rate_limit(settings: GatewaySettings, name: str) -> JSON:
    """Envoy's token bucket for the listener, all callers together: the edge's defence against a
    flood, ahead of the services' per-(principal, graph) buckets (ADR 0014). A refused gRPC call
    is RESOURCE_EXHAUSTED (not UNAVAILABLE, which callers and the edge would retry)."""
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": _typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix=f"{name}_local_rate_limit",
        token_bucket={"max_tokens": settings.local_rate_limit_burst,
                      "tokens_per_fill": settings.local_rate_limit, "fill_interval": "1s"},
        filter_enabled={"runtime_key": f"{name}_local_rate_limit_enabled",
                        "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        filter_enforced={"runtime_key": f"{name}_local_rate_limit_enforced",
                         "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        rate_limited_as_resource_exhausted=True,
        response_headers_to_add=[{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                  "header": {"key": "x-edgewise-rate-limited", "value": "edge"}}],
    )}


def http_connection_manager(settings: GatewaySettings, name: str) -> JSON:
    filters: list[JSON] = [local_rate_limit(settings, name)] if settings.local_rate_limit else []
    if name == "rest":
        filters.append(transcoder(settings))
    filters.append({"name": "envoy.filters.http.router",
                    "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router")})
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": _typed(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix=name,
            codec_type="AUTO",  # HTTP/2 with or without TLS (prior knowledge), HTTP/1.1 for curl
            # x-request-id: the caller's is kept (and sent upstream), one is generated when
            # missing; traceparent passes through untouched (no tracer here).
            generate_request_id=True,
            preserve_external_request_id=True,
            early_header_mutation_extensions=[{
                "name": "envoy.http.early_header_mutation.header_mutation",
                "typed_config": _typed(
                    "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                    mutations=[{"remove": h} for h in ENVOY_CONTROL_HEADERS]),
            }],
            http2_protocol_options={"max_concurrent_streams": 1024,
                                    "initial_stream_window_size": 65536,
                                    "initial_connection_window_size": 1048576},
            # a header name with "_" could be read as another with "-" by some upstream: dropped
            common_http_protocol_options={"idle_timeout": "3600s", "headers_with_underscores_action": "DROP_HEADER"},
            stream_idle_timeout="300s",
            request_headers_timeout="10s",
            access_log=access_log(settings, name),
            route_config=route_config(settings),
            http_filters=filters,
        ),
    }


def tls_transport_socket(settings: GatewaySettings) -> JSON:
    return {"name": "envoy.transport_sockets.tls", "typed_config": _typed(
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        common_tls_context={
            "tls_certificates": [{"certificate_chain": {"filename": settings.tls_cert},
                                  "private_key": {"filename": settings.tls_key}}],
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        })}


def listener(settings: GatewaySettings, name: str, addr: Address) -> JSON:
    chain: JSON = {"filters": [http_connection_manager(settings, name)]}
    if settings.tls:
        chain["transport_socket"] = tls_transport_socket(settings)
    return {"name": name, "address": _socket(addr), "filter_chains": [chain],
            "per_connection_buffer_limit_bytes": 1 << 20}


def render(settings: GatewaySettings) -> JSON:
    """The whole bootstrap for ``settings`` (checked first: a ConfigError names every problem)."""
    settings.check()
    return {
        "node": {"id": "edgewise-edge", "cluster": "edgewise"},
        "admin": {"address": _socket(settings.admin_addr)},
        "static_resources": {
            "listeners": [listener(settings, "grpc", settings.grpc_addr),
                          listener(settings, "rest", settings.rest_addr)],
            "clusters": [cluster(COMMAND_CLUSTER, COMMAND_SERVICE, settings.command_addrs, settings.command),
                         cluster(QUERY_CLUSTER, QUERY_SERVICE, settings.query_addrs, settings.query)],
        },
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": _typed(
                "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                max_active_downstream_connections=10000),
        }]},
    }


def dumps(config: JSON) -> str:
    return json.dumps(config, indent=2, sort_keys=False) + "\n"
