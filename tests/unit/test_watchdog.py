"""The systemd watchdog pings only while the agent's threads are alive and answer (issue 13, item 1).

A real agent (fake hypervisor, memory transport) and a real notifier on a datagram socket; the failures are
made for real where they can be (a sampler stopped, a liveness probe held in libvirt by a call gate) and
with a stand-in where they cannot: a reactor whose hand-over never runs (see also
tests/integration/test_systemd_notify.py, which wedges a real listener's reactor).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest
from pytest_mock import MockerFixture

from virtq.agent import Agent
from virtq.agent.notify import Notifier
from virtq.agent.policy import Policy
from virtq.agent.watchdog import Watchdog, agent_checks, agent_status
from virtq.schema import default_schema
from virtq.testing import CallGates, FakeHypervisor, MemoryBus, wait_until

from ..notify_socket import NotifySocket

SCHEMA = default_schema()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[NotifySocket]:
    manager = NotifySocket(tmp_path / "notify")
    yield manager
    manager.close()


@pytest.fixture
def gates() -> Iterator[CallGates]:
    gates = CallGates()
    yield gates
    gates.open_all()


@pytest.fixture
def agent(tmp_path: Path, gates: CallGates) -> Iterator[Agent]:
    bus = MemoryBus()
    agent = Agent(SCHEMA, FakeHypervisor.with_running_domains(3, gates=gates), bus.agent_transport(),
                  heartbeat=0.1, interval=60, slow_interval=60, reconcile=600, state_dir=tmp_path,
                  policy=Policy.everyone(SCHEMA, "admin", "t"))
    agent.start()
    yield agent
    agent.stop()
    bus.close()


def watchdog_for(agent: Agent, manager: NotifySocket, probe_limit: float = 0.5) -> Watchdog:
    return Watchdog(Notifier(manager.address), lambda: agent_status(agent), agent_checks(agent, probe_limit),
                    interval=1.0)


def test_a_healthy_agent_is_pinged_and_its_status_said(agent: Agent, manager: NotifySocket) -> None:
    watchdog = watchdog_for(agent, manager)
    assert watchdog.round() == []
    assert manager.drain() == ["WATCHDOG=1", "STATUS=serving 3 domains; libvirt ok"]
    watchdog.round()
    assert manager.drain() == ["WATCHDOG=1"]  # the status only when it changes


def test_a_reactor_that_never_runs_its_calls_stops_the_pings(agent: Agent, manager: NotifySocket,
                                                              mocker: MockerFixture,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    watchdog = watchdog_for(agent, manager)
    wedged = mocker.patch.object(agent.transport, "on_own_thread", return_value=True)  # taken, never run
    with caplog.at_level(logging.WARNING, logger="virtq.agent.watchdog"):
        assert watchdog.round() == ["the transport's reactor did not run a call within 0.25 s"]
        assert watchdog.round()  # said once
        sent = manager.drain()
        assert "WATCHDOG=1" not in sent
        assert any(line.startswith("STATUS=") and "watchdog not fed" in line for line in sent)
        mocker.stop(wedged)
        assert watchdog.round() == []
    assert manager.drain()[0] == "WATCHDOG=1"
    said = [r.getMessage() for r in caplog.records]
    assert said == ["systemd watchdog: not pinging: the transport's reactor did not run a call within 0.25 s; "
                    "systemd restarts the agent if this lasts 1 s", "systemd watchdog: pinging again"]
    assert caplog.records[0].levelno == logging.ERROR


def test_a_reactor_that_is_not_running_stops_the_pings(agent: Agent, manager: NotifySocket,
                                                       mocker: MockerFixture) -> None:
    mocker.patch.object(agent.transport, "on_own_thread", return_value=False)
    assert watchdog_for(agent, manager).round() == ["the transport's reactor thread is not running"]
    assert "WATCHDOG=1" not in manager.drain()


def test_a_sampler_that_ended_stops_the_pings(agent: Agent, manager: NotifySocket) -> None:
    agent.sampler.stop()
    assert watchdog_for(agent, manager).round() == ["the sampler thread ended"]


def test_a_liveness_probe_hung_in_libvirt_stops_the_pings(agent: Agent, manager: NotifySocket,
                                                          gates: CallGates) -> None:
    watchdog = watchdog_for(agent, manager, probe_limit=0.3)
    held = gates.close("probe")
    assert gates.entered[("probe", None)].wait(5)
    wait_until(lambda: agent.liveness.probing_for() > 0.3, timeout=5)
    (why,) = watchdog.round()
    assert why.startswith("the libvirt liveness probe has waited") and why.endswith("s for libvirt")
    assert "WATCHDOG=1" not in manager.drain()
    assert agent_status(agent).startswith("serving 3 domains; libvirt unresponsive (1 calls stuck, oldest Node:")
    held.set()
    wait_until(lambda: agent.liveness.probing_for() == 0, timeout=5)
    assert watchdog.round() == []


def test_without_a_watchdog_only_the_status_is_said(agent: Agent, manager: NotifySocket) -> None:
    watchdog = Watchdog(Notifier(manager.address), lambda: agent_status(agent), [], interval=None)
    assert watchdog.period == 10.0
    watchdog.round()
    assert manager.drain() == ["STATUS=serving 3 domains; libvirt ok"]


def test_the_thread_pings_until_stopped(agent: Agent, manager: NotifySocket) -> None:
    watchdog = Watchdog(Notifier(manager.address), lambda: "ok", agent_checks(agent, 5.0), interval=0.2)
    watchdog.start()
    manager.until(lambda: len(manager.pings) >= 3, timeout=5)
    watchdog.stop()
    manager.drain()
    assert manager.drain() == []


def test_nothing_runs_without_a_manager(agent: Agent) -> None:
    watchdog = Watchdog(Notifier(None), lambda: "ok", agent_checks(agent, 5.0), interval=0.2)
    watchdog.start()
    assert not watchdog._thread.is_alive()  # noqa: SLF001 - the one way to see no thread was started
    watchdog.stop()
