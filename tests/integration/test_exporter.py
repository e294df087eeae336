"""``virtq exporter`` end to end: a real agent on test:///default, a real console and Exporter (in-process, and
the ``virtq exporter`` command as a process), scraped over HTTP and parsed as Prometheus parses it."""

from __future__ import annotations

import signal
import socket
import subprocess
from typing import Callable, Iterator, Tuple

import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.console.exporter import Exporter
from virtq.testing import agent_url, wait_until

from ..helpers import DEFAULT_URI, VIRTQ, failed, process_env, virtq
from ..scrape import scrape

pytestmark = pytest.mark.integration

HEARTBEAT = 0.5
"""Seconds between heartbeats: the console declares the agent lost 1.5 s after its last one."""
RUNNING, PAUSED = 1, 3


@pytest.fixture
def agent(start_agent: Callable[..., Agent]) -> Agent:
    """test:///default (one domain, "test", running), sampled every 0.2 s."""
    return start_agent(DEFAULT_URI, interval=0.2, heartbeat=HEARTBEAT)


@pytest.fixture
def console(connect: Callable[..., Console], agent: Agent) -> Console:
    console = connect(agent)
    assert console.wait_for(lambda: all("state" in d.stats for d in console.domains), timeout=5)
    return console


@pytest.fixture
def exporter(console: Console) -> Iterator[Exporter]:
    with Exporter(console, "127.0.0.1", 0) as exporter:
        yield exporter


def test_the_domains_as_getinfo_and_the_console_say(console: Console, exporter: Exporter) -> None:
    (dom,) = list(console.domains)
    host = console.agents.get(dom.agent).hostname
    info = dom.getInfo()
    got = scrape(exporter.url)
    labels = {"host": host, "domain": "test", "uuid": dom.uuid}
    assert [got.value(n, **labels) for n in ("libvirt_domain_info_state", "libvirt_domain_info_virtual_cpus",
                                             "libvirt_domain_info_maximum_memory_bytes",
                                             "libvirt_domain_info_memory_usage_bytes")] \
        == [info["state"], info["nrVirtCpu"], info["maxMem"] * 1024, info["memory"] * 1024] == \
        [RUNNING, dom.nrVirtCpu, dom.maxMem * 1024, dom.memory * 1024]
    cpu = got.value("libvirt_domain_info_cpu_time_seconds_total", **labels)
    assert cpu is not None and cpu > 0
    assert cpu * 1e9 == pytest.approx(console.lookup(dom.object_id).cpuTime, rel=0.01)


def test_a_suspend_shows_at_the_next_scrape(console: Console, exporter: Exporter) -> None:
    dom = console.domains.get("test")
    dom.suspend()
    try:
        wait_until(lambda: scrape(exporter.url).value("libvirt_domain_info_state", domain="test") == PAUSED,
                   timeout=5, message="libvirt_domain_info_state 3 after suspend")
    finally:
        dom.resume()
    wait_until(lambda: scrape(exporter.url).value("libvirt_domain_info_state", domain="test") == RUNNING, timeout=5)


def test_the_agent_rows(agent: Agent, console: Console, exporter: Exporter) -> None:
    view = console.agents.get(agent.name)
    assert view.hostname
    got = scrape(exporter.url)
    row = {"host": view.hostname, "agent": agent.name}
    assert [got.value(n, **row) for n in ("libvirt_up", "libvirt_domains", "virtq_fleet_agent_up",
                                          "virtq_fleet_agent_epoch")] == [1, 1, 1, agent.epoch]
    age = got.value("virtq_fleet_agent_last_heartbeat_age_seconds", **row)
    assert age is not None and 0 <= age < 3 * HEARTBEAT
    assert got.value("virtq_exporter_agents") == 1
    records = got.value("virtq_exporter_stats_records_total")
    assert records is not None
    wait_until(lambda: (scrape(exporter.url).value("virtq_exporter_stats_records_total") or 0) > records, timeout=5,
               message="more statistics records applied")  # the domain's cpuTime moves every 0.2 s sample


def test_a_stopped_agent_is_down_once_the_console_says_it_is_gone(agent: Agent, console: Console,
                                                                    exporter: Exporter) -> None:
    agent.kill()
    wait_until(lambda: scrape(exporter.url).value("virtq_fleet_agent_up", agent=agent.name) == 0, timeout=10,
               message="virtq_fleet_agent_up 0 after the agent stopped")
    assert console.is_lost(agent.name)
    got = scrape(exporter.url)
    assert got.value("libvirt_up", agent=agent.name) == 0 and got.value("libvirt_domains", agent=agent.name) == 1
    assert got.labels("libvirt_domain_info_state") == []  # its domains' state is no longer known
    age = got.value("virtq_fleet_agent_last_heartbeat_age_seconds", agent=agent.name)
    assert age is not None and age >= 3 * HEARTBEAT


# --- the command ---------------------------------------------------------------------------------------------

def exporter_process(agent: Agent, listen: str) -> Tuple["subprocess.Popen[str]", str]:
    """``virtq -u URL exporter --listen LISTEN`` and the URL it says it serves."""
    proc = subprocess.Popen([str(VIRTQ), "-u", agent_url(agent), "exporter", "--listen", listen],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=process_env())
    assert proc.stdout is not None
    line = proc.stdout.readline().rstrip("\n")
    words = line.split()
    if words[:1] != ["exporting"] or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"{line!r}; {proc.communicate()[1]}")
    assert words[:3] == ["exporting", "1", "agents"] and words[3] == "on" and words[4].endswith("/metrics"), line
    return proc, words[4]


def ends(proc: "subprocess.Popen[str]", signal_number: int) -> Tuple[int, str]:
    proc.send_signal(signal_number)
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_until_a_signal(agent: Agent, signal_number: int) -> None:
    proc, url = exporter_process(agent, "127.0.0.1:0")
    try:
        assert url.startswith("http://127.0.0.1:") and not url.startswith("http://127.0.0.1:0/")
        wait_until(lambda: scrape(url).value("libvirt_domain_info_state", domain="test") == RUNNING, timeout=5,
                   message="the domain's state scraped")
        assert scrape(url).value("virtq_fleet_agent_up", agent=agent.name) == 1
    finally:
        code, err = ends(proc, signal_number)
    assert code == 0 and err == "", err


def test_the_command_warns_when_it_listens_beyond_loopback(agent: Agent) -> None:
    proc, url = exporter_process(agent, "0.0.0.0:0")
    port = url.rsplit(":", 1)[1].split("/")[0]
    try:
        assert scrape(f"http://127.0.0.1:{port}/metrics").value("virtq_exporter_agents") == 1
    finally:
        code, err = ends(proc, signal.SIGTERM)
    assert code == 0
    (warning,) = err.splitlines()
    assert warning.startswith("warning: ") and "not authenticated" in warning and "domain names" in warning


def test_the_command_refuses_an_address_it_cannot_have(agent: Agent, connect: Callable[..., Console]) -> None:
    assert "--listen" in failed(virtq("exporter", "--listen", "nowhere", obj=connect(agent)), 2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = failed(virtq("exporter", "--listen", f"127.0.0.1:{port}", obj=connect(agent)), 1)
    assert f"cannot listen on 127.0.0.1:{port}" in message
