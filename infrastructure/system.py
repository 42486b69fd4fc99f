"""The system clock and id generator behind the domain's Clock and IdGenerator ports."""

from __future__ import annotations

import os
from datetime import datetime, timezone


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class Uuid4Ids:
    """Random (version 4) UUIDs as strings: what ``str(uuid.uuid4())`` returns, without
    building a UUID object (a BatchWrite draws one per event). The random bytes come
    from ``os.urandom`` 4 KiB at a time: one system call per 256 ids."""

    _POOL_IDS = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def new_id(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(16 * self._POOL_IDS), 0
        self._at = at + 16
        b = bytearray(self._pool[at:at + 16])
        b[6] = (b[6] & 0x0F) | 0x40  # version 4
        b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
