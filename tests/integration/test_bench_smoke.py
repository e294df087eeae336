"""The benchmarks keep working: each main() runs with tiny parameters; only functional results are
checked (what was pushed, fetched and delivered), never timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import event_latency, fleetxml, push_vs_poll

pytestmark = pytest.mark.integration


def test_fleetxml_generates_the_requested_mix(tmp_path: Path) -> None:
    import libvirt

    path = tmp_path / "node.xml"
    spec = fleetxml.write_node_xml(path, "h1", running=3, paused=2, shutoff=1)
    conn = libvirt.open(fleetxml.node_uri(path))
    try:
        states = {d.UUIDString(): d.info()[0] for d in conn.listAllDomains(0)}
    finally:
        conn.close()
    assert states == {d.uuid: d.state for d in spec.domains}
    assert sorted(states.values()) == [1, 1, 1, 3, 3, 5]
    other = fleetxml.plan("h2", running=3, paused=2, shutoff=1)
    assert not {d.uuid for d in other.domains} & set(states)  # hosts of a fleet never collide


def test_push_vs_poll(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "push.json"
    code = push_vs_poll.main(["--running", "3", "--paused", "1", "--shutoff", "1", "--interval", "0.3",
                              "--intervals", "4", "--cycles", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert code == 0, printed
    assert result["problems"] == []
    push, poll = result["push"], result["poll"]
    assert push["passes"] >= 4
    assert push["running_rows_per_pass"] == 3  # every running VM's cpuTime changes at every pass
    assert push["idle_rows"] == 0 and push["bytes_per_idle_vm"] == 0  # unchanged idle VMs cost nothing
    assert push["xml_fetches"] == 0 and push["xml_reads"] > 0  # read from the cache, never fetched
    assert push["cold_xml_fetches"] == 5
    assert set(push["breakdown"]) == {"stats/Domain"}  # nothing else on the wire in steady state
    assert poll["xml_fetches"] == 5 * 2
    assert poll["breakdown"]["sent method_request/getInfo"][0] == 5 * 2
    assert result["ratio"] > 1
    assert "poll/push" in printed


def test_event_latency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "latency.json"
    code = event_latency.main(["--cycles", "10", "--rtt", "5", "--warmup", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert code == 0, printed
    assert result["problems"] == []
    assert result["received"] == 20 and result["missing"] == 0 and result["overflowed"] == 0
    assert result["total"]["samples"] == 20 and result["rtt"]["samples"] == 5
    assert "p99" in printed
