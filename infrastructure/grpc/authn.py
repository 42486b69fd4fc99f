"""Authentication: who is calling (infrastructure.security.jwt), put in the call's facts.

Health and reflection are open (rpc_table.is_open). A response stream (WatchEvents) is
authenticated once at open and ended with UNAUTHENTICATED (TOKEN_EXPIRED) when its token
expires, even while it waits idle for the next event: a timer cancels the call's own task
(contextvars stay the call's) only while the stream awaits the method below, and that
cancellation, and only that one, becomes the UNAUTHENTICATED end. A caller's cancellation
stays a cancellation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from domain.errors import Reason, Unauthenticated
from infrastructure.grpc.context import current_facts
from infrastructure.grpc.interceptors import _drain, _metadata_values, _WrappingInterceptor
from infrastructure.security.jwt import Authenticator
from infrastructure.security.principal import Principal
from infrastructure.security.rpc_table import is_open

AUTHORIZATION_METADATA = "authorization"


def _expired() -> Unauthenticated:
    return Unauthenticated("the token has expired, so the stream ends: get a new token and open the stream again "
                           "from the last position you saw", reason=Reason.TOKEN_EXPIRED)


class AuthenticationInterceptor(_WrappingInterceptor):
    """Authenticate every call but the open ones; the principal goes to ``current_facts()``."""

    def __init__(self, authenticator: Authenticator, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.authenticator = authenticator
        self._clock = clock

    def _authenticate(self, context: Any) -> Principal:
        principal = self.authenticator.authenticate(_metadata_values(context, AUTHORIZATION_METADATA))
        current_facts().principal = principal
        return principal

    async def around_unary(self, method: str, behavior: Callable[..., Any], request: Any, context: Any) -> Any:
        if not is_open(method):
            self._authenticate(context)
        return await behavior(request, context)

    async def around_stream(self, method: str, behavior: Callable[..., Any], request: Any,
                            context: Any) -> AsyncIterator[Any]:
        if is_open(method):
            async for item in _drain(behavior, request, context):
                yield item
            return
        principal = self._authenticate(context)
        if principal.expires_at is None:
            async for item in _drain(behavior, request, context):
                yield item
            return
        task = asyncio.current_task()
        assert task is not None
        state = {"expired": False, "waiting": False, "cancelled": False}

        def fire() -> None:
            state["expired"] = True
            if state["waiting"]:
                state["cancelled"] = True
                task.cancel()

        delay = principal.expires_at + self.authenticator.leeway_seconds - self._clock()
        timer = asyncio.get_running_loop().call_later(max(0.0, delay), fire)
        inner = _drain(behavior, request, context)
        try:
            while True:
                if state["expired"]:
                    raise _expired()
                state["waiting"] = True
                try:
                    item = await inner.__anext__()
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if state["cancelled"]:
                        state["cancelled"] = False
                        if task.uncancel() == 0:  # ours alone, nobody else asked: the token expired
                            raise _expired() from None
                    raise
                finally:
                    state["waiting"] = False
                if state["cancelled"]:  # the method below swallowed our cancellation
                    state["cancelled"] = False
                    task.uncancel()
                if state["expired"]:
                    raise _expired()
                yield item
        finally:
            timer.cancel()
            if state["cancelled"]:  # cancelled by us, but the end is someone else's: leave no count behind
                task.uncancel()
            await inner.aclose()
