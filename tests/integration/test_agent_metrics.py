"""The agent's Prometheus endpoint, scraped over HTTP: a real agent on libvirt's test driver, real consoles,
the text parsed by prometheus_client's own parser (issue 13 item 3; the names are the metrics contract's)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterator, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from virtq.agent import Agent, Policy
from virtq.schema import default_schema
from virtq.schema.codec import OPCODE, ExceptionResponse, MethodRequest
from virtq.schema.errors import AccessDeniedError
from virtq.testing import DEFAULT_URI, connected_console, free_port, running_agent, wait_until

from ..helpers import VIRTQ_AGENT, agent_process, stop_process
from .rawclient import RawClient

pytestmark = pytest.mark.integration

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


@pytest.fixture
def agent() -> Iterator[Agent]:
    with running_agent(DEFAULT_URI, heartbeat=0.2, interval=0.2, slow_interval=0.2) as agent:
        agent.metrics.serve("127.0.0.1", 0)
        yield agent


def scrape(agent: Agent) -> Samples:
    with urllib.request.urlopen(agent.metrics.url, timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_until(agent: Agent, ready: Callable[[Samples], object]) -> Samples:
    """The first scrape ``ready`` accepts (what hooks count lands just after the reply is handed over)."""
    def scraped() -> Samples:
        samples = scrape(agent)
        return samples if ready(samples) else {}
    return wait_until(scraped)


def requests(agent: Agent, method: str, outcome: str) -> float:
    return value(scrape(agent), "virtq_agent_requests_total", method=method, outcome=outcome)


def test_a_call_counts_as_ok_with_its_duration_and_its_event(agent: Agent) -> None:
    with connected_console(agent) as console:
        domain = console.domains.get("test")
        domain.suspend()
        try:
            wait_until(lambda: requests(agent, "suspend", "ok") == 1)
            samples = scrape_until(agent, lambda s: value(s, "virtq_agent_events_total"))
        finally:
            domain.resume()
    assert value(samples, "virtq_agent_request_duration_seconds_count", method="suspend") == 1
    assert 0 < value(samples, "virtq_agent_request_duration_seconds_sum", method="suspend") < 5
    assert value(samples, "virtq_agent_requests_total", method="_locate", outcome="ok") >= 1
    assert value(samples, "virtq_agent_requests_total", method="_query", outcome="ok") >= 1
    assert value(samples, "virtq_agent_pushes_total", content="events") >= 1
    assert value(samples, "virtq_agent_push_bytes_total", content="events") > 100


def test_a_call_the_policy_denies_counts_as_denied(agent: Agent) -> None:
    agent.set_policy(Policy.everyone(default_schema(), "readonly", "readonly for the test"))
    with connected_console(agent) as console:
        with pytest.raises(AccessDeniedError):
            console.domains.get("test").suspend()
    wait_until(lambda: requests(agent, "suspend", "denied") == 1)
    assert requests(agent, "suspend", "ok") == 0


def test_unknown_methods_and_undecodable_requests_count_under_unknown(agent: Agent) -> None:
    domain = f"Domain:{agent.registry.entries('Domain')[0].key}"
    with RawClient(agent) as client:
        reply = client.request(client.method_wire(domain, "noSuchMethod"))
        assert isinstance(reply, ExceptionResponse) and reply.error_code == 2  # unknown method
        cid = client.send("not a map", {OPCODE: MethodRequest.OPCODE})
        reply = client.reply_for(cid)
        assert isinstance(reply, ExceptionResponse) and reply.error_code == 7  # malformed: refused
    wait_until(lambda: requests(agent, "_unknown", "error") == 1)
    wait_until(lambda: requests(agent, "_unknown", "refused") == 1)
    assert value(scrape(agent), "virtq_agent_request_duration_seconds_count", method="_unknown") == 2


def test_the_state_is_read_at_each_scrape(agent: Agent) -> None:
    with connected_console(agent):
        samples = scrape_until(agent, lambda s: value(s, "virtq_agent_push_bytes_total", content="heartbeat") and value(
            s, "virtq_agent_sampler_pass_duration_seconds_count", kind="slow"))
        assert value(samples, "virtq_agent_consoles_connected") == 1
    info = {dict(labels)["agent"]: dict(labels) for (name, labels) in samples if name == "virtq_agent_info"}
    assert info[agent.name]["libvirt_uri"] == DEFAULT_URI and info[agent.name]["instance"] == agent.instance
    assert value(samples, "virtq_agent_up") == 1
    assert value(samples, "virtq_agent_epoch") == agent.epoch
    for class_name in ("Node", "Domain", "Pool", "Volume"):
        assert value(samples, "virtq_agent_objects", **{"class": class_name}) == len(agent.registry.entries(class_name))
    assert value(samples, "virtq_agent_objects", **{"class": "Domain"}) == 1
    assert value(samples, "virtq_agent_libvirt_connected") == 1
    assert value(samples, "virtq_agent_transport_connected") == 1
    assert value(samples, "virtq_agent_libvirt_stuck_calls") == 0
    assert value(samples, "virtq_agent_libvirt_reconnects_total") == 0
    assert value(samples, "virtq_agent_sampler_pass_duration_seconds_count", kind="domains") >= 1
    assert value(samples, "virtq_agent_push_bytes_total", content="heartbeat") > 100
    assert value(samples, "process_cpu_seconds_total") > 0
    wait_until(lambda: value(scrape(agent), "virtq_agent_consoles_connected") == 0)


def test_the_endpoint_closes_with_the_agent(agent: Agent) -> None:
    url = agent.metrics.url
    assert value(scrape(agent), "virtq_agent_up") == 1
    agent.stop()
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(url, timeout=2)
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    assert agent.metrics.address is None


def test_the_daemon_serves_metrics_where_it_says(tmp_path: Path) -> None:
    port = free_port()
    args = ["--libvirt", DEFAULT_URI, "--listen", f"amqp://127.0.0.1:{port}", "--metrics-listen", "127.0.0.1:0",
            "--state-dir", str(tmp_path)]
    assert VIRTQ_AGENT.exists()
    with agent_process(args, port, tmp_path) as (proc, log_path):
        said = wait_until(lambda: re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", log_path.read_text()))
        assert said is not None
        url = said.group(1)
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        families = {f.name for f in text_string_to_metric_families(text)}
        assert {"virtq_agent_up", "virtq_agent_requests", "virtq_agent_objects", "process_cpu_seconds"} <= families
        stop_process(proc, log_path)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
