"""systemd's notify protocol (sd_notify(3)) without libsystemd: ``KEY=VALUE`` lines in one datagram.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for Linux's abstract
namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``: the process meant).
Outside systemd nothing is set and every call here does nothing, so the daemon needs no switch.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping, Optional

log = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0
"""Seconds a datagram may wait for room in a manager's full queue: a manager that does not read must not
hold the watchdog's thread or a signal handler."""


class Notifier:
    """Tells the service manager how the daemon is doing; a no-op when there is no manager to tell."""

    def __init__(self, address: Optional[str]) -> None:
        self.address = address or None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "Notifier":
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``READY=1``, ``STATUS=…``) in one datagram; True if it went out."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto("\n".join(lines).encode("utf-8"), target)
        except OSError as exc:  # said once: a manager that went away must not fill the log
            if not self._failed:
                log.warning("cannot notify the service manager at %s: %s", self.address, exc)
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def reloading(self) -> bool:
        """Before a reload; ``ready()`` ends it (MONOTONIC_USEC: what systemd 253's notify-reload asks for)."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                           "STATUS=reloading the configuration")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")


def watchdog_interval(environ: Mapping[str, str] = os.environ, pid: Optional[int] = None) -> Optional[float]:
    """Seconds within which systemd wants a ``WATCHDOG=1`` from this process, or None (no watchdog, or
    one meant for another process: ``$WATCHDOG_PID`` names it)."""
    usec = environ.get("WATCHDOG_USEC", "")
    meant_for = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if meant_for and meant_for != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000
