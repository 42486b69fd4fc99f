"""GraphQueryService over gRPC: translation only (proto <-> query / read DTO).

No rule lives here. Domain errors propagate to the ErrorMappingInterceptor, which
turns them into rich statuses.
"""

from __future__ import annotations

from typing import AsyncIterator

from domain.edge import Direction
from domain.errors import Reason, ValidationFailed
from domain.views import Detail
from edgewise.graph.v1 import resources_pb2 as pb
from edgewise.graph.v1 import query_service_pb2 as qpb
from edgewise.graph.v1 import query_service_pb2_grpc as qgrpc
from infrastructure.grpc.convert import (
    direction_from_proto,
    edge_to_proto,
    event_to_proto,
    node_into_proto_memo,
    node_to_proto,
    optional_datetime,
    schema_to_proto,
)
from infrastructure.grpc.names import node_name, parse_graph_name, parse_node_name, parse_node_name_in
from query_service.app.application import QueryApplication
from query_service.app.consistency import Consistency
from query_service.app.queries.batch_get_nodes import BatchGetNodes
from query_service.app.queries.count_edges import CountEdges
from query_service.app.queries.find_path import FindPath
from query_service.app.queries.get_edge import GetEdge
from query_service.app.queries.get_node import GetNode
from query_service.app.queries.get_schema import GetSchema
from query_service.app.queries.list_edges import ListEdges
from query_service.app.queries.list_nodes import ListNodes
from query_service.app.queries.traverse import Traverse, TraversalBudget, TraversalStep
from query_service.app.queries.watch_events import WatchEvents

SERVICE_NAME = "edgewise.graph.v1.GraphQueryService"

_DETAIL = {qpb.NODE_VIEW_NAMES: Detail.NAMES, qpb.NODE_VIEW_BASIC: Detail.BASIC, qpb.NODE_VIEW_FULL: Detail.FULL}


def _detail(request, default: Detail) -> Detail:
    """The request's AIP-157 view; unspecified means the RPC's documented default."""
    if request.view == qpb.NODE_VIEW_UNSPECIFIED:
        return default
    detail = _DETAIL.get(request.view)
    if detail is None:
        raise ValidationFailed.of("view", f"unknown view {request.view}", reason=Reason.INVALID_ARGUMENT)
    return detail


def _add_nodes(target, views, detail: Detail) -> None:
    """Append views to a repeated Node field, in place (no copies), through the memo."""
    full = detail is Detail.FULL
    add = target.add
    for view in views:
        node_into_proto_memo(view, add(), properties=full)


def _consistency(request) -> Consistency | None:
    if not request.HasField("consistency"):
        return None
    c = request.consistency
    which = c.WhichOneof("requirement")
    if which == "at_least_token":
        return Consistency(at_least_token=c.at_least_token)
    if which == "fully_consistent" and c.fully_consistent:
        return Consistency(fully_consistent=True)
    return None


class GraphQueryServicer(qgrpc.GraphQueryServiceServicer):
    def __init__(self, app: QueryApplication) -> None:
        self._q = app.queries

    async def GetSchema(self, request, context):
        graph = parse_graph_name(request.graph, field="graph")
        schema = await self._q.get_schema(GetSchema(graph, _consistency(request)))
        return qpb.GetSchemaResponse(schema=schema_to_proto(schema))

    async def GetNode(self, request, context):
        graph, node = parse_node_name(request.name, field="name")
        view = await self._q.get_node(GetNode(graph, node, _consistency(request)))
        response = qpb.GetNodeResponse()
        node_into_proto_memo(view, response.node)  # in place: GetNodeResponse(node=...) would copy it
        return response

    async def BatchGetNodes(self, request, context):
        graph = parse_graph_name(request.parent, field="parent")
        ids = tuple(parse_node_name_in(graph, n, field=f"names[{i}]") for i, n in enumerate(request.names))
        detail = _detail(request, Detail.FULL)
        if detail is Detail.NAMES:  # existence is still checked: a missing name fails the call
            views = await self._q.batch_get_nodes(BatchGetNodes(graph, ids, _consistency(request), Detail.NAMES))
            return qpb.BatchGetNodesResponse(nodes=[pb.Node(name=node_name(graph, v.id)) for v in views])
        views = await self._q.batch_get_nodes(BatchGetNodes(graph, ids, _consistency(request), detail))
        response = qpb.BatchGetNodesResponse()
        _add_nodes(response.nodes, views, detail)
        return response

    async def GetEdge(self, request, context):
        graph = parse_graph_name(request.parent, field="parent")
        source = parse_node_name_in(graph, request.source, field="source")
        target = parse_node_name_in(graph, request.target, field="target")
        edge = await self._q.get_edge(GetEdge(graph, source, request.type, target, _consistency(request)))
        return qpb.GetEdgeResponse(edge=edge_to_proto(edge))

    async def CountEdges(self, request, context):
        graph, node = parse_node_name(request.name, field="name")
        count = await self._q.count_edges(CountEdges(graph, node, request.edge_type,
                                                     direction_from_proto(request.direction), _consistency(request)))
        return qpb.CountEdgesResponse(count=count)

    async def ListEdges(self, request, context):
        graph, node = parse_node_name(request.name, field="name")
        detail = _detail(request, Detail.BASIC)
        page = await self._q.list_edges(ListEdges(
            graph=graph, node_id=node, direction=direction_from_proto(request.direction),
            edge_type=request.edge_type or None, created_after=optional_datetime(request, "created_after"),
            created_before=optional_datetime(request, "created_before"), page_size=request.page_size,
            page_token=request.page_token,
            include_neighbors=request.include_neighbors and detail is not Detail.NAMES,
            neighbor_detail=detail, consistency=_consistency(request)))
        response = qpb.ListEdgesResponse(edges=[edge_to_proto(e) for e in page.edges],
                                         next_page_token=page.next_page_token)
        _add_nodes(response.neighbors, page.neighbors, detail)
        return response

    async def ListNodes(self, request, context):
        graph = parse_graph_name(request.parent, field="parent")
        page = await self._q.list_nodes(ListNodes(
            graph=graph, node_type=request.type, filter=request.filter, order_by=request.order_by,
            page_size=request.page_size, page_token=request.page_token, explain=request.explain,
            consistency=_consistency(request)))
        return qpb.ListNodesResponse(nodes=[node_to_proto(n) for n in page.nodes],
                                     next_page_token=page.next_page_token, plan=page.plan)

    async def Traverse(self, request, context):
        graph, start = parse_node_name(request.start, field="start")
        steps = tuple(
            TraversalStep(edge_type=s.edge_type,
                          direction=direction_from_proto(s.direction, f"steps[{i}].direction", allow_both=True),
                          node_filter=s.node_filter, per_node_limit=s.per_node_limit, repeat=s.repeat)
            for i, s in enumerate(request.steps))
        b = request.budget
        detail = _detail(request, Detail.BASIC)
        result = await self._q.traverse(Traverse(
            graph=graph, start=start, steps=steps,
            budget=TraversalBudget(max_depth=b.max_depth, max_nodes=b.max_nodes, per_node_fanout=b.per_node_fanout),
            consistency=_consistency(request), detail=detail, include_edges=request.include_edges))
        # Built in place: a message passed to a constructor is copied, and a 1,000-node
        # answer made those copies the biggest cost of a NAMES traversal after the walk.
        response = qpb.TraverseResponse(truncated=result.truncated, truncated_reason=result.truncated_reason)
        prefix = f"graphs/{graph}/nodes/"
        add = response.nodes.add
        if detail is Detail.NAMES:
            for i in result.node_ids:
                add(name=prefix + i)
        else:
            _add_nodes(response.nodes, result.nodes, detail)
        for lv in result.levels:
            response.levels.add(depth=lv.depth).node_names.extend([prefix + i for i in lv.node_ids])
        if result.edges:
            response.edges.extend([edge_to_proto(e) for e in result.edges])
        return response

    async def FindPath(self, request, context):
        graph, source = parse_node_name(request.source, field="source")
        target = parse_node_name_in(graph, request.target, field="target")
        result = await self._q.find_path(FindPath(
            graph=graph, source=source, target=target, edge_types=tuple(request.edge_types),
            direction=direction_from_proto(request.direction, default=Direction.OUT, allow_both=True),
            max_depth=request.max_depth, consistency=_consistency(request),
            detail=_detail(request, Detail.NAMES)))
        response = qpb.FindPathResponse(node_names=[node_name(graph, i) for i in result.node_ids],
                                        edges=[edge_to_proto(e) for e in result.edges], found=result.found,
                                        truncated=result.truncated, truncated_reason=result.truncated_reason)
        _add_nodes(response.nodes, result.nodes, result.detail)
        return response

    async def WatchEvents(self, request, context) -> AsyncIterator[qpb.WatchEventsResponse]:
        graph = parse_graph_name(request.parent, field="parent")
        stream = await self._q.watch_events(WatchEvents(graph, request.after_position, request.page_size))
        try:
            async for logged in stream:
                yield qpb.WatchEventsResponse(event=event_to_proto(logged))
        finally:
            await stream.aclose()


def register(app: QueryApplication):
    def _register(server) -> None:
        qgrpc.add_GraphQueryServiceServicer_to_server(GraphQueryServicer(app), server)
    return _register
