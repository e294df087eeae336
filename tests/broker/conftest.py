"""Fixtures of the broker tier: private RabbitMQ nodes (AMQP 1.0 plugin) on loopback, and a 2-node cluster.

In CI (``CI=true``) the tier must run: rabbitmq-server missing fails it. Elsewhere it is skipped, with
the reason, when rabbitmq-server is not installed (``bash scripts/install-rabbitmq.sh``, which
``make test`` runs, installs it). A node that is installed but does not start fails everywhere.

- ``rabbit`` (session): one node shared by the whole session. A test that stops, kills or restarts
  it must leave it running (``rabbit.start()``); a test that needs a node of its own uses ``rabbit_node``.
- ``rabbit_node`` (function): makes fresh nodes (``rabbit_node()`` starts one), stopped after the test.
- ``tls_rabbit`` (session): a node with a TLS listener too (``tls_rabbit.url_for(user, password, tls=True)``,
  certificate for localhost from the session's test CA, ``broker_tls``) and SASL EXTERNAL (the client
  certificate's CN is the user); its users are the tests' to add (``identities.py``).
- ``rabbit_cluster`` (session): nodes ``a`` and ``b``, ``b`` joined to ``a``, shared by the modules that use
  it (a cluster takes ~10 s to form). A test that stops a node starts it again (the node stopped last
  starts first); only the session's last cluster test may leave one down (test_harness.py's last).

A node takes ~6 s to boot, mostly CPU: the session node, the TLS node and the first cluster are booted side
by side as soon as the session's first broker test needs any (when the session's tests use them at all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Set

import pytest

from virtq.agent.policy import Policy
from virtq.schema import default_schema
from virtq.testing.rabbitmq import HarnessError, RabbitCluster, RabbitNode, RabbitSession, Unavailable
from virtq.transport import TlsConfig

from ..pki import Pki

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

ALLOW_ALL_TEXT = "[principal *]\nroles = admin\n[principal anonymous]\nroles = admin\n"
ALLOW_ALL = Policy.parse(ALLOW_ALL_TEXT, default_schema(), "tests/broker ALLOW_ALL")
"""The policy of the tier's agents, unless a test gives its own: an agent reachable through a broker with no
policy denies every call, and these tests are about the path, not about who may do what (that is
test_broker_security.py's)."""


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
    tls_node: Optional[RabbitNode] = None
    cluster: Optional[RabbitCluster] = None


@pytest.fixture(scope="session")
def _early_boot(request: pytest.FixtureRequest, rabbit_session: RabbitSession) -> _EarlyBoot:
    wanted: Set[str] = set()
    for item in request.session.items:
        wanted.update(getattr(item, "fixturenames", ()))
    early = _EarlyBoot()
    try:
        if "rabbit" in wanted:
            early.node = RabbitNode(rabbit_session)
            early.node.spawn()
        if "tls_rabbit" in wanted:
            early.tls_node = RabbitNode(rabbit_session, tls=request.getfixturevalue("broker_tls"), external=True)
            early.tls_node.spawn()
        if "rabbit_cluster" in wanted:
            early.cluster = RabbitCluster(rabbit_session)
            early.cluster.spawn()
    except HarnessError:
        pass  # (the fixture that uses it starts it again, and reports)
    return early


@pytest.fixture(scope="session")
def rabbit(rabbit_session: RabbitSession, _early_boot: _EarlyBoot) -> Iterator[RabbitNode]:
    """A running private node (``rabbit.url``) for the whole session."""
    node = _early_boot.node or RabbitNode(rabbit_session)
    _started(f"RabbitMQ node {node.name}", node.start)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def broker_tls(pki: Pki) -> TlsConfig:
    """The TLS node's certificate (CN localhost; SAN localhost and 127.0.0.1), its key, and the test CA."""
    cert, key = pki.issue("mq-broker", "localhost")
    return TlsConfig(cert, key, pki.ca())


@pytest.fixture(scope="session")
def tls_rabbit(rabbit_session: RabbitSession, _early_boot: _EarlyBoot, broker_tls: TlsConfig) -> Iterator[RabbitNode]:
    """A running private node with a TLS listener and SASL EXTERNAL, for the whole session."""
    node = _early_boot.tls_node or RabbitNode(rabbit_session, tls=broker_tls, external=True)
    _started(f"RabbitMQ node {node.name} (TLS)", node.start)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def rabbit_node(rabbit_session: RabbitSession) -> Iterator[Callable[[], RabbitNode]]:
    """``rabbit_node()`` starts a fresh node of the test's own; all are stopped after the test."""
    made: List[RabbitNode] = []

    def make() -> RabbitNode:
        node = RabbitNode(rabbit_session)
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
    cluster, _early_boot.cluster = _early_boot.cluster or RabbitCluster(rabbit_session), None
    _started(f"RabbitMQ cluster {[node.name for node in cluster.nodes]}", cluster.start)
    try:
        yield cluster
    finally:
        cluster.close()
