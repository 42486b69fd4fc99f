"""Free loopback ports for the processes tests and launchers start, chosen BELOW the kernel's
ephemeral range.

A port the kernel handed out as free (bind to port 0) comes from the ephemeral range, the same
range every outgoing connection takes its local port from: between choosing it and the child
binding it, any connection on the machine (a client to moto, Envoy to an upstream) can take it,
and the child fails with "address in use". Below the range no outgoing connection ever lands, so
only another chooser can collide; a random pick checked by binding it makes that unlikely.
"""

from __future__ import annotations

import random
import socket

HOST = "127.0.0.1"
_FALLBACK_EPHEMERAL_LOW = 32768
_SPAN = 16384  # how far below the ephemeral range to choose
_handed_out: set[int] = set()  # never hand the same port out twice from one process


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW


def _bindable(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port nobody listens on now, outside the ephemeral range when the range leaves room below
    it (else whatever the kernel hands out)."""
    low = _ephemeral_low()
    start = max(1024, low - _SPAN)
    if low - start >= 1024:
        for _ in range(200):
            port = random.randrange(start, low)
            if port not in _handed_out and _bindable(port, host):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port
