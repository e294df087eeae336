"""A rogue agent claiming an honest agent's name, over a real connection, against a real console (issue 10,
item 3): it is not believed, and when the honest agent dies the console says so although the rogue's
heartbeats in its name keep coming."""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.testing import agent_url, wait_until
from virtq.transport import direct_connection

from ..helpers import NODE_URI, run_cli

pytestmark = pytest.mark.integration


def test_a_rogue_agent_cannot_speak_for_an_honest_one(start_agent: Callable[..., Agent],
                                                       connect: Callable[..., Console]) -> None:
    honest = start_agent(NODE_URI, instance="hv01")
    rogue = start_agent(NODE_URI, instance="hv01")  # the same name: its objects, its heartbeats are "hv01"'s
    console = connect(honest)
    threads = threading.active_count()
    before = {d.object_id.object_name: d.values for d in console.domains}
    assert before and console.agents.get("hv01").url == console.connections[0][0]

    url = agent_url(rogue)
    transport = direct_connection(url)
    console.attach(url, transport, timeout=5)
    wait_until(lambda: console.untrusted > 0, 5)  # its heartbeats in hv01's name are dropped
    assert not console.is_lost(honest.name)
    assert {d.object_id.object_name: d.values for d in console.domains} == before
    assert run_cli(["agents"], obj=console).output.splitlines()[1].endswith(" ok")

    honest.kill()
    started = time.monotonic()
    assert wait_until(lambda: console.is_lost(honest.name), 6), "the rogue's heartbeats kept hv01 alive"
    assert time.monotonic() - started < 6
    assert run_cli(["agents"], obj=console).output.splitlines()[1].endswith(" lost")
    assert threading.active_count() <= threads + 1  # the rogue's connection: no thread per message or agent
