"""The harness against the real server: what a private endpoint serves is scraped and answered by PromQL,
a stopped endpoint is a target that is down, and a bad query or configuration fails loudly."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from prometheus_client import Gauge

from virtq.testing.prometheus import HarnessError, PrometheusServer, Sample

from .conftest import ScrapeJob, value_is
from .endpoints import MetricsEndpoint


@pytest.fixture
def endpoint() -> Iterator[MetricsEndpoint]:
    served = MetricsEndpoint()
    try:
        yield served
    finally:
        served.stop()


def test_a_changed_value_is_seen_at_a_later_scrape(prometheus: PrometheusServer, scrape_job: ScrapeJob,
                                                    endpoint: MetricsEndpoint) -> None:
    gauge = Gauge("virtq_harness_value", "what the test set", registry=endpoint.registry)
    gauge.set(7)
    job = scrape_job([endpoint.address])
    query = f'virtq_harness_value{{job="{job}"}}'
    [sample] = prometheus.wait_for(query, value_is(7))
    assert sample.name == "virtq_harness_value"
    assert sample.labels["instance"] == endpoint.address
    gauge.set(42.5)
    prometheus.wait_for(query, value_is(42.5))
    [target] = prometheus.targets(job)
    assert (target.health, target.instance, target.scrape_url) == ("up", endpoint.address,
                                                                   f"http://{endpoint.address}/metrics")


def test_a_stopped_endpoint_is_a_target_that_is_down(prometheus: PrometheusServer, scrape_job: ScrapeJob,
                                                     endpoint: MetricsEndpoint) -> None:
    job = scrape_job([endpoint.address])
    prometheus.wait_for(f'up{{job="{job}"}}', value_is(1))
    endpoint.stop()
    prometheus.wait_for(f'up{{job="{job}"}}', value_is(0))
    [target] = prometheus.targets(job)
    assert target.health == "down"
    assert "connection refused" in target.last_error


def test_a_dropped_job_is_scraped_no_more(prometheus: PrometheusServer, endpoint: MetricsEndpoint) -> None:
    prometheus.scrape_targets("harness-dropped", [endpoint.address])
    try:
        prometheus.wait_for('up{job="harness-dropped"} == 1')
        assert [t.job for t in prometheus.targets("harness-dropped")] == ["harness-dropped"]
    finally:
        prometheus.scrape_targets("harness-dropped", [])
    assert prometheus.targets("harness-dropped") == []


def test_scalars_come_back_as_one_unlabelled_sample(prometheus: PrometheusServer) -> None:
    [sample] = prometheus.query("scalar(vector(2)) * 3")
    assert (sample.labels, sample.value) == ({}, 6.0)
    assert isinstance(sample, Sample)


def test_a_bad_query_fails_loudly(prometheus: PrometheusServer) -> None:
    with pytest.raises(HarnessError, match="parse error"):
        prometheus.query("sum(")


def test_a_configuration_prometheus_rejects_fails_loudly_and_is_undone(prometheus: PrometheusServer,
                                                                       tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: bad\n    rules:\n      - alert: Bad\n        expr: sum(\n")
    with pytest.raises(HarnessError, match="HTTP 500"):
        prometheus.load_rules(bad)
    assert str(bad) not in prometheus.config_file.read_text()
    prometheus.scrape_targets("harness-after-a-bad-reload", [])  # (a reload, which must succeed again)
