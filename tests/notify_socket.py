"""The service manager's end of systemd's notify protocol, for tests: a bound AF_UNIX datagram socket."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable, List


class NotifySocket:
    """What systemd listens on for ``$NOTIFY_SOCKET``; every line received is kept in ``lines``."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.address = str(path)
        self.lines: List[str] = []
        self.pings: List[float] = []
        """When each ``WATCHDOG=1`` came (time.monotonic())."""

    def _receive(self, timeout: float) -> List[str]:
        self.sock.settimeout(timeout)
        datagram = self.sock.recv(4096).decode().split("\n")
        self.pings += [time.monotonic()] * datagram.count("WATCHDOG=1")
        self.lines += datagram
        return datagram

    def until(self, done: Callable[[], bool], timeout: float = 15.0) -> List[str]:
        """Receive until ``done()``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the manager did not get what it waits for; got {self.lines}")
            try:
                self._receive(left)
            except socket.timeout:
                continue
        return self.lines

    def drain(self, quiet: float = 0.2) -> List[str]:
        """The lines that come until none has come for ``quiet`` seconds."""
        lines: List[str] = []
        try:
            while True:
                lines += self._receive(quiet)
        except socket.timeout:
            return lines

    def close(self) -> None:
        self.sock.close()
