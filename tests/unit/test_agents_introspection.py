"""`virtq agents` introspection (issue 13, item 4), console side: what AgentView makes of a heartbeat's
version, reconnects and object counts, the table's cells, and an agent whose schema hash differs from the
console's (a fake agent on a recording transport) — one WARNING, ``schema_mismatch``, a CLI warning line."""

from __future__ import annotations

import json
import logging

import pytest

from virtq.console import AgentView, Console
from virtq.console.cli._agents import age, agent_row, text_row
from virtq.schema.codec import AgentHeartbeat, AgentInfo, now_ns
from virtq.testing import RecordingTransport, wait_until

from ..helpers import run_cli
from .fake_agents import answer_load, feed, follow

HV01 = "libvirt.org:virtq:hv01"
OTHER_HASH = "00000000-1111-2222-3333-444444444444"


def view(**attributes: object) -> AgentView:
    return AgentView(HV01, 3, 10, "hv01", "test:///default", "url", 100.0, attributes)


def test_the_view_reads_what_heartbeats_say_and_tolerates_what_they_do_not() -> None:
    agent = view(version="0.1.0", hypervisor_reconnects=2, reconnects=1,
                 objects={"Domain": 40, "Pool": 1, "Volume": -1, "Node": True, "Secret": "many"})
    assert agent.version == "0.1.0" and agent.libvirt_reconnects == 2 and agent.transport_reconnects == 1
    assert agent.objects == {"Domain": 40, "Pool": 1}  # negative, bool and text counts left out
    assert agent.heartbeat_age(102.5) == 2.5 and agent.heartbeat_age(99.0) == 0.0
    older = view()  # an older agent says none of it
    assert (older.version, older.libvirt_reconnects, older.objects) == ("", None, {})
    assert view(version=7, objects=[1]).version == "" and view(objects=[1]).objects == {}


@pytest.mark.parametrize("seconds, shown", [(0.4, "0s"), (2.0, "2s"), (119.0, "119s"), (300.0, "5m"),
                                            (10_800.0, "3h")])
def test_heartbeat_age_in_one_word(seconds: float, shown: str) -> None:
    assert age(seconds) == shown


def test_table_cells_say_dash_for_what_an_agent_does_not_say() -> None:
    console = Console(timeout=1)
    try:
        row = agent_row(console, view(hypervisor_reconnects=0, objects={"Domain": 4}), 102.0)
        assert row["libvirt"] == "connected" and row["libvirt_connected"] is True and row["heartbeat_age"] == 2.0
        cells = text_row(row)
        assert (cells["heartbeat"], cells["reconnects"], cells["domains"], cells["pools"], cells["version"]) == \
            ("2s", 0, 4, "-", "-")
        down = agent_row(console, view(libvirt_connected=False), 100.0)
        assert down["libvirt"] == "disconnected" and down["libvirt_connected"] is False
        assert agent_row(console, view(libvirt="unresponsive"), 100.0)["libvirt"] == "unresponsive"
    finally:
        console.close()


def heartbeat(schema_hash: str) -> AgentHeartbeat:
    return AgentHeartbeat(AgentInfo(HV01, 1, 1, now_ns(), schema_hash, attributes={"hostname": "hv01"}), agent=HV01)


def test_a_schema_mismatch_warns_once_and_shows(caplog: pytest.LogCaptureFixture) -> None:
    console = Console(timeout=2)
    transport = RecordingTransport()
    caplog.set_level(logging.WARNING, logger="virtq.console")
    feed(console, transport, heartbeat(OTHER_HASH))
    answer_load(console, transport, HV01, [])
    wait_until(lambda: HV01 in console.loading.loaded, 5)
    feed(console, transport, heartbeat(OTHER_HASH))
    agent = console.agents.get(HV01)
    assert agent.schema_mismatch and agent.schema_hash == OTHER_HASH
    warnings = [r for r in caplog.records if "uses schema" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # once, not per heartbeat
    assert OTHER_HASH in warnings[0].getMessage() and console.schema.hash in warnings[0].getMessage()

    result = run_cli(["agents"], obj=console)
    assert result.exit_code == 0, result.output
    assert f"warning: agent {HV01} uses schema {OTHER_HASH}" in result.stderr
    assert result.stdout.splitlines()[1].split()[0] == HV01  # the table itself is as usual
    (row,) = json.loads(run_cli(["--json", "agents"], obj=console).stdout)
    assert row["schema_mismatch"] is True and row["schema_hash"] == OTHER_HASH
    console.close()


def test_a_matching_or_absent_schema_hash_is_no_mismatch(caplog: pytest.LogCaptureFixture) -> None:
    console = Console(timeout=2)
    transport = RecordingTransport()
    caplog.set_level(logging.WARNING, logger="virtq.console")
    follow(console, transport, HV01, [])  # an older agent: no hash
    assert not console.agents.get(HV01).schema_mismatch
    feed(console, transport, heartbeat(console.schema.hash))
    assert not console.agents.get(HV01).schema_mismatch
    assert run_cli(["agents"], obj=console).stderr == ""
    assert not [r for r in caplog.records if "uses schema" in r.getMessage()]
    console.close()
