"""virtq-agent speaks systemd's notify protocol to a real NOTIFY_SOCKET (issue 13, item 1).

The daemon runs as a process, as under systemd, with ``$NOTIFY_SOCKET`` naming a datagram socket the test
binds and ``$WATCHDOG_USEC`` a second: READY once it serves, STATUS, a WATCHDOG ping every half second,
RELOADING then READY around a SIGHUP, STOPPING at SIGTERM. A wedged reactor is made for real in-process:
a call handed to a real listener's reactor thread that blocks it.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from virtq.agent.notify import Notifier
from virtq.agent.watchdog import Watchdog, agent_checks, agent_status
from virtq.testing import FakeHypervisor, free_port, running_agent

from ..helpers import NODE_URI, agent_process, stop_process
from ..notify_socket import NotifySocket

pytestmark = pytest.mark.integration


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[NotifySocket]:
    manager = NotifySocket(tmp_path / "notify")
    yield manager
    manager.close()


def test_ready_status_watchdog_reload_and_stop(tmp_path: Path, manager: NotifySocket,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", manager.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    port = free_port()
    with agent_process(["--libvirt", NODE_URI, "--listen", f"amqp://127.0.0.1:{port}"], port, tmp_path) as (
            proc, log_path):
        manager.until(lambda: "READY=1" in manager.lines)
        ready = manager.lines.index("READY=1")
        assert manager.lines[ready + 1].startswith("STATUS=serving ") and "libvirt ok" in manager.lines[ready + 1]
        manager.until(lambda: len(manager.pings) >= 4)
        gaps = sorted(b - a for a, b in zip(manager.pings, manager.pings[1:]))
        assert 0.3 < gaps[len(gaps) // 2] < 0.8, gaps  # every half WATCHDOG_USEC (a loaded test machine may
        assert gaps[-1] < 1.5, gaps  # delay one; systemd's 30 s leave far more room than this second)

        proc.send_signal(signal.SIGHUP)
        manager.until(lambda: "RELOADING=1" in manager.lines)
        manager.until(lambda: "READY=1" in manager.lines[manager.lines.index("RELOADING=1"):])
        pings = len(manager.pings)
        manager.until(lambda: len(manager.pings) > pings)  # pings go on after a reload
        assert proc.poll() is None

        stop_process(proc, log_path)
        manager.until(lambda: "STOPPING=1" in manager.lines)
    assert "systemd watchdog" not in log_path.read_text()  # never failed, not even while stopping


def test_a_watchdog_meant_for_another_process_is_not_fed(tmp_path: Path, manager: NotifySocket,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", manager.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    port = free_port()
    with agent_process(["--libvirt", NODE_URI, "--listen", f"amqp://127.0.0.1:{port}"], port, tmp_path) as (
            proc, log_path):
        manager.until(lambda: "READY=1" in manager.lines)
        time.sleep(0.6)
        stop_process(proc, log_path)
        manager.until(lambda: "STOPPING=1" in manager.lines)
    assert "WATCHDOG=1" not in manager.lines


def test_a_wedged_reactor_stops_the_pings_until_it_runs_again(manager: NotifySocket) -> None:
    """A real listener's reactor thread, blocked in a call it was handed: what a callback stuck in a lock does."""
    with running_agent(FakeHypervisor.with_running_domains(2), heartbeat=0.2) as agent:
        watchdog = Watchdog(Notifier(manager.address), lambda: agent_status(agent), agent_checks(agent, 5.0),
                            interval=0.4)
        assert watchdog.round() == []
        manager.until(lambda: "WATCHDOG=1" in manager.lines)

        release = threading.Event()

        def wedge() -> None:
            release.wait(10)

        assert agent.transport.on_own_thread(wedge)
        assert watchdog.round() == ["the transport's reactor did not run a call within 0.1 s"]
        manager.until(lambda: any("watchdog not fed" in line for line in manager.lines))
        pings = manager.lines.count("WATCHDOG=1")

        release.set()
        assert watchdog.round() == []
        manager.until(lambda: manager.lines.count("WATCHDOG=1") > pings)
