"""contrib/prometheus/virtq-alerts.yml, the sample alerts of docs/OPERATIONS.md: promtool accepts them, a real
server loads and evaluates them, and they go pending on the series the agent and the exporter serve when
something is wrong (a down target, libvirt lost, calls stuck, a dead agent seen by the exporter)."""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from prometheus_client import Gauge

from virtq.testing import free_port
from virtq.testing.prometheus import PrometheusServer, Rule, promtool

from .endpoints import MetricsEndpoint
from .sample_alerts import ALERT_NAMES, ALERTS, alert_expressions

DEAD_AGENT = f"127.0.0.1:{free_port()}"
"""A virtq-agent target nothing listens on."""

RulesCheck = Callable[[Dict[str, Rule]], bool]


def test_promtool_accepts_the_sample_alerts(prometheus: PrometheusServer) -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in checked.stdout
    assert len(alert_expressions(ALERTS.read_text())) == len(ALERT_NAMES)


@pytest.fixture
def loaded(prometheus: PrometheusServer) -> PrometheusServer:
    """The session's server with the sample alerts loaded (they stay for the session: nothing else it
    scrapes is in the jobs they name, virtq-agent and virtq-exporter, but for the test below)."""
    prometheus.load_rules(ALERTS)
    return prometheus


def sample_rules(rules: List[Rule]) -> Dict[str, Rule]:
    """The rules of the sample file, by name."""
    return {rule.name: rule for rule in rules if rule.file == str(ALERTS)}


def sample_rules_once(server: PrometheusServer, holds: RulesCheck, timeout: float = 20.0) -> Dict[str, Rule]:
    """The sample rules, once they are loaded and ``holds`` of them."""
    return sample_rules(server.wait_for_rules(lambda rules: bool(sample_rules(rules)) and holds(sample_rules(rules)),
                                              timeout))


def test_the_sample_alerts_load_and_evaluate_cleanly(loaded: PrometheusServer) -> None:
    assert sorted(sample_rules(loaded.rules())) == sorted(ALERT_NAMES)
    evaluated = sample_rules_once(loaded, lambda rules: all(r.health != "unknown" for r in rules.values()))
    assert {name: (r.kind, r.health, r.last_error) for name, r in evaluated.items()} == \
        {name: ("alerting", "ok", "") for name in ALERT_NAMES}


@pytest.fixture
def troubled_fleet(loaded: PrometheusServer) -> Iterator[None]:
    """An agent with libvirt lost and a stuck call, one that does not answer, and an exporter that sees a
    dead agent: endpoints of the test's own serving the series the agent and the exporter would."""
    agent, exporter = MetricsEndpoint(), MetricsEndpoint()
    Gauge("virtq_agent_libvirt_connected", "", registry=agent.registry).set(0)
    Gauge("virtq_agent_libvirt_stuck_calls", "", registry=agent.registry).set(2)
    Gauge("virtq_agent_transport_connected", "", registry=agent.registry).set(1)
    Gauge("virtq_fleet_agent_up", "", ["host", "agent"], registry=exporter.registry).labels("h1", "a1").set(0)
    Gauge("libvirt_up", "", ["host", "agent"], registry=exporter.registry).labels("h1", "a1").set(1)
    loaded.scrape_targets("virtq-agent", [agent.address, DEAD_AGENT])
    loaded.scrape_targets("virtq-exporter", [exporter.address])
    try:
        yield
    finally:
        loaded.scrape_targets("virtq-agent", [])
        loaded.scrape_targets("virtq-exporter", [])
        agent.stop()
        exporter.stop()


def test_the_alerts_go_pending_on_what_the_agent_and_exporter_serve(loaded: PrometheusServer,
                                                                    troubled_fleet: None) -> None:
    expected = sorted([("VirtqAgentDown", DEAD_AGENT), ("VirtqAgentLibvirtCallsStuck", "serving"),
                       ("VirtqAgentLibvirtDisconnected", "serving"), ("VirtqFleetAgentDown", "a1")])
    # (ALERTS of these jobs only: a job another test just dropped may still have series for two intervals)
    loaded.wait_for('ALERTS{alertstate="pending", job=~"virtq-agent|virtq-exporter"}',
                    lambda alerts: sorted(_who(alert.labels) for alert in alerts) == expected, timeout=30)
    rules = sample_rules(loaded.rules())
    assert all(rules[name].state == "pending" for name, _ in expected)


def _who(labels: Dict[str, str]) -> Tuple[str, str]:
    """(alert, the agent it is about): the dead target's address, "serving" for the test's serving agent."""
    about = labels.get("agent") or labels["instance"]
    return labels["alertname"], about if about == DEAD_AGENT or "agent" in labels else "serving"
