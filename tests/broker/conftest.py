"""Fixtures of the broker tier: private RabbitMQ nodes (AMQP 1.0 plugin) on loopback, and a 2-node cluster.

In CI (``CI=true``) the tier must run: rabbitmq-server missing fails it. Elsewhere it is skipped, with
the reason, when rabbitmq-server is not installed (``bash scripts/install-rabbitmq.sh``, which
``make test`` runs, installs it). A node that is installed but does not start fails everywhere.

- ``rabbit`` (session): one node shared by the whole session. A test that stops, kills or restarts
  it must leave it running (``rabbit.start()``); a test that needs a node of its own uses ``rabbit_node``.
- ``rabbit_node`` (function): makes fresh nodes (``rabbit_node()`` starts one), stopped after the test.
- ``rabbit_cluster`` (session): nodes ``a`` and ``b``, ``b`` joined to ``a``, shared by the modules that use
  it (a cluster takes ~10 s to form). A test that stops a node starts it again (the node stopped last
  starts first); only the session's last cluster test may leave one down (test_harness.py's last).

A node takes ~6 s to boot, mostly CPU: the session node and the first cluster are booted side by side
as soon as the session's first broker test needs either (when the session's tests use them at all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Set

import pytest

from .harness import HarnessError, RabbitCluster, RabbitNode, RabbitSession, Unavailable

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _started(what: str, start: Callable[[], object]) -> None:
    """Run ``start``; a failure fails the test loudly (it is installed, so this is a real problem)."""
    problem: Optional[HarnessError] = None
    try:
        start()
    except HarnessError as exc:
        problem = exc
    if problem is not None:
        pytest.fail(f"{what} did not start: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def rabbit_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitSession]:
    """What the session's nodes share (cookie, epmd, names); closing it stops every node and epmd."""
    problem: Optional[Unavailable] = None
    try:
        session = RabbitSession(tmp_path_factory.mktemp("rabbitmq"))
    except Unavailable as exc:
        problem = exc
    if problem is not None:
        if IN_CI:
            pytest.fail(f"RabbitMQ unavailable in CI: {problem}", pytrace=False)
        pytest.skip(f"RabbitMQ unavailable: {problem}")
    try:
        yield session
    finally:
        session.close()


@dataclass
class _EarlyBoot:
    """Nodes whose processes were started ahead of the fixtures that use them."""

    node: Optional[RabbitNode] = None
    cluster: Optional[RabbitCluster] = None


@pytest.fixture(scope="session")
def _early_boot(request: pytest.FixtureRequest, rabbit_session: RabbitSession) -> _EarlyBoot:
    wanted: Set[str] = set()
    for item in request.session.items:
        wanted.update(getattr(item, "fixturenames", ()))
    early = _EarlyBoot()
    try:
        if "rabbit" in wanted:
            early.node = rabbit_session.node()
            early.node.spawn()
        if "rabbit_cluster" in wanted:
            early.cluster = rabbit_session.cluster()
            early.cluster.spawn()
    except HarnessError:
        pass  # (the fixture that uses it starts it again, and reports)
    return early


@pytest.fixture(scope="session")
def rabbit(rabbit_session: RabbitSession, _early_boot: _EarlyBoot) -> Iterator[RabbitNode]:
    """A running private node (``rabbit.url``) for the whole session."""
    node = _early_boot.node or rabbit_session.node()
    _started(f"RabbitMQ node {node.name}", node.start)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def rabbit_node(rabbit_session: RabbitSession) -> Iterator[Callable[[], RabbitNode]]:
    """``rabbit_node()`` starts a fresh node of the test's own; all are stopped after the test."""
    made: List[RabbitNode] = []

    def make() -> RabbitNode:
        node = rabbit_session.node()
        made.append(node)
        _started(f"RabbitMQ node {node.name}", node.start)
        return node

    try:
        yield make
    finally:
        for node in made:
            node.stop()


@pytest.fixture(scope="session")
def rabbit_cluster(rabbit_session: RabbitSession, _early_boot: _EarlyBoot) -> Iterator[RabbitCluster]:
    """A running 2-node cluster (``a``, ``b``; ``urls``) for the session."""
    cluster, _early_boot.cluster = _early_boot.cluster or rabbit_session.cluster(), None
    _started(f"RabbitMQ cluster {[node.name for node in cluster.nodes]}", cluster.start)
    try:
        yield cluster
    finally:
        cluster.close()
