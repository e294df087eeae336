"""systemd's watchdog: ``WATCHDOG=1`` only while the agent's own threads are alive and answer.

A daemon whose process lives on but whose work stopped — a reactor wedged in a callback, a sampler thread
that died, a libvirt connection whose trivial calls never return — is worse than one that exits: nothing
restarts it. Every half ``WatchdogSec`` the watchdog runs its checks and pings only if all pass; when they
fail it says why, once, and stops pinging, so systemd restarts the agent when ``WatchdogSec`` has passed
without a ping (docs/OPERATIONS.md). The same thread keeps ``STATUS=`` current, with or without a watchdog.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from .notify import Notifier

if TYPE_CHECKING:
    from virtq.transport import Transport

    from .agent import Agent

log = logging.getLogger(__name__)

Check = Callable[[float], Optional[str]]
"""Given the seconds it may take: None when healthy, else what is wrong (one short phrase)."""


class Watchdog:
    """Runs ``checks`` every ``interval / 2`` seconds and pings while they pass (no interval: no pings, only
    ``STATUS=`` every ``status_period``)."""

    def __init__(self, notifier: Notifier, status: Callable[[], str], checks: Sequence[Check], *,
                 interval: Optional[float], status_period: float = 10.0) -> None:
        self.notifier = notifier
        self.interval = interval
        self.period = interval / 2 if interval else status_period
        self._status = status
        self._checks = list(checks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="virtq-watchdog", daemon=True)
        self._said_status = ""
        self.failing: List[str] = []
        """What the last round found wrong (empty: pinging)."""

    def start(self) -> None:
        if self.notifier.enabled:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Before the agent's parts stop: their ending is no failure to report."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def round(self) -> List[str]:
        """One round: the checks (each may take a quarter of the interval), a ping if all passed, the status
        if it changed. Returns what is wrong."""
        failing: List[str] = []
        if self.interval:
            failing = [why for why in (check(self.period / 2) for check in self._checks) if why]
        if self.interval and not failing:
            self.notifier.watchdog()
        if failing != self.failing:
            if failing:
                log.error("systemd watchdog: not pinging: %s; systemd restarts the agent if this lasts %g s",
                          "; ".join(failing), self.interval)
            else:
                log.warning("systemd watchdog: pinging again")
            self.failing = failing
        status = self._status() + (f"; watchdog not fed: {'; '.join(failing)}" if failing else "")
        if status != self._said_status:
            self.notifier.status(status)
            self._said_status = status
        return failing

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.round()
            except Exception:  # noqa: BLE001 - a failing round is a missed ping, never a dead thread
                log.exception("systemd watchdog round failed")
            self._stop.wait(max(0.0, self.period - (time.monotonic() - started)))


def reactor_answers(transport: "Transport") -> Check:
    """The transport's thread runs a call handed to it within the time allowed."""
    def check(timeout: float) -> Optional[str]:
        answered = threading.Event()
        if not transport.on_own_thread(answered.set):
            return "the transport's reactor thread is not running"
        if not answered.wait(timeout):
            return f"the transport's reactor did not run a call within {timeout:g} s"
        return None
    return check


def agent_checks(agent: "Agent", probe_limit: float) -> List[Check]:
    """What must be alive for the agent to be doing its work: the reactor answers, the heartbeat and probe
    threads run, the liveness probe's libvirt call has not hung past ``probe_limit`` seconds, the sampler
    thread runs."""
    def threads(timeout: float) -> Optional[str]:
        dead = [what for what, alive in (("heartbeat/probe", agent.liveness.alive), ("sampler", agent.sampler.alive))
                if not alive]
        return f"the {' and '.join(dead)} thread ended" if dead else None

    def probe(timeout: float) -> Optional[str]:
        waited = agent.liveness.probing_for()
        if waited <= probe_limit:
            return None
        return f"the libvirt liveness probe has waited {waited:.0f} s for libvirt"

    return [reactor_answers(agent.transport), threads, probe]


def agent_status(agent: "Agent") -> str:
    """One line for ``systemctl status``: what is served and how libvirt and the transport are."""
    health = agent.tracker.health(agent.stuck_after)
    text = f"serving {len(agent.registry.entries('Domain'))} domains; libvirt {health.libvirt}"
    if health.stuck:
        text += f" ({health.stuck} calls stuck, oldest {health.stuck_call} for {health.stuck_age:.0f} s)"
    if not agent.transport.connected:
        text += "; not connected (retrying)"
    return text
