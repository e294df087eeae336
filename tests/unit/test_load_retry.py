"""An agent whose first load failed is loaded again at its next heartbeat (virtq-fleet: on a saturated
machine, 1,000 agents' first loads timed out and those agents stayed without objects for good)."""

from __future__ import annotations

import time

import pytest

from virtq.console import Console
from virtq.schema import errors
from virtq.schema.codec import AgentInfo, QueryRequest, now_ns
from virtq.testing import RecordingTransport, wait_until

AGENT = "libvirt.org:virtq:fleet-00007"


def test_an_agent_whose_first_load_failed_is_loaded_at_its_next_heartbeat() -> None:
    console = Console(timeout=0.2)
    transport = RecordingTransport()  # it never answers

    def queries() -> int:
        return len(transport.messages(QueryRequest))

    info = AgentInfo(AGENT, 3, 1, now_ns())
    with pytest.raises(errors.CallTimeoutError):
        console.loading.load(info, "url", transport)  # the first load: no answer in time
    assert queries() == 1 and console.agents.by_name(AGENT) is not None
    console.loading.heartbeat(info, "url", transport)  # known, same epoch, not lost: only the failed load to repair
    wait_until(lambda: queries() >= 2, 2)
    assert queries() == 2
    # a retry still running is not doubled by the next heartbeat
    console.loading.reading.add(AGENT)
    console.loading.heartbeat(info, "url", transport)
    time.sleep(0.3)
    assert queries() == 2
    console.loading.reading.discard(AGENT)
    # once loaded, heartbeats load nothing
    console.loading.loaded.add(AGENT)
    console.loading.heartbeat(info, "url", transport)
    time.sleep(0.3)
    assert queries() == 2
    console.close()
