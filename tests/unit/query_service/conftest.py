from typing import Callable, Sequence

import pytest

from domain.ports import LoggedEvent
from infrastructure.persistence.memory.read_model import InMemoryReadModel
from infrastructure.tokens import TokenSigner
from query_service.bootstrap import build_application
from tests.query_support import SECRET, Events


def per_graph(graph: str) -> str:
    return graph


class ListEventLog:
    """EventLog port over a list. Sharded per graph by default (shard id == graph, positions
    1, 2, ... per graph), as on DynamoDB, so the query side is tested with many shards;
    ``shard_of=lambda g: "0"`` gives SQLite's single shard."""

    def __init__(self, shard_of: Callable[[str], str] = per_graph) -> None:
        self.items: list[LoggedEvent] = []
        self._shard_of = shard_of

    def shard_of(self, graph: str) -> str:
        return self._shard_of(graph)

    def head(self, shard: str) -> int:
        return sum(1 for e in self.items if e.shard == shard)

    def append(self, *events) -> int:
        """Append; the position of the last event in its shard."""
        position = 0
        for e in events:
            shard = self.shard_of(e.graph)
            position = self.head(shard) + 1
            self.items.append(LoggedEvent(position=position, event=e, shard=shard))
        return position

    async def shards(self) -> list[str]:
        return sorted({e.shard for e in self.items})

    async def read_after(self, shard, position, limit, *, graph=None):
        out = [e for e in self.items if e.shard == shard and e.position > position
               and (graph is None or e.event.graph == graph)]
        return out[:limit]

    async def heads(self, shards: Sequence[str] | None = None) -> dict[str, int]:
        return {s: self.head(s) for s in (shards if shards is not None else await self.shards())}


class World:
    def __init__(self, remaining=lambda: None, cache=None):
        self.rm = InMemoryReadModel()
        self.cache = cache
        self.log = ListEventLog()
        self.ev = Events()
        self.signer = TokenSigner(SECRET)
        self.remaining = remaining
        self.app = build_application(read_model=self.rm, store=self.rm, event_log=self.log, signer=self.signer,
                                     projector_enabled=True, poll_interval=0.01,
                                     time_remaining=lambda: self.remaining(), max_consistency_wait=0.3,
                                     cache=cache)
        self.q = self.app.queries

    async def write(self, *events) -> int:
        """Append and project (as the in-process projector would); the last event's position
        in its shard."""
        pos = self.log.append(*events)
        await self.app.projector.catch_up()
        return pos

    def token(self, position: int, graph: str = "g") -> str:
        """A token for ``position`` in the shard of ``graph``."""
        return self.signer.sign({"p": {self.log.shard_of(graph): position}})


@pytest.fixture
async def world():
    w = World()
    await w.write(w.ev.schema())
    return w
