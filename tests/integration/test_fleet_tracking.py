"""Direct mode fleet tracking with real agents on libvirt's test driver: a URL whose agent is down at start
joins when the agent comes up (no console restart), URLs are added and removed at run time, and two agents
answering with one name are reported (AgentConflict) instead of merged."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console
from virtq.console.cli._watch import Watcher
from virtq.console.events import AgentAdded, AgentConflict, AgentLost, AgentRestarted, Event
from virtq.schema import default_schema
from virtq.testing import agent_url, free_port, next_event, wait_until
from virtq.transport import DirectListener

from ..helpers import NODE_URI

pytestmark = pytest.mark.integration


@pytest.fixture
def late_agents(tmp_path: Path) -> Iterator[Callable[[str, str], Agent]]:
    """Start an agent on a URL chosen before it runs (the console has it first); all killed after the test."""
    with contextlib.ExitStack() as started:
        def start(url: str, instance: str) -> Agent:
            agent = Agent(default_schema(), LibvirtHypervisor(NODE_URI), DirectListener(url), instance=instance,
                          state_dir=tmp_path / instance, heartbeat=0.2, interval=30)
            agent.start()
            started.callback(agent.kill)
            return agent

        yield start


def test_a_url_down_at_start_joins_when_its_agent_comes_up(start_agent: Callable[..., Agent],
                                                           late_agents: Callable[[str, str], Agent]) -> None:
    first = start_agent(NODE_URI, heartbeat=0.2, instance="first")
    late_url = f"amqp://127.0.0.1:{free_port()}"
    console = Console([agent_url(first), late_url], timeout=5)
    try:
        console.start()
        assert late_url in console.unreachable and console.redialing == [late_url]
        added = console.subscribe(kinds=AgentAdded)
        time.sleep(2.5)
        late = late_agents(late_url, "late")
        event = next_event(added, AgentAdded, lambda e: e.agent.name == late.name, timeout=15)
        assert event.agent.url == late_url
        assert console.wait_for(lambda: len(console.scope(late.name).domains) == 4, timeout=5)
        assert late_url not in console.unreachable
        wait_until(lambda: console.redialing == [])  # right after its join returns
    finally:
        console.close()


def test_urls_added_and_removed_at_run_time(start_agent: Callable[..., Agent],
                                            late_agents: Callable[[str, str], Agent]) -> None:
    first = start_agent(NODE_URI, heartbeat=0.2, instance="first")
    second = start_agent(NODE_URI, heartbeat=0.2, instance="second")
    console = Console([agent_url(first)], timeout=5)
    try:
        console.start()
        events = console.subscribe(kinds=(AgentAdded, AgentLost))
        console.add_urls(agent_url(second))  # connected, located and loaded before it returns
        assert next_event(events, AgentAdded).agent.name == second.name
        assert len(console.scope(second.name).domains) == 4

        console.remove_urls(agent_url(second))
        assert next_event(events, AgentLost).agent.name == second.name
        assert console.is_lost(second.name) and not console.is_lost(first.name)
        assert [url for url, _ in console.connections] == [agent_url(first)]
        with pytest.raises(ValueError, match="not followed"):
            console.remove_urls(agent_url(second))

        console.add_urls(agent_url(second))  # back: the same agent, found again
        assert next_event(events, AgentAdded).agent.name == second.name and not console.is_lost(second.name)

        down = f"amqp://127.0.0.1:{free_port()}"
        console.add_urls(down)  # nothing there yet: retried in the background until it comes up
        assert down in console.unreachable and console.redialing == [down]
        late = late_agents(down, "late")
        assert next_event(events, AgentAdded, timeout=15).agent.name == late.name
        console.remove_urls(down)
        assert next_event(events, AgentLost).agent.name == late.name and console.redialing == []
    finally:
        console.close()


def test_two_agents_with_one_name_are_reported_not_merged(start_agent: Callable[..., Agent]) -> None:
    # both serve tests/data/node.xml: the same host UUID, so the same agent name
    first, twin = start_agent(NODE_URI, heartbeat=0.2), start_agent(NODE_URI, heartbeat=0.2)
    assert first.name == twin.name
    console = Console([agent_url(first), agent_url(twin)], timeout=5)
    told = console.subscribe(kinds=(AgentConflict, AgentRestarted, AgentAdded))
    try:
        console.start()
        time.sleep(2.0)  # 10 heartbeats of each
        events: List[Event] = []
        while (event := told.get(0.1)) is not None:
            events.append(event)
        conflicts = [e for e in events if isinstance(e, AgentConflict)]
        assert len(conflicts) == 1, events  # once per episode
        assert not [e for e in events if isinstance(e, AgentRestarted)]  # no flapping
        (conflict,) = conflicts
        # the first to answer is followed (a heartbeat may come before the other's locate answer)
        followed, other = sorted((first, twin), key=lambda a: agent_url(a) != conflict.agent.url)
        assert len(console.agents) == 1 and console.agents.get(first.name).url == agent_url(followed)
        assert conflict.instances == (f"epoch {followed.epoch} via {agent_url(followed)}",
                                      f"epoch {other.epoch} via {agent_url(other)}")
        assert console.conflicts == {first.name: conflict.instances}
        line = Watcher(console, ()).line(conflict, datetime.now())
        assert "WARNING conflict: 2 agents answer with this name" in line and agent_url(other) in line

        other.kill()  # the episode ends after 3 heartbeat intervals without the other
        wait_until(lambda: not console.conflicts, timeout=5)
    finally:
        console.close()
