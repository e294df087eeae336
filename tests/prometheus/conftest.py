"""Fixtures of the Prometheus tier: one private Prometheus server on loopback, shared by the session.

In CI (``CI=true``) the tier must run: prometheus missing fails it. Elsewhere it is skipped, with the reason,
when prometheus is not installed (``bash scripts/install-prometheus.sh``, which ``make test`` runs, installs
it). A server that is installed but does not start fails everywhere.

- ``prometheus`` (session): the server (1 s scrape and evaluation interval). Each test scrapes its own
  endpoints under job names of its own (``prometheus.scrape_targets(job, [...])``, a reload), so that
  tests do not see each other's series; ``scrape_job`` makes such a job and drops it after the test.
"""

from __future__ import annotations

import itertools
import os
from typing import Callable, Iterator, List, Sequence

import pytest

from virtq.testing.prometheus import HarnessError, PrometheusServer, Sample, Unavailable

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

ScrapeJob = Callable[[Sequence[str]], str]
SamplesCheck = Callable[[List[Sample]], bool]


def value_is(expected: float) -> SamplesCheck:
    """For ``wait_for``: the query's result is one sample, of value ``expected``."""
    def check(samples: List[Sample]) -> bool:
        return [sample.value for sample in samples] == [expected]
    return check


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A running private Prometheus for the whole session."""
    try:
        server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
        server.start()
    except Unavailable as exc:
        if IN_CI:
            pytest.fail(f"Prometheus unavailable in CI: {exc}", pytrace=False)
        pytest.skip(f"Prometheus unavailable: {exc}")
    except HarnessError as exc:
        pytest.fail(f"Prometheus did not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


_jobs = itertools.count(1)


@pytest.fixture
def scrape_job(prometheus: PrometheusServer, request: pytest.FixtureRequest) -> Iterator[ScrapeJob]:
    """``scrape_job(["127.0.0.1:port", ...])`` has the session's server scrape these under a new job name of
    this test's (returned); the jobs are dropped after the test."""
    made: List[str] = []

    def make(targets: Sequence[str]) -> str:
        job = f"{request.node.name.split('[')[0]}-{next(_jobs)}"
        prometheus.scrape_targets(job, targets)
        made.append(job)
        return job

    try:
        yield make
    finally:
        for job in made:
            prometheus.scrape_targets(job, [])
