"""Test helpers shipped with the suite: factories that clean up, waiters instead of sleeps."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Callable

DATA = Path(__file__).parent / "data"
NODE_XML = DATA / "node.xml"
NODE_URI = f"test://{NODE_XML}"
DEFAULT_URI = "test:///default"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll a cheap local predicate until true (for state that has no notification)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
