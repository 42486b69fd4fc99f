"""REST/JSON through the edge's second listener (grpc_json_transcoder over the descriptor set
``make protos`` writes), with urllib as a human with curl would: a schema, a create, a get,
a list, and errors whose JSON body keeps the google.rpc.Status details (ErrorInfo first).

Node ids may contain ':' (``[A-Za-z0-9][A-Za-z0-9_.:-]*``), which in a URL's last segment is
also the custom-verb separator (``.../nodes/{id}:traverse``). The transcoder takes what
follows the last ':' of the path as a verb when some route has that verb: ``GET
.../nodes/n:traverse`` is then no method at all (404), while ``.../nodes/user:1`` works. The
edge percent-decodes path variables (``url_unescape_spec: ALL_CHARACTERS``), so an id written
with ``%3A`` always works: that is the documented form.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCHEMA = {
    "nodeTypes": [{"name": "User", "properties": [{"name": "name", "kind": "PROPERTY_KIND_STRING", "required": True}]}],
    "edgeTypes": [{"name": "follows", "sourceType": "User", "targetType": "User", "onDelete": "ON_DELETE_CASCADE"}],
}


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None,
         context=None) -> tuple[int, dict]:
    """(HTTP status, JSON body); a body that is not JSON (Envoy's own 404 text) is {"text": ...}."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, _json(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, _json(err.read())


def _json(raw: bytes) -> dict:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode(errors="replace")}


def error_info(body: dict) -> dict:
    infos = [d for d in body.get("details", []) if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert len(infos) == 1, body
    return infos[0]


@pytest.fixture
def rest(edge_stack):
    """The REST base URL and a fresh graph with the schema applied (through REST)."""
    base = f"{edge_stack.gateway.endpoints.rest_url}/v1/graphs/rest-{uuid.uuid4().hex[:8]}"
    status, body = call(f"{base}/schema:apply", "POST", {"schema": SCHEMA, "requestId": str(uuid.uuid4())})
    assert status == 200, body
    assert body["schema"]["version"] == "1" and body["consistencyToken"]
    return base


def create(base: str, node_id: str) -> dict:
    status, body = call(f"{base}/nodes?nodeId={urllib.parse.quote(node_id, safe='')}", "POST",
                        {"type": "User", "properties": {"name": {"stringValue": node_id}}})
    assert status == 200, body
    return body


FULLY = "consistency.fullyConsistent=true"
# The custom verbs of the protos' http rules (protos/edgewise/graph/v1/*.proto).
VERBS = {"apply", "remove", "batchWrite", "batchGet", "get", "count", "traverse", "findPath", "watch"}


@pytest.mark.parametrize("node_id", ["user:1", "a:b:c", "n:traverse", "plain"])
def test_create_get_and_list_nodes_with_colons_in_their_ids(rest, node_id):
    created = create(rest, node_id)
    graph = rest.split("/v1/", 1)[1]
    assert created["node"]["name"] == f"{graph}/nodes/{node_id}"
    create(rest, "target")
    status, body = call(f"{rest}/edges", "POST", {"source": f"{graph}/nodes/{node_id}", "type": "follows",
                                                   "target": f"{graph}/nodes/target"})
    assert status == 200, body

    encoded = urllib.parse.quote(node_id, safe="")
    verb_clash = node_id.rsplit(":", 1)[-1] in VERBS and ":" in node_id
    for segment in (encoded,) if verb_clash else (encoded, node_id):
        status, body = call(f"{rest}/nodes/{segment}?{FULLY}")
        assert status == 200, (segment, body)
        assert body["node"]["name"] == f"{graph}/nodes/{node_id}"
        assert body["node"]["properties"]["name"]["stringValue"] == node_id

        status, body = call(f"{rest}/nodes/{segment}/edges?direction=DIRECTION_OUT&{FULLY}")
        assert status == 200, (segment, body)
        assert [e["target"] for e in body["edges"]] == [f"{graph}/nodes/target"]

        status, body = call(f"{rest}/nodes/{segment}/edges:count?edgeType=follows&direction=DIRECTION_OUT&{FULLY}")
        assert (status, body.get("count")) == (200, "1"), (segment, body)

    if verb_clash:  # what the id ends with is a verb of some route: a plain ':' reads as that verb
        status, body = call(f"{rest}/nodes/{node_id}?{FULLY}")
        assert status == 404, body

    # A custom verb after an id with ':' — encoded, or split at the last ':'.
    for segment in (encoded, node_id):
        status, body = call(f"{rest}/nodes/{segment}:traverse", "POST",
                            {"steps": [{"edgeType": "follows", "direction": "DIRECTION_OUT"}],
                             "consistency": {"fullyConsistent": True}})
        assert status == 200, (segment, body)
        assert [level["nodeNames"] for level in body["levels"]] == [[f"{graph}/nodes/{node_id}"],
                                                                    [f"{graph}/nodes/target"]]


def test_list_nodes_and_delete(rest):
    for node_id in ("x:1", "x:2"):
        create(rest, node_id)
    status, body = call(f"{rest}/nodes?type=User&{FULLY}")
    assert status == 200, body
    assert sorted(n["name"].rsplit("/", 1)[1] for n in body["nodes"]) == ["x:1", "x:2"]
    status, body = call(f"{rest}/nodes/x%3A1", "DELETE")
    assert status == 200, body
    status, body = call(f"{rest}/nodes/x%3A1?{FULLY}")
    assert status == 404 and error_info(body)["reason"] == "NODE_NOT_FOUND"


def access_log_line(edge_stack, request_id: str) -> dict:
    log = Path(edge_stack.gateway.settings.access_log)
    deadline = time.monotonic() + 5  # Envoy flushes its access log file every second
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else ():
            entry = json.loads(line)
            if entry["x_request_id"] == request_id:
                return entry
        time.sleep(0.1)
    raise AssertionError(f"no access log line with request id {request_id}")


def test_errors_keep_their_error_info_and_the_callers_ids(rest, edge_stack):
    request_id = f"rest-{uuid.uuid4()}"
    trace_id = uuid.uuid4().hex
    headers = {"x-request-id": request_id, "traceparent": f"00-{trace_id}-{'ab' * 8}-01"}
    status, body = call(f"{rest}/nodes/nobody?{FULLY}", headers=headers)
    assert status == 404
    assert body["code"] == 5 and "nobody" in body["message"]
    info = error_info(body)
    assert (info["reason"], info["domain"]) == ("NODE_NOT_FOUND", "edgewise.graph.v1")
    # x-request-id and traceparent went through Envoy to the query service untouched
    assert info["metadata"]["request_id"] == request_id
    assert info["metadata"]["trace_id"] == trace_id
    assert any(d["@type"].endswith("ResourceInfo") for d in body["details"])
    # and Envoy's access log line for the call carries both
    logged = access_log_line(edge_stack, request_id)
    assert logged["traceparent"] == headers["traceparent"] and logged["listener"] == "rest"
    assert (logged["http_status"], logged["upstream_cluster"]) == (404, "query") and "grpc_status" not in logged

    # a rule violation: 400 with the field named (BadRequest) and one ErrorInfo
    status, body = call(f"{rest}/nodes?nodeId=bad", "POST", {"type": "User", "properties": {"name": {"intValue": 3}}})
    assert status == 400 and body["code"] == 3
    assert error_info(body)["reason"]

    # FAILED_PRECONDITION (an edge to a missing node) keeps its reason too
    graph = rest.split("/v1/", 1)[1]
    create(rest, "lonely")
    status, body = call(f"{rest}/edges", "POST", {"source": f"{graph}/nodes/lonely", "type": "follows",
                                                   "target": f"{graph}/nodes/missing"})
    assert status == 400 and body["code"] == 9, body
    assert error_info(body)["domain"] == "edgewise.graph.v1"


def test_the_access_log_never_holds_a_query_string(rest, edge_stack):
    """A REST filter carries property values (and page tokens ride in the query too): Envoy's
    access line keeps the path only."""

    request_id = f"rest-{uuid.uuid4()}"
    marker = f"secret-value-{uuid.uuid4().hex}"
    query = urllib.parse.urlencode({"type": "User", "filter": f'name = "{marker}"'}, quote_via=urllib.parse.quote)
    status, body = call(f"{rest}/nodes?{query}&{FULLY}", headers={"x-request-id": request_id})
    assert status == 200, body
    logged = access_log_line(edge_stack, request_id)
    assert logged["path"].endswith("/nodes") and "?" not in logged["path"]
    assert marker not in json.dumps(logged)


def test_unknown_rest_paths_are_not_found(edge_stack):
    status, _ = call(f"{edge_stack.gateway.endpoints.rest_url}/v1/nothing/here")
    assert status == 404
