"""What ``virtq exporter`` served before it wrote its text itself: prometheus_client's families over the same
console (a sample object per series, formatted one at a time). The baseline of bench.exporter_scrape, and
the reference tests/unit/test_exporter.py compares the exporter's text with."""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Set

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from virtq.console import Console
from virtq.console.exporter import AGENT_LABELS, AGENT_METRICS, DOMAIN_LABELS, DOMAIN_METRICS

__all__ = ["BaselineCollector", "baseline_openmetrics", "baseline_text"]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class BaselineCollector(Collector):
    """The exporter's former prometheus_client collector, unchanged but for its name."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def collect(self) -> List[Metric]:
        views = sorted(self._console.agents, key=lambda v: v.name)
        hosts = {v.name: v.hostname or v.instance for v in views}
        lost = {v.name for v in views if self._console.is_lost(v.name)}
        snapshots, columns = self._console.domains.statistics([m.statistic for m in DOMAIN_METRICS])
        per_agent = Counter(obj.agent for obj in snapshots)
        rows = [i for i, obj in enumerate(snapshots) if obj.agent not in lost] if lost else range(len(snapshots))
        labels = [{"host": hosts.get(obj.agent) or obj.agent.rsplit(":", 1)[-1],
                   "domain": str(obj.values.get("name", "")), "uuid": str(obj.values.get("uuid", ""))}
                  for obj in snapshots]
        families: List[Metric] = []
        for metric in DOMAIN_METRICS:
            family: Metric = (CounterMetricFamily if metric.counter else GaugeMetricFamily)(
                metric.name, metric.documentation, labels=DOMAIN_LABELS)
            name, scale, column = metric.name, metric.scale, columns[metric.statistic]
            family.samples.extend(Sample(name, labels[i], column[i] * scale) for i in rows if _number(column[i]))
            families.append(family)
        return families + self._agents(views, hosts, lost, per_agent)

    def _agents(self, views: List[Any], hosts: Dict[str, str], lost: Set[str],
                per_agent: Counter[str]) -> List[Metric]:
        now = self._console.clock()
        families = [GaugeMetricFamily(name, help_text, labels=AGENT_LABELS) for name, help_text in AGENT_METRICS]
        for view in views:
            alive = view.name not in lost
            values = (alive and view.health.libvirt_connected, per_agent.get(view.name, 0), alive,
                      view.heartbeat_age(now), view.epoch)
            for family, value in zip(families, values):
                family.add_metric((hosts[view.name], view.name), float(value))
        return [*families,
                GaugeMetricFamily("virtq_exporter_agents", "Agents the console knows (lost ones included).",
                                  value=len(views)),
                CounterMetricFamily("virtq_exporter_stats_records_total",
                                    "Pushed statistics records (one object's sample each) the console applied.",
                                    value=self._console.updater.samples_applied)]


def _registry(console: Console) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BaselineCollector(console))
    return registry


def baseline_text(console: Console) -> bytes:
    """One scrape in Prometheus' text format, as prometheus_client writes it."""
    return generate_latest(_registry(console))


def baseline_openmetrics(console: Console) -> bytes:
    """One scrape in OpenMetrics (what Prometheus asks for first), as prometheus_client writes it."""
    text: bytes = generate_openmetrics(_registry(console))  # type: ignore[no-untyped-call]
    return text
