"""Loopback ports for endpoints a test starts: one nobody listens on yet, and whether one is listening."""

from __future__ import annotations

import socket
from typing import Iterable

__all__ = ["free_port", "port_open"]


def free_port(avoid: Iterable[int] = (), host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (and not one of ``avoid``: ports a test has handed
    out but not bound yet). Another process may still take it before the test binds it."""
    taken = set(avoid)
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host``:``port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
