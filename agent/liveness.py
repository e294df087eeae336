"""Heartbeats and the liveness probe: the agent says it is alive, and whether its libvirt is.

A heartbeat goes out every interval, and at once when asked (after a reconnect). Right after each, one
cheap libvirt call runs on a thread of its own: when nothing else asks libvirt, a hung libvirtd still
shows as that call stuck in the next heartbeat (agent/health.py). A libvirtd that is gone shows at once, as
``libvirt_connected: false`` (agent/reconnector.py).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Dict, Iterable, Optional

from .hypervisor import HypervisorError

log = logging.getLogger(__name__)


def object_counts(class_names: Iterable[str]) -> Dict[str, int]:
    """Objects per class, as heartbeats carry them (``objects``): what ``virtq agents`` shows of each host."""
    return dict(collections.Counter(class_names))


class Liveness:
    """Runs ``beat`` every ``interval`` seconds and ``probe`` after each, until ``stopping`` is set."""

    def __init__(self, beat: Callable[[], None], probe: Callable[[], None], interval: float,
                 stopping: threading.Event) -> None:
        self.interval = interval
        self._beat = beat
        self._probe = probe
        self._stopping = stopping
        self._beat_now = threading.Event()
        self._probe_now = threading.Event()
        self._probe_started: Optional[float] = None  # time.monotonic() when the running probe began
        self._beats = threading.Thread(target=self._beat_loop, name="virtq-heartbeat", daemon=True)
        self._prober = threading.Thread(target=self._probe_loop, name="virtq-probe", daemon=True)

    def start(self) -> None:
        self._beats.start()
        self._prober.start()

    def beat_now(self) -> None:
        self._beat_now.set()

    @property
    def alive(self) -> bool:
        """Both threads run (the watchdog asks: agent/watchdog.py)."""
        return self._beats.is_alive() and self._prober.is_alive()

    def probing_for(self) -> float:
        """Seconds the running probe has waited for libvirt (0 when none runs)."""
        started = self._probe_started
        return 0.0 if started is None else time.monotonic() - started

    def stop(self, timeout: float) -> None:
        """After ``stopping`` is set: wake both threads and wait for them (the probe only briefly: it may be
        stuck in libvirt, on a daemon thread)."""
        self._beat_now.set()
        self._probe_now.set()
        if self._beats.is_alive():
            self._beats.join(timeout)
        if self._prober.is_alive():
            self._prober.join(min(timeout, 0.5))

    def _beat_loop(self) -> None:
        while not self._stopping.is_set():
            self._beat()
            self._probe_now.set()
            self._beat_now.wait(self.interval)
            self._beat_now.clear()

    def _probe_loop(self) -> None:
        while True:
            self._probe_now.wait()
            self._probe_now.clear()
            if self._stopping.is_set():
                return
            self._probe_started = time.monotonic()
            try:
                self._probe()
            except HypervisorError as exc:  # a lost connection: agent/reconnector.py reconnects
                log.debug("liveness probe: %s", exc.message)
            except Exception:  # noqa: BLE001 - the probe must keep probing
                log.exception("liveness probe failed")
            finally:
                self._probe_started = None
