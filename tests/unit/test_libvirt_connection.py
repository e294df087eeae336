"""A lost libvirt connection is noticed in moments, not at the next reconcile (issue 13, item 2), with the fake.

libvirt's close callback (played by ``FakeHypervisor.disconnect``) makes the agent send a heartbeat at once
with ``libvirt_connected: false``, log one WARNING, reconnect with backoff while libvirtd stays away,
re-read everything once back (what changed meanwhile included) and say so (a heartbeat, one INFO). A
console counts such an agent degraded, "libvirt disconnected", until it is connected again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from virtq.agent import Agent
from virtq.agent.policy import Policy
from virtq.console import Console
from virtq.console.events import AgentDegraded, AgentRecovered, Event
from virtq.console.health import AgentHealth
from virtq.schema import default_schema
from virtq.schema.codec import QueryRequest, QueryResponse
from virtq.testing import FakeHypervisor, RecordingTransport, numbered_domain, wait_until
from virtq.transport import MemoryBus

from .fake_agents import feed, follow, heartbeat
from .qmf_client import Client

SCHEMA = default_schema()
HV01 = "libvirt.org:virtq:hv01"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Tuple[Agent, FakeHypervisor, Client]]:
    """An agent whose heartbeats and reconcile are far apart (60 s, 600 s): what comes sooner is the loss."""
    bus = MemoryBus()
    hv = FakeHypervisor.with_running_domains(3)
    agent = Agent(SCHEMA, hv, bus.agent_transport(), heartbeat=60, interval=60, slow_interval=60, reconcile=600,
                  state_dir=tmp_path, policy=Policy.everyone(SCHEMA, "admin", "t"))
    agent.start()
    yield agent, hv, Client(bus.console_transport(), agent)
    agent.stop()
    bus.close()


def beat_saying(client: Client, connected: bool, timeout: float = 2.0) -> float:
    """When the first heartbeat saying ``libvirt_connected: <connected>`` came (others are skipped)."""
    deadline = time.monotonic() + timeout
    while client.heartbeats.get(timeout=max(0.0, deadline - time.monotonic())).attributes["libvirt_connected"] \
            is not connected:
        pass
    return time.monotonic()


def names(client: Client) -> List[str]:
    replies = client.request(QueryRequest(what="OBJECT"))
    return sorted(str(item.values.get("name")) for reply in replies if isinstance(reply, QueryResponse)
                  for item in reply.items if item.object_id.object_name.startswith("Domain:"))


def test_a_lost_connection_is_told_at_once_and_reconnected_with_backoff_then_reread(
        served: Tuple[Agent, FakeHypervisor, Client], caplog: pytest.LogCaptureFixture) -> None:
    agent, hv, client = served
    assert agent.info().attributes["libvirt_connected"] is True
    assert names(client) == ["dom0", "dom1", "dom2"]

    with caplog.at_level(logging.DEBUG, logger="virtq.agent"):
        lost = time.monotonic()
        hv.disconnect("eof")  # libvirtd exited, and stays away for now
        assert beat_saying(client, False) - lost < 1.0  # not 60 s later
        assert not agent.libvirt.connected()
        wait_until(lambda: sum("reconnecting to fake:///" in r.getMessage() for r in caplog.records) >= 2)
        # What changed while no event could come: the re-read after the reconnect finds it.
        hv.domains = [numbered_domain(1, 2), numbered_domain(2, 3), numbered_domain(7)]
        hv.down = False  # libvirtd is back
        beat_saying(client, True, timeout=10)
        assert agent.reconnector.reconnects == 1
        wait_until(lambda: names(client) == ["dom1", "dom2", "dom7"])

    records = [r for r in caplog.records if r.name == "virtq.agent.reconnector"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert warnings == ["libvirt connection to fake:/// lost (eof): reconnecting"]
    assert len(infos) == 1 and infos[0].startswith("libvirt connection to fake:/// back after")


def test_each_loss_is_told_and_repaired_once(served: Tuple[Agent, FakeHypervisor, Client]) -> None:
    agent, hv, client = served
    for round, reason in enumerate(("keepalive", "error"), 1):
        hv.disconnect(reason, down=False)  # back at the first attempt
        beat_saying(client, False)
        beat_saying(client, True)
        assert agent.reconnector.reconnects == round
    assert agent.libvirt.alive() and agent.libvirt.connected()


def test_a_console_counts_a_disconnected_agent_degraded() -> None:
    assert not AgentHealth.from_attributes({"libvirt_connected": False}).libvirt_connected
    assert AgentHealth.from_attributes({"libvirt_connected": False}).state == "degraded: libvirt disconnected"
    assert AgentHealth.from_attributes({"libvirt_connected": False, "libvirt": "unresponsive", "stuck": 1,
                                        "stuck_call": "Node:x virConnectOpen"}).reason \
        == "libvirt disconnected, 1 stuck call Node:x virConnectOpen"
    for said in ({}, {"libvirt_connected": True}, {"libvirt_connected": "no"}, {"libvirt_connected": 0}):
        assert AgentHealth.from_attributes(said).libvirt_connected, said  # older or broken agents: connected

    console = Console(timeout=2)
    transport = RecordingTransport()
    events: List[Event] = []
    subscription = console.subscribe(events.append, kinds=(AgentDegraded, AgentRecovered))
    follow(console, transport, HV01, [], libvirt="ok", libvirt_connected=True)
    feed(console, transport, heartbeat(HV01, libvirt="ok", libvirt_connected=False))
    wait_until(lambda: len(events) == 1)
    degraded = events[0]
    assert isinstance(degraded, AgentDegraded) and degraded.reason == "libvirt disconnected"
    assert not console.agents.get(HV01).health.libvirt_connected
    feed(console, transport, heartbeat(HV01, libvirt="ok", libvirt_connected=True))
    wait_until(lambda: len(events) == 2)
    assert isinstance(events[1], AgentRecovered) and console.agents.get(HV01).health.libvirt_connected
    subscription.close()
    console.close()
