"""An agent whose first load failed is loaded again at its next heartbeat (virtq-fleet: on a saturated
machine, 1,000 agents' first loads timed out and those agents stayed without objects for good)."""

from __future__ import annotations

import threading
import time
from typing import List, Optional

import pytest

from virtq.console import Console
from virtq.schema import errors
from virtq.schema.codec import AgentInfo, QueryRequest, WireMessage, decode, now_ns
from virtq.transport.base import Deliver, StateListener, Transport

AGENT = "libvirt.org:virtq:fleet-00007"


class Silent(Transport):
    """Records what the console sends; never answers."""

    def __init__(self) -> None:
        self.sent: List[WireMessage] = []
        self.lock = threading.Lock()

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        pass

    def send(self, message: WireMessage) -> None:
        with self.lock:
            self.sent.append(message)

    def stop(self, timeout: float = 5.0) -> None:
        pass

    @property
    def reply_address(self) -> str:
        return "replies"

    @property
    def connected(self) -> bool:
        return True

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
