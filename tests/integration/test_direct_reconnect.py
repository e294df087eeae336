"""Direct mode: a console's connection to an agent reconnects (backoff with jitter) when the agent goes away
and comes back on the same address — an agent restart or upgrade — and the console converges on the new
agent's truth; while the agent is away, calls fail at once with a typed error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console
from virtq.console.events import AgentRestarted, Event, ObjectAdded, ObjectRemoved
from virtq.schema import default_schema
from virtq.schema.errors import NotConnectedError
from virtq.testing import PAUSED, domain_xml, free_port, next_event
from virtq.transport import DirectListener

from ..helpers import NODE_URI


def _agent(url: str, state: Path) -> Agent:
    agent = Agent(default_schema(), LibvirtHypervisor(NODE_URI), DirectListener(url), state_dir=state,
                  heartbeat=0.2, interval=30)
    agent.start()
    return agent


def test_a_console_follows_an_agent_restarted_on_the_same_address(tmp_path: Path) -> None:
    url = f"amqp://127.0.0.1:{free_port()}"
    state = tmp_path / "state"
    first = _agent(url, state)
    second = None
    console = Console([url], timeout=5)
    try:
        console.start()
        sub = console.subscribe(kinds=(AgentRestarted, ObjectRemoved, ObjectAdded))
        (node,) = console.nodes
        extra = node.domainDefineXML(domain_xml("gone-meanwhile"))  # only in the first agent's hypervisor
        next_event(sub, ObjectAdded, lambda e: e.obj.uuid == extra.uuid)
        web1 = console.domains.get("web1")
        first.stop()

        assert console.wait_for(lambda: not console.connections[0][1].connected, timeout=5)
        began = time.monotonic()
        with pytest.raises(NotConnectedError):
            web1.suspend()
        assert time.monotonic() - began < 0.5  # at once, not after the call timeout

        second = _agent(url, state)
        # in either order: the reconnect's resync may come before or after the new epoch's heartbeat
        told: List[Event] = []
        while not ({AgentRestarted, ObjectRemoved} <= {type(e) for e in told}):
            event = sub.get(15)
            assert event is not None, f"after the restart, only {told!r}"
            told.append(event)
        (restarted,) = [e for e in told if isinstance(e, AgentRestarted)]
        assert restarted.old_epoch == first.epoch and restarted.agent.epoch == second.epoch
        (removed,) = [e for e in told if isinstance(e, ObjectRemoved)]
        assert removed.obj.uuid == extra.uuid and removed.obj.name == "gone-meanwhile"
        assert not [e for e in told if isinstance(e, ObjectAdded)]  # the others were there all along
        assert sorted(d.name for d in console.domains) == sorted(d.name for d in second.hypervisor.list_domains())

        console.domains.get("web1").suspend()  # served by the new agent
        assert console.wait_for(lambda: console.domains.get("web1").state == PAUSED, timeout=5)
    finally:
        console.close()
        for agent in (first, second):
            if agent is not None:
                agent.kill()


def test_a_console_started_while_the_agent_is_down_fails_at_once() -> None:
    """Nothing listens there: start() does not retry until its timeout (the CLI's "unreachable" is quick)."""
    console = Console([f"amqp://127.0.0.1:{free_port()}"], timeout=10)
    began = time.monotonic()
    with pytest.raises(NotConnectedError, match="Connection refused"):
        console.start()
    assert time.monotonic() - began < 2
