"""Reconnecting to libvirt as soon as it says the connection closed, not at the next reconcile.

libvirt's close callback (EOF when libvirtd exits, keepalive when it stops answering) reaches
:meth:`Reconnector.lost` on libvirt's event thread, which only records it. The reconnector's own thread
then says so at once (a heartbeat with ``libvirt_connected: false``, one WARNING), reconnects with the
transports' backoff until it works, re-reads everything (what changed while no event could come) and
says so again (a heartbeat, one INFO line).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Optional

from virtq.transport import Backoff

from .hypervisor import Hypervisor, HypervisorError

log = logging.getLogger(__name__)


class Reconnector:
    """Watches ``hypervisor``'s connection; after a loss reconnects, then runs ``resync`` and ``announce``."""

    def __init__(self, hypervisor: Hypervisor, resync: Callable[[], None], announce: Callable[[], None],
                 stopping: threading.Event, backoff: Optional[Backoff] = None) -> None:
        self.hypervisor = hypervisor
        self.backoff = backoff or Backoff()
        self.reconnects = 0
        """Connections made again after a loss, this process."""
        self._resync = resync
        self._announce = announce
        self._stopping = stopping
        self._lost = threading.Event()
        self._reason = ""
        self._thread = threading.Thread(target=self._run, name="virtq-libvirt-reconnect", daemon=True)

    def attributes(self) -> Dict[str, Any]:
        """What heartbeats carry (``libvirt_connected``); never asks libvirt."""
        return {"libvirt_connected": self.hypervisor.connected()}

    def lost(self, reason: str) -> None:
        """The hypervisor's close listener (libvirt's event thread): only record and wake the thread."""
        self._reason = reason
        self._lost.set()

    def start(self) -> None:
        self.hypervisor.on_close(self.lost)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """After ``stopping`` is set (briefly: a reconnect may hang in libvirt, on a daemon thread)."""
        self.hypervisor.on_close(None)
        self._lost.set()
        if self._thread.is_alive():
            self._thread.join(min(timeout, 0.5))

    def _run(self) -> None:
        while self._lost.wait() and not self._stopping.is_set():
            self._lost.clear()
            if self.hypervisor.connected():
                continue  # the reconcile got there first
            self._announce()
            log.warning("libvirt connection to %s lost (%s): reconnecting", self.hypervisor.uri, self._reason)
            if self._reconnect():
                self.reconnects += 1
                self._resync()
                self._announce()

    def _reconnect(self) -> bool:
        """Try until connected (True) or stopping (False), waiting the backoff's delays in between."""
        began, attempts = time.monotonic(), 0
        self.backoff.reset()
        while not self._stopping.wait(self.backoff.next()):
            attempts += 1
            try:
                self.hypervisor.reconnect()
            except HypervisorError as exc:
                log.debug("reconnecting to %s: %s", self.hypervisor.uri, exc.message)
                continue
            except Exception:  # noqa: BLE001 - the thread must keep trying
                log.exception("reconnecting to %s", self.hypervisor.uri)
                continue
            log.info("libvirt connection to %s back after %.1f s (%d attempt%s): re-reading it", self.hypervisor.uri,
                     time.monotonic() - began, attempts, "" if attempts == 1 else "s")
            return True
        return False
