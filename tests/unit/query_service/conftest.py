import pytest

from domain.ports import LoggedEvent
from infrastructure.persistence.memory.read_model import InMemoryReadModel
from infrastructure.tokens import TokenSigner
from query_service.bootstrap import build_application
from tests.query_support import SECRET, Events


class ListEventLog:
    """EventLog port over a list (positions 1..n)."""

    def __init__(self) -> None:
        self.items: list[LoggedEvent] = []

    def append(self, *events) -> int:
        for e in events:
            self.items.append(LoggedEvent(position=len(self.items) + 1, event=e))
        return len(self.items)

    async def read_after(self, position, limit, *, graph=None):
        out = [e for e in self.items if e.position > position and (graph is None or e.event.graph == graph)]
        return out[:limit]

    async def head(self):
        return len(self.items)


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
        """Append and project (as the in-process projector would)."""
        pos = self.log.append(*events)
        await self.app.projector.catch_up()
        return pos

    def token(self, position: int) -> str:
        return self.signer.sign({"p": {"0": position}})


@pytest.fixture
async def world():
    w = World()
    await w.write(w.ev.schema())
    return w
