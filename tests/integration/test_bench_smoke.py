"""The benchmarks keep working: each main() runs with tiny parameters; only functional results are
checked (what was pushed, fetched and delivered), never timings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

from bench import event_latency, exporter_scrape, fleetxml, ingest, push_vs_poll
from bench.ingest import cli as ingest_cli

pytestmark = pytest.mark.integration

Main = Callable[[Optional[Sequence[str]]], int]


def run_main(main: Main, args: List[str], tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> Tuple[Dict[str, Any], str]:
    """A benchmark's main() with ``--json``: its JSON result and what it printed; it must have found no problem."""
    out = tmp_path / "result.json"
    code = main(args + ["--json", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert code == 0, printed
    assert result["problems"] == []
    return result, printed


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
    result, printed = run_main(push_vs_poll.main, ["--running", "3", "--paused", "1", "--shutoff", "1", "--interval",
                                                   "0.3", "--intervals", "4", "--cycles", "2"], tmp_path, capsys)
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
    result, printed = run_main(event_latency.main, ["--cycles", "10", "--rtt", "5", "--echo", "5", "--warmup", "2"],
                               tmp_path, capsys)
    assert result["received"] == 20 and result["missing"] == 0 and result["overflowed"] == 0
    assert result["total"]["samples"] == 20 and result["rtt"]["samples"] == 5 and result["echo"]["samples"] == 5
    assert result["rtt_over_echo"] > 0 and result["event_over_echo"] > 0
    assert "p99" in printed and "bare proton echo" in printed


def test_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, printed = run_main(ingest_cli.main, ["--agents", "2", "--domains", "40", "--batches", "10,40",
                                                 "--subscribers", "0,2", "--seconds", "0.2", "--warmup", "0.1"],
                               tmp_path, capsys)
    runs = {(r["encoding"], r["rows"], r["subscribers"]): r for r in result["runs"]}
    assert set(runs) == {(e, b, s) for e in ("new", "old") for b in (10, 40) for s in (0, 2)}
    for run in runs.values():
        assert run["messages"] > 0 and run["applied"] == run["records"] > 0  # every row sent was applied
        assert run["rate"] > 0 and run["cpu"] > 0
        assert (run["events"] > 0) == (run["subscribers"] > 0) and run["dropped"] == 0
    for encoding in ("new", "old"):
        sizes = {s["rows"]: s for s in result["sizes"][encoding]}
        assert 0 < sizes[40]["fixed"] < sizes[40]["message"]
        assert sizes[40]["per_vm"] < sizes[10]["per_vm"]  # the fixed part spread over more rows
    assert "new/old" in printed and ingest.__doc__


def test_ingest_paced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, printed = run_main(ingest_cli.main,
                               ["--rate", "40", "--agents", "2", "--domains", "10", "--seconds", "0.5"], tmp_path, capsys)
    runs = {r["kind"]: r for r in result["paced"]}
    assert list(runs) == ["idle", "heartbeat", "stats", "mix"]  # idle first: the others are measured against it
    assert (runs["idle"]["heartbeats"], runs["idle"]["stats"]) == (0, 0)
    assert (runs["heartbeat"]["heartbeats"], runs["heartbeat"]["stats"], runs["heartbeat"]["heard"]) == (20, 0, 2)
    assert runs["stats"]["stats"] == 20 and runs["stats"]["applied"] == runs["stats"]["records"] == 20 * 10
    assert (runs["mix"]["heartbeats"], runs["mix"]["stats"], runs["mix"]["applied"]) == (10, 10, 100)
    assert all(runs[k]["cpu"] > 0 and math.isfinite(runs[k]["us_per_message"]) for k in ("heartbeat", "stats", "mix"))
    assert "µs CPU / message" in printed


def test_exporter_scrape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, printed = run_main(exporter_scrape.main, ["--domains", "100", "--repeat", "1", "--openmetrics"],
                               tmp_path, capsys)
    assert (result["agents"], result["compared"]) == (3, True)  # the two writers' samples were compared
    assert len(result["seconds"]) == 8 and 0 < result["bytes"]["gzipped"] < result["bytes"]["text"]
    assert "same samples" in printed
