"""AIP conventions buf STANDARD does not check: field_behavior on every request
field, an HTTP rule on every RPC, resource annotations on resources."""

import pytest
from google.api import annotations_pb2, field_behavior_pb2, resource_pb2

from edgewise.graph.v1 import command_service_pb2, query_service_pb2, resources_pb2

pytestmark = pytest.mark.contract

SERVICES = [
    command_service_pb2.DESCRIPTOR.services_by_name["GraphCommandService"],
    query_service_pb2.DESCRIPTOR.services_by_name["GraphQueryService"],
]
METHODS = [m for s in SERVICES for m in s.methods]


def _request_like_messages():
    seen = {}
    for method in METHODS:
        stack = [method.input_type]
        while stack:
            message = stack.pop()
            if message.full_name in seen or not message.full_name.startswith("edgewise."):
                continue
            if message.file.name.endswith("resources.proto") and message.name not in (
                    "ReadConsistency",):
                continue  # resources are shared with responses; checked separately
            seen[message.full_name] = message
            stack.extend(f.message_type for f in message.fields
                         if f.message_type is not None and not f.message_type.GetOptions()
                         .map_entry)
    return list(seen.values())


def test_services_expose_the_agreed_rpcs():
    assert [m.name for m in SERVICES[0].methods] == [
        "ApplySchema", "CreateNode", "UpdateNode", "DeleteNode", "AddEdge", "RemoveEdge",
        "BatchWrite"]
    assert [m.name for m in SERVICES[1].methods] == [
        "GetSchema", "GetNode", "BatchGetNodes", "GetEdge", "CountEdges", "ListEdges",
        "ListNodes", "Traverse", "FindPath", "WatchEvents"]
    assert SERVICES[1].methods_by_name["WatchEvents"].server_streaming


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_rpc_has_an_http_rule_and_unique_messages(method):
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    assert rule.WhichOneof("pattern") in ("get", "post", "patch", "delete"), method.name
    assert method.input_type.name == f"{method.name}Request"
    assert method.output_type.name == f"{method.name}Response"


@pytest.mark.parametrize("message", _request_like_messages(), ids=lambda m: m.name)
def test_every_request_field_declares_field_behavior(message):
    missing = [f.name for f in message.fields
               if not f.GetOptions().Extensions[field_behavior_pb2.field_behavior]]
    assert not missing, f"{message.full_name}: no field_behavior on {missing}"


@pytest.mark.parametrize("name,pattern", [("Node", "graphs/{graph}/nodes/{node}"),
                                          ("Schema", "graphs/{graph}/schema")])
def test_resources_are_annotated(name, pattern):
    message = resources_pb2.DESCRIPTOR.message_types_by_name[name]
    resource = message.GetOptions().Extensions[resource_pb2.resource]
    assert list(resource.pattern) == [pattern]
