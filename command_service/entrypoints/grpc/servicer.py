"""GraphCommandService over gRPC: proto <-> command translation only, no rules.

Domain errors propagate; the ErrorMappingInterceptor turns them into rich statuses.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from domain.errors import FieldViolation, Reason, ValidationFailed
from edgewise.graph.v1 import command_service_pb2 as cpb
from edgewise.graph.v1 import command_service_pb2_grpc as cpb_grpc
from infrastructure.grpc.context import current_request_id, current_traceparent
from infrastructure.grpc.convert import (
    edge_into_proto,
    edge_to_proto,
    node_into_proto,
    node_to_proto,
    properties_from_proto,
    schema_from_proto,
    schema_to_proto,
)
from infrastructure.grpc.names import NODE_NAME_RE, parse_graph_name, parse_node_name, parse_node_name_in

from command_service.app.commands.add_edge import AddEdge, AddEdgeResult
from command_service.app.commands.apply_schema import ApplySchema
from command_service.app.commands.batch_write import BatchWrite
from command_service.app.commands.create_node import CreateNode, CreateNodeResult
from command_service.app.commands.delete_node import DeleteNode
from command_service.app.commands.remove_edge import RemoveEdge
from command_service.app.commands.update_node import UpdateNode, UpdateNodeResult
from command_service.app.common import CommandMeta

Dispatch = Callable[[Any], Awaitable[Any]]


def _meta() -> CommandMeta:
    return CommandMeta(correlation_id=current_request_id(), traceparent=current_traceparent())


def _create(graph: str, node_id: str, node: Any, prefix: str, **kw: Any) -> CreateNode:
    return CreateNode(graph=graph, node_id=node_id, type=node.type,
                      properties=properties_from_proto(node.properties, f"{prefix}.properties"), **kw)


def _update(node: Any, mask: Any, prefix: str, graph: str | None = None, **kw: Any) -> UpdateNode:
    if graph is None:
        graph, node_id = parse_node_name(node.name, field=f"{prefix}.name")
    else:
        node_id = parse_node_name_in(graph, node.name, field=f"{prefix}.name")
    return UpdateNode(graph=graph, node_id=node_id,
                      properties=properties_from_proto(node.properties, f"{prefix}.properties"),
                      update_mask=tuple(mask.paths), etag=node.etag, type=node.type, **kw)


def _add_edge(graph: str, edge: Any, prefix: str, **kw: Any) -> AddEdge:
    return AddEdge(graph=graph, source=parse_node_name_in(graph, edge.source, field=f"{prefix}.source"),
                   type=edge.type, target=parse_node_name_in(graph, edge.target, field=f"{prefix}.target"),
                   properties=properties_from_proto(edge.properties, f"{prefix}.properties"), **kw)


def _remove_edge(graph: str, request: Any, field_prefix: str, **kw: Any) -> RemoveEdge:
    return RemoveEdge(graph=graph, source=parse_node_name_in(graph, request.source, field=f"{field_prefix}source"),
                      type=request.type,
                      target=parse_node_name_in(graph, request.target, field=f"{field_prefix}target"), **kw)


_NODE_NAME_MATCH = NODE_NAME_RE.match


def _add_edge_fast(graph: str, edge: Any) -> AddEdge | None:
    """The common AddEdge (both names well formed, in ``graph``) without building error
    field paths; None sends it through ``_add_edge``, which names what is wrong."""
    source, target = _NODE_NAME_MATCH(edge.source), _NODE_NAME_MATCH(edge.target)
    if source is None or target is None or source.group(1) != graph or target.group(1) != graph:
        return None
    props = edge.properties
    if props:
        return None
    return AddEdge(graph, source.group(2), edge.type, target.group(2), {})


def _batch_operation(graph: str, op: Any, i: int) -> Any:
    kind = op.WhichOneof("operation")
    if kind == "add_edge":
        fast = _add_edge_fast(graph, op.add_edge.edge)
        if fast is not None:
            return fast
    prefix = f"operations[{i}].{kind}"
    if kind == "create_node":
        return _create(graph, op.create_node.node_id, op.create_node.node, f"{prefix}.node")
    if kind == "update_node":
        return _update(op.update_node.node, op.update_node.update_mask, f"{prefix}.node", graph)
    if kind == "delete_node":
        d = op.delete_node
        return DeleteNode(graph=graph, node_id=parse_node_name_in(graph, d.name, field=f"{prefix}.name"),
                          etag=d.etag)
    if kind == "add_edge":
        return _add_edge(graph, op.add_edge.edge, f"{prefix}.edge")
    if kind == "remove_edge":
        return _remove_edge(graph, op.remove_edge, f"{prefix}.")
    raise ValidationFailed("operation not set", reason=Reason.INVALID_ARGUMENT,
                           violations=[FieldViolation(f"operations[{i}]", "exactly one operation must be set")])


def _batch_result_into_proto(result: Any, msg: cpb.BatchWriteResult) -> cpb.BatchWriteResult:
    """Fill ``msg`` in place (a response's ``results.add()``): no message built and copied."""
    cls = type(result)
    if cls is AddEdgeResult:
        edge_into_proto(result.edge, msg.edge)
    elif cls is CreateNodeResult or cls is UpdateNodeResult:
        node_into_proto(result.node, msg.node)
    else:
        msg.empty.SetInParent()
    return msg


def _batch_response(result: Any) -> cpb.BatchWriteResponse:
    response = cpb.BatchWriteResponse(consistency_token=result.consistency_token)
    add = response.results.add
    for r in result.results:
        _batch_result_into_proto(r, add())
    return response


class GraphCommandServicer(cpb_grpc.GraphCommandServiceServicer):
    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    async def ApplySchema(self, request: cpb.ApplySchemaRequest, context: Any) -> cpb.ApplySchemaResponse:
        graph = parse_graph_name(request.graph, field="graph")
        node_types, edge_types = schema_from_proto(request.schema, "schema")
        result = await self._dispatch(ApplySchema(
            graph=graph, node_types=tuple(node_types), edge_types=tuple(edge_types),
            expected_version=request.expected_version, request_id=request.request_id, meta=_meta()))
        return cpb.ApplySchemaResponse(schema=schema_to_proto(result.schema),
                                       consistency_token=result.consistency_token)

    async def CreateNode(self, request: cpb.CreateNodeRequest, context: Any) -> cpb.CreateNodeResponse:
        graph = parse_graph_name(request.parent, field="parent")
        result = await self._dispatch(_create(graph, request.node_id, request.node, "node",
                                              request_id=request.request_id, meta=_meta()))
        return cpb.CreateNodeResponse(node=node_to_proto(result.node), consistency_token=result.consistency_token)

    async def UpdateNode(self, request: cpb.UpdateNodeRequest, context: Any) -> cpb.UpdateNodeResponse:
        result = await self._dispatch(_update(request.node, request.update_mask, "node",
                                              request_id=request.request_id, meta=_meta()))
        return cpb.UpdateNodeResponse(node=node_to_proto(result.node), consistency_token=result.consistency_token)

    async def DeleteNode(self, request: cpb.DeleteNodeRequest, context: Any) -> cpb.DeleteNodeResponse:
        graph, node_id = parse_node_name(request.name, field="name")
        result = await self._dispatch(DeleteNode(graph=graph, node_id=node_id, etag=request.etag,
                                                 request_id=request.request_id, meta=_meta()))
        return cpb.DeleteNodeResponse(consistency_token=result.consistency_token,
                                      removed_edges=result.removed_edges, cascade_pending=result.cascade_pending)

    async def AddEdge(self, request: cpb.AddEdgeRequest, context: Any) -> cpb.AddEdgeResponse:
        graph = parse_graph_name(request.parent, field="parent")
        result = await self._dispatch(_add_edge(graph, request.edge, "edge", request_id=request.request_id,
                                                meta=_meta()))
        return cpb.AddEdgeResponse(edge=edge_to_proto(result.edge), consistency_token=result.consistency_token)

    async def RemoveEdge(self, request: cpb.RemoveEdgeRequest, context: Any) -> cpb.RemoveEdgeResponse:
        graph = parse_graph_name(request.parent, field="parent")
        result = await self._dispatch(_remove_edge(graph, request, "", request_id=request.request_id, meta=_meta()))
        return cpb.RemoveEdgeResponse(consistency_token=result.consistency_token)

    async def BatchWrite(self, request: cpb.BatchWriteRequest, context: Any) -> cpb.BatchWriteResponse:
        graph = parse_graph_name(request.parent, field="parent")
        operations = tuple(_batch_operation(graph, op, i) for i, op in enumerate(request.operations))
        result = await self._dispatch(BatchWrite(graph=graph, operations=operations,
                                                 request_id=request.request_id, meta=_meta()))
        return _batch_response(result)


def registrar(dispatch: Dispatch) -> Callable[[Any], None]:
    """The ``register`` callback for infrastructure.grpc.server.start_server."""
    servicer = GraphCommandServicer(dispatch)
    return lambda server: cpb_grpc.add_GraphCommandServiceServicer_to_server(servicer, server)
