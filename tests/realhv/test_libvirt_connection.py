"""A stopped libvirtd is noticed in moments, through libvirt's close callback, not at the next reconcile
(issue 13, item 2): the real-hypervisor tier.

The agent's heartbeats come every 5 s and its reconcile every 300 s; libvirtd gets SIGTERM. The
connection's close callback (EOF) makes the agent send a heartbeat at once saying ``libvirt_connected:
false`` and a console reports the agent degraded ("libvirt disconnected"). While libvirtd is down a
guest is defined behind everyone's back (its XML put where libvirtd reads definitions at start); when
libvirtd is back the agent reconnects by itself (backoff), re-reads, and the console sees the guest and
the agent recovered. The times are measured and printed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, List, Tuple

import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.console.events import AgentDegraded, AgentRecovered, Event
from virtq.testing import wait_until

from .conftest import TinyGuest
from .harness import LibvirtDaemons, Unavailable

pytestmark = pytest.mark.realhv

HEARTBEAT = 5.0
"""Far apart: a heartbeat within a second of the loss is the close callback's, not the schedule's."""
NOTICED_WITHIN = 2.0
"""Seconds from SIGTERM to the console's AgentDegraded (the reconcile would take up to 300 s)."""
DEFINITIONS = Path("/etc/libvirt/qemu")
"""Where the system libvirtd reads persistent domain definitions when it starts."""


class Health:
    """A console's AgentDegraded/AgentRecovered events, with when they came."""

    def __init__(self, console: Console) -> None:
        self.events: List[Tuple[float, Event]] = []
        self._cond = threading.Condition()
        self.subscription = console.subscribe(self._receive, kinds=(AgentDegraded, AgentRecovered))

    def _receive(self, event: Event) -> None:
        with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    def first(self, kind: type, timeout: float) -> Tuple[float, Event]:
        with self._cond:
            assert self._cond.wait_for(lambda: any(isinstance(e, kind) for _, e in self.events), timeout), \
                f"no {kind.__name__} within {timeout} s: {self.events}"
            return next((t, e) for t, e in self.events if isinstance(e, kind))


def report(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    with capsys.disabled():
        print()
        for line in lines:
            print(f"  [realhv libvirt connection] {line}")


def test_a_stopped_libvirtd_is_told_in_moments_and_a_restarted_one_reconnected_and_reread(
        libvirt_daemons: LibvirtDaemons, admin_agent: Callable[..., Agent],
        admin_console: Callable[..., Console], tiny_guest: Callable[[], TinyGuest],
        capsys: pytest.CaptureFixture[str]) -> None:
    if libvirt_daemons.reused:
        pytest.skip("the harness reused a libvirtd it did not start: not stopping it")
    agent = admin_agent(heartbeat=HEARTBEAT)
    console = admin_console(agent, timeout=20)
    health = Health(console)
    behind_the_back = tiny_guest()
    definition = DEFINITIONS / f"{behind_the_back.name}.xml"
    assert agent.info().attributes["libvirt_connected"] is True

    def while_down() -> None:
        told, degraded = health.first(AgentDegraded, timeout=NOTICED_WITHIN + 5)
        timings.append(told - began)
        assert isinstance(degraded, AgentDegraded) and degraded.reason == "libvirt disconnected"
        view = console.agents.get(agent.name)
        assert view.attributes["libvirt_connected"] is False and not view.health.libvirt_connected
        definition.write_text(behind_the_back.xml)  # read by libvirtd when it starts: no event for anyone

    timings: List[float] = []
    began = time.monotonic()
    try:
        libvirt_daemons.restart_libvirtd(while_down=while_down)
    except Unavailable as exc:
        pytest.skip(f"cannot restart libvirtd: {exc}")
    except BaseException:
        definition.unlink(missing_ok=True)  # (once libvirtd read it, the fixture's undefine removes it)
        raise
    answering = time.monotonic()
    assert timings and timings[0] < NOTICED_WITHIN, f"noticed after {timings} s"

    back, _ = health.first(AgentRecovered, timeout=15)
    assert console.agents.get(agent.name).attributes["libvirt_connected"] is True
    assert agent.reconnector.reconnects == 1 and agent.hypervisor.connected() and agent.hypervisor.alive()
    # The re-read after the reconnect found what changed while no event could come.
    found = wait_until(lambda: [d for d in console.domains.of_agent(agent.name)
                                if d.values.get("name") == behind_the_back.name], timeout=10)
    assert found[0].values["id"] == -1

    report(capsys, f"SIGTERM -> console's AgentDegraded: {timings[0] * 1000:.0f} ms (heartbeat every {HEARTBEAT:g} s, "
                   f"reconcile every {agent.reconcile_interval:g} s)",
           f"libvirtd answering again -> AgentRecovered: {max(0.0, back - answering) * 1000:.0f} ms "
           f"(SIGTERM -> libvirtd answering again: {answering - began:.2f} s)")
