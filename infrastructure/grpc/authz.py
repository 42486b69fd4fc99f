"""Authorization: the method's scope, then every graph the request touches (DESIGN §6, issue 8).

Runs inside authentication (which sets ``current_facts().principal``) and outside rate limiting
and validation, so a request about a graph the caller may not use is PERMISSION_DENIED whatever
else is wrong with it: nothing about that graph — whether it exists, its schema, its nodes —
can reach the caller through INVALID_ARGUMENT, NOT_FOUND or a handler's answer.

The decision reads only the request and the principal, never the store, so the refusal is the
same, byte for byte, for a graph that exists and one that does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from grpc import aio

from domain.errors import PermissionDenied, Reason, Unauthenticated
from infrastructure.grpc.context import current_facts
from infrastructure.grpc.interceptors import _drain, _is_iterator, _WrappingInterceptor
from infrastructure.security.graphs import graphs_touched
from infrastructure.security.principal import Principal
from infrastructure.security.rpc_table import required_scope

__all__ = ["AuthorizationInterceptor", "authorize", "graphs_touched"]

# A graph id is at most 63 characters (domain.values.GRAPH_ID_SYNTAX): a longer "graph" is
# garbage that validation refuses, and is clipped where it is echoed or logged.
_MAX_GRAPH_ECHO = 64


def _clip(graph: str) -> str:
    return graph if len(graph) <= _MAX_GRAPH_ECHO else graph[:_MAX_GRAPH_ECHO] + "..."


def authorize(method: str, request: Any) -> None:
    """Raise unless the current principal may call ``method`` with ``request``; record the
    request's graph in the call's facts. Open and unknown methods pass."""
    scope = required_scope(method)
    if scope is None or _is_iterator(request):  # open/unknown method; client streaming: none exists
        return
    facts = current_facts()
    principal: Principal | None = facts.principal
    if principal is None:  # authentication runs outside and always sets one: the chain is mis-assembled
        raise Unauthenticated("no authenticated caller for this call", reason=Reason.TOKEN_MISSING)
    if not principal.has_scope(scope):
        raise PermissionDenied(
            f"principal {principal.subject!r} lacks the scope {scope!r} that {method} requires",
            reason=Reason.SCOPE_MISSING,
            metadata={"method": method, "required_scope": scope, "principal": principal.subject})
    graphs = graphs_touched(method, request)
    if graphs:
        facts.graph = _clip(graphs[0])
    for graph in graphs:
        if not principal.may_use(graph):
            shown = _clip(graph)
            # Only the caller's own graph name and who it is: the same whether the graph exists.
            raise PermissionDenied(
                f"principal {principal.subject!r} may not use graph {shown!r}",
                reason=Reason.GRAPH_ACCESS_DENIED,
                metadata={"graph": shown, "principal": principal.subject})


class AuthorizationInterceptor(_WrappingInterceptor):
    """Scope per method (infrastructure.security.rpc_table) and graph isolation
    (infrastructure.security.graphs) before rate limiting, validation and the handler.

    WatchEvents is checked once, when the stream opens."""

    async def around_unary(self, method: str, behavior: Callable[..., Awaitable[Any]], request: Any,
                           context: aio.ServicerContext) -> Any:
        authorize(method, request)
        return await behavior(request, context)

    async def around_stream(self, method: str, behavior: Callable[..., Any], request: Any,
                            context: aio.ServicerContext) -> AsyncIterator[Any]:
        authorize(method, request)
        async for item in _drain(behavior, request, context):
            yield item
