"""The system clock and id generator behind the domain's Clock and IdGenerator ports."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class Uuid4Ids:
    def new_id(self) -> str:
        return str(uuid.uuid4())
