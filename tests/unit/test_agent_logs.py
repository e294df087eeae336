"""The agent's logs cannot be flooded or forged by what a peer sends (issue 10, item 4, agent side)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import pytest

from virtq.agent import Agent
from virtq.agent import agent as agent_module
from virtq.agent import dispatcher as dispatcher_module
from virtq.agent.policy import Policy
from virtq.logs import RateLimited
from virtq.schema import default_schema
from virtq.schema.codec import ExceptionResponse, WireMessage, direct_address
from virtq.testing import FakeHypervisor, wait_until
from virtq.transport import MemoryBus

from .qmf_client import Client

SCHEMA = default_schema()


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for module in (agent_module, dispatcher_module):  # fresh windows: other tests' lines do not count here
        monkeypatch.setattr(module, "limited", RateLimited(module.log))
    bus = MemoryBus()
    agent = Agent(SCHEMA, FakeHypervisor.with_running_domains(12), bus.agent_transport(), heartbeat=60, interval=60,
                  slow_interval=60, reconcile=600, state_dir=tmp_path, policy=Policy.everyone(SCHEMA, "admin", "t"))
    agent.start()
    yield Client(bus.console_transport(), agent)
    agent.stop()
    bus.close()


def test_refused_messages_are_one_escaped_line_per_window_with_the_detail_at_debug(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    forged = "reply\nFORGED 2026-01-01 ERROR virtq.agent: all is lost" + "x" * 5000
    with caplog.at_level(logging.DEBUG, logger="virtq.agent"):
        for i in range(200):
            client.transport.send(WireMessage(direct_address(client.agent.name), {"qmf.opcode": "_bogus\n"}, {}, "",
                                              f"b{i}", client.transport.reply_address if i else forged))
        for i in range(1, 200):
            (refused,) = client.answer(f"b{i}")
            assert isinstance(refused, ExceptionResponse)  # every one still answered
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "virtq.agent.agent"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    details = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused message")]
    assert len(details) == 200
    for record in caplog.records:
        text = record.getMessage()
        assert "\n" not in text and len(text) < 4000 and not record.exc_info, text[:200]
    assert any("reply\\nFORGED" in r.getMessage() for r in caplog.records)


def test_a_failing_call_flood_is_rate_limited(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    def unknown(i: int) -> Any:
        return client.call(f"{i + 1:08d}-0000-4000-8000-000000000000", "getInfo")

    with caplog.at_level(logging.INFO, logger="virtq.agent"):
        cids = [unknown(i) for i in range(50)]
        for cid in cids:
            (answer,) = client.answer(cid)
            assert isinstance(answer, ExceptionResponse)
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("method getInfo")]
    assert len(failed) == 1 and "no such object" in failed[0], failed
    wait_until(lambda: not client.agent.apartments.busy())
