"""Read consistency: latest projected state by default, or wait for a position.

``at_least_token`` carries the log positions a write produced, signed by the
command side as ``{"p": {"<shard>": position, ...}, "g": [graph]}`` (``"g"`` is for
authorization; the gate reads only ``"p"``); ``fully_consistent`` waits for
the current head of the graph's log shard. Either waits at most the call's remaining deadline
(capped), then fails UNAVAILABLE with RetryInfo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from domain.errors import FieldViolation, Reason, Unavailable, ValidationFailed
from domain.ports import EventLog
from query_service.app.ports import ProjectionProgress, TokenSigner

MIN_REPLY_MARGIN = 0.05  # seconds
REPLY_MARGIN_FRACTION = 0.1


@dataclass(frozen=True)
class Consistency:
    at_least_token: str = ""
    fully_consistent: bool = False


LATEST = Consistency()


class ConsistencyGate:
    def __init__(self, *, signer: TokenSigner, progress: ProjectionProgress, event_log: EventLog,
                 time_remaining: Callable[[], float | None], max_wait: float = 5.0) -> None:
        self._signer = signer
        self._progress = progress
        self._log = event_log
        self._remaining = time_remaining
        self._max_wait = max_wait

    def required_positions(self, token: str, field: str = "consistency.at_least_token") -> dict[str, int]:
        payload = self._signer.verify(token, field=field, reason=Reason.INVALID_CONSISTENCY_TOKEN)
        positions = payload.get("p") if isinstance(payload, dict) else None
        if not isinstance(positions, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in positions.items()):
            raise ValidationFailed(f"{field} is not a consistency token this service issued",
                                   reason=Reason.INVALID_CONSISTENCY_TOKEN,
                                   violations=[FieldViolation(field, "not a consistency token")])
        return dict(positions)

    async def ensure(self, consistency: Consistency | None, graph: str | None = None) -> None:
        """Wait until the read model is at least as new as ``consistency`` asks, for a read of
        ``graph``: only the graph's own log shard counts (every shard without a graph).

        ``at_least_token`` waits for the token's position in the graph's shard; its other shards
        (on DynamoDB a shard is a graph) are neither waited for nor named in the error, so a
        token never makes a read of one graph depend on, or tell about, another.
        ``fully_consistent`` waits for the head of the graph's shard."""
        if consistency is None or (not consistency.at_least_token and not consistency.fully_consistent):
            return
        if consistency.at_least_token:
            required = self.required_positions(consistency.at_least_token)
            if graph is not None:
                shard = self._log.shard_of(graph)
                required = {shard: required[shard]} if shard in required else {}
        else:
            required = await self._log.heads(None if graph is None else [self._log.shard_of(graph)])
        if self._progress.reached(required):
            return
        remaining = self._remaining()
        # Give up early enough that UNAVAILABLE (retryable, with RetryInfo) reaches the
        # caller before its own deadline turns the call into DEADLINE_EXCEEDED.
        margin = 0.0 if remaining is None else max(MIN_REPLY_MARGIN, REPLY_MARGIN_FRACTION * remaining)
        wait = self._max_wait if remaining is None else max(0.0, min(self._max_wait, remaining - margin))
        if await self._progress.wait_for(required, wait):
            return
        behind = self._progress.behind(required)
        shard, (want, have) = next(iter(behind.items())) if behind else ("", (0, 0))
        raise Unavailable(
            f"the read model has not reached position {want} of log shard {shard!r} yet (at {have}); retry",
            reason=Reason.CONSISTENCY_NOT_REACHED, retry_after_seconds=0.2,
            metadata={"shard": shard, "required_position": str(want), "projected_position": str(have)},
        )
