"""An agent whose first load failed is loaded again at its next heartbeat (virtq-fleet: on a saturated
machine, 1,000 agents' first loads timed out and those agents stayed without objects for good)."""

from __future__ import annotations

import time

import pytest

from virtq.console import Console
from virtq.schema import errors
from virtq.schema.codec import AgentInfo, QueryRequest, decode, now_ns

from ..helpers import RecordingTransport

AGENT = "libvirt.org:virtq:fleet-00007"


class Silent(RecordingTransport):
    def queries(self) -> int:
        with self.lock:
            return sum(1 for w in self.sent if isinstance(decode(w), QueryRequest))


def test_an_agent_whose_first_load_failed_is_loaded_at_its_next_heartbeat() -> None:
    console = Console(timeout=0.2)
    transport = Silent()
    info = AgentInfo(AGENT, 3, 1, now_ns())
    with pytest.raises(errors.CallTimeoutError):
        console._load_agent(info, "url", transport)  # the first load: no answer in time
    assert transport.queries() == 1 and console.agents.by_name(AGENT) is not None
    console._heartbeat(info, "url", transport)  # known, same epoch, not lost: only the failed load to repair
    deadline = time.monotonic() + 2
    while transport.queries() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert transport.queries() == 2
    # a retry still running is not doubled by the next heartbeat
    console._resyncing.add(AGENT)
    console._heartbeat(info, "url", transport)
    time.sleep(0.3)
    assert transport.queries() == 2
    console._resyncing.discard(AGENT)
    # once loaded, heartbeats load nothing
    console._loaded.add(AGENT)
    console._heartbeat(info, "url", transport)
    time.sleep(0.3)
    assert transport.queries() == 2
    console.close()
