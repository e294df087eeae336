"""virtq-fleet on a small fleet: real agents in a worker process, the push console and the poll baseline
in processes of their own, churn on the hosts; both consoles end with exactly libvirt's domains and
states (the workers read libvirt through each agent's own connection), so they agree with each other.
Timings are never asserted: only that the numbers were measured and what must be zero is."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from bench.fleetsim import Fleet, FleetOptions
from bench.fleetsim.cli import main
from bench.fleetsim.metering import cpu_seconds, rss_bytes, tcp_bytes

pytestmark = pytest.mark.integration


def test_small_fleet_push_and_poll_agree_with_libvirt(tmp_path: Path) -> None:
    options = FleetOptions(agents=5, domains=10, duration=3.0, poll_duration=3.0, interval=1.0, heartbeat=1.0,
                           churn=8.0, per_process=3, warmup=1.0, workdir=str(tmp_path / "fleet"), live=False,
                           settle=10.0)
    fleet = Fleet(options, out=io.StringIO())
    try:
        result = fleet.run()
    finally:
        fleet.close()
    assert not [p.name for p in fleet.children() if p.process.is_alive()]  # no orphans
    assert result.problems == [], result.report()
    assert len(fleet.workers) == 2 and result.agents == 5
    # the check ran on the final state: churn defined and undefined domains, and both consoles saw it
    truth = fleet.truth
    assert len(truth) == 5 and all(truth.values())
    assert fleet.push_diff == [] and fleet.poll_diff == []
    assert sorted({tuple(v) for host in truth.values() for v in host.values()}) != []
    push, poll = result.push_numbers(), result.poll_numbers()
    assert result.push["agents_side"]["churn"] > 0 and result.push["agents_side"]["events"] > 0
    assert result.push["samples"] > 0 and push["lag_sub_p99"] >= 0 and not math.isnan(push["lag_repo_p50"])
    assert push["xml_fetches"] <= push["config_changes"]  # fetched only when configuration changed
    assert poll["xml_fetches_per_cycle"] > 0 and result.poll is not None and result.poll["cycles"] >= 2
    assert push["bytes_per_interval"] > 0 and poll["bytes_per_cycle"] > push["bytes_per_interval"]
    assert push["libvirt_calls_per_interval_per_agent"] > 0
    text = result.report()
    assert "poll/push" in text and "lag sample → subscriber p99" in text
    json.dumps(result.to_json(), default=str)


def test_cli_refuses_direct_fleets_beyond_select(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--agents", "1000", "--via", "direct"]) == 2
    assert "rabbitmq" in capsys.readouterr().err
    assert main(["--agents", "3", "--via", "rabbitmq"]) == 2  # a broker needs its URL


def test_process_meters_read_proc_and_tcp_info() -> None:
    import socket

    assert cpu_seconds() > 0 and rss_bytes() > 1_000_000
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        before = tcp_bytes()
        client.sendall(b"x" * 1000)
        assert len(peer.recv(4096)) > 0
        peer.sendall(b"y" * 500)
        client.recv(4096)
        after = tcp_bytes()
        # both ends are in this process: each side's bytes are counted once as sent and once as received
        assert after[0] - before[0] >= 1500 and after[1] - before[1] >= 1500
    finally:
        for s in (client, peer, server):
            s.close()
