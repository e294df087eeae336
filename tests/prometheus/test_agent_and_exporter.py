"""virtq's metrics as Prometheus sees them (issue 13, item 3): a virtq-agent process on test:///default with
``--metrics-listen`` and a ``virtq exporter --listen`` process following it, both scraped by the session's
private Prometheus; what they serve is read back through its HTTP API, names as docs/OPERATIONS.md fixes them.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

import pytest

from virtq.testing import WaitTimeout, free_port, wait_until
from virtq.testing.processes import log_tails
from virtq.testing.prometheus import PrometheusServer, Sample

from ..helpers import VIRTQ, agent_process, process_env, run_process, stop_process
from .conftest import ScrapeJob, value_is
from .sample_alerts import ALERTS, alert_expressions

RUNNING, PAUSED = 1, 3  # virDomainState
METRICS_URL = re.compile(r"http://(127\.0\.0\.1:\d+)/metrics")


@dataclass
class Fleet:
    """One agent and one exporter, each scraped under a job of the test's."""

    agent_url: str
    agent_job: str
    exporter_job: str
    agent: "subprocess.Popen[bytes]"
    agent_log: Path


def served_address(log_path: Path, what: str) -> str:
    """The ``127.0.0.1:PORT`` of the metrics URL a process logged (it listens on port 0: a free one)."""
    found = wait_until(lambda: METRICS_URL.search(log_path.read_text()), timeout=20,
                       message=f"{what} logging its metrics URL in {log_path}")
    assert found is not None  # (wait_until returns a true value)
    return found.group(1)


@contextlib.contextmanager
def exporter_process(url: str, tmp_path: Path) -> Iterator[Path]:
    """``virtq -u URL exporter --listen 127.0.0.1:0`` until the test ends; yields its log."""
    log_path = tmp_path / "exporter.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([str(VIRTQ), "-u", url, "exporter", "--listen", "127.0.0.1:0"],
                                stdout=log_file, stderr=log_file, cwd=tmp_path, env=process_env())
    try:
        yield log_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def wait_scraped(prometheus: PrometheusServer, job: str, log_path: Path) -> None:
    """Until Prometheus reached the job's target (else fail with the log of what should serve it)."""
    try:
        prometheus.wait_for(f'up{{job="{job}"}}', value_is(1))
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}\n{log_tails([log_path], job)}") from None


@pytest.fixture
def fleet(prometheus: PrometheusServer, scrape_job: ScrapeJob, tmp_path: Path) -> Iterator[Fleet]:
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    args = ["--libvirt", "test:///default", "--listen", url, "--metrics-listen", "127.0.0.1:0", "--heartbeat", "1",
            "--interval", "1", "--state-dir", str(tmp_path / "state")]
    with agent_process(args, port, tmp_path) as (agent, agent_log), exporter_process(url, tmp_path) as exporter_log:
        agent_job = scrape_job([served_address(agent_log, "virtq-agent")])
        exporter_job = scrape_job([served_address(exporter_log, "virtq exporter")])
        wait_scraped(prometheus, agent_job, agent_log)
        wait_scraped(prometheus, exporter_job, exporter_log)
        yield Fleet(url, agent_job, exporter_job, agent, agent_log)


def one(samples: List[Sample]) -> Sample:
    assert len(samples) == 1, samples
    return samples[0]


def test_prometheus_sees_the_agent_and_the_domain(prometheus: PrometheusServer, fleet: Fleet) -> None:
    agent = f'job="{fleet.agent_job}"'
    prometheus.wait_for(f"virtq_agent_up{{{agent}}}", value_is(1))
    assert one(prometheus.query(f"virtq_agent_libvirt_connected{{{agent}}}")).value == 1
    assert one(prometheus.query(f"virtq_agent_transport_connected{{{agent}}}")).value == 1
    assert one(prometheus.query(f'virtq_agent_objects{{{agent}, class="Domain"}}')).value == 1
    info = one(prometheus.query(f"virtq_agent_info{{{agent}}}")).labels
    assert info["libvirt_uri"] == "test:///default" and info["agent"] and info["version"]
    assert one(prometheus.query(f'process_resident_memory_bytes{{{agent}}}')).value > 0

    exporter = f'job="{fleet.exporter_job}"'
    state = one(prometheus.wait_for(f'libvirt_domain_info_state{{{exporter}, domain="test"}}'))
    assert state.value == RUNNING and state.labels["uuid"] and state.labels["host"]
    assert one(prometheus.query(f'libvirt_domain_info_virtual_cpus{{{exporter}, domain="test"}}')).value >= 1
    fleet_agent = one(prometheus.wait_for(f"virtq_fleet_agent_up{{{exporter}}}", value_is(1))).labels
    assert fleet_agent["agent"] == info["agent"]
    assert one(prometheus.query(f"libvirt_up{{{exporter}}}")).value == 1
    assert one(prometheus.query(f"libvirt_domains{{{exporter}}}")).value == 1


def test_a_suspend_through_virtq_shows_as_paused_at_a_later_scrape(prometheus: PrometheusServer, fleet: Fleet,
                                                                   tmp_path: Path) -> None:
    state = f'libvirt_domain_info_state{{job="{fleet.exporter_job}", domain="test"}}'
    prometheus.wait_for(state, value_is(RUNNING))
    done = run_process([str(VIRTQ), "-u", fleet.agent_url, "--timeout", "5", "call", "domain", "test", "suspend"],
                       tmp_path)
    assert done.returncode == 0, done.stderr
    prometheus.wait_for(state, value_is(PAUSED))
    prometheus.wait_for(f'virtq_agent_requests_total{{job="{fleet.agent_job}", method="suspend", outcome="ok"}}',
                        value_is(1))


def test_every_series_the_sample_alerts_use_is_served(prometheus: PrometheusServer, fleet: Fleet,
                                                     tmp_path: Path) -> None:
    """Alerts on a name nobody serves never fire: the names contrib/prometheus/virtq-alerts.yml uses are
    the agent's and the exporter's (once each has something to count: a request, a sampler pass)."""
    used = set(re.findall(r"\b(?:virtq|libvirt)_\w+", " ".join(alert_expressions(ALERTS.read_text()))))
    assert used, ALERTS
    done = run_process([str(VIRTQ), "-u", fleet.agent_url, "--timeout", "5", "call", "domain", "test", "getInfo"],
                       tmp_path)
    assert done.returncode == 0, done.stderr
    jobs = f'job=~"{fleet.agent_job}|{fleet.exporter_job}"'
    for name in sorted(used):
        prometheus.wait_for(f'{{__name__="{name}", {jobs}}}', timeout=20)


def test_a_stopped_agent_is_down_for_prometheus_and_for_the_exporter(prometheus: PrometheusServer,
                                                                     fleet: Fleet) -> None:
    prometheus.wait_for(f'virtq_fleet_agent_up{{job="{fleet.exporter_job}"}}', value_is(1))
    stop_process(fleet.agent, fleet.agent_log)
    prometheus.wait_for(f'up{{job="{fleet.agent_job}"}}', value_is(0))
    prometheus.wait_for(f'virtq_fleet_agent_up{{job="{fleet.exporter_job}"}}', value_is(0), timeout=30)
