"""Shared fixtures: real agents on libvirt's test driver, real consoles over loopback AMQP (built on
virtq.testing, whose pytest plugin gives projects using virtq the ``virtq_*`` fixtures)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Union

import pytest

from virtq.agent import Agent
from virtq.agent.hypervisor import Hypervisor
from virtq.console import Console
from virtq.testing import MemoryBus, agent_url, start_local_agent
from virtq.transport import TlsConfig

from .helpers import DEFAULT_URI, NODE_URI
from .pki import Pki

AgentFactory = Callable[..., Agent]


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """The `virtq` command sets the root logger's level for its process (CRITICAL without -v); a test that runs
    it in-process (CliRunner) must not leave that to the tests after it, whose caplog would then see nothing."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA (and a second, untrusted one) with certificates made on demand by openssl."""
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[AgentFactory]:
    """Start agents in direct mode on free loopback ports — on a libvirt URI or on a hypervisor the test
    built; all are stopped after the test."""
    agents: List[Agent] = []

    def start(uri: Union[str, Hypervisor] = DEFAULT_URI, heartbeat: float = 1.0, instance: Optional[str] = None,
              tls: Optional[TlsConfig] = None, **kwargs: Any) -> Agent:
        agent = start_local_agent(uri, state_dir=tmp_path / f"state-{len(agents)}", tls=tls, heartbeat=heartbeat,
                                  instance=instance, **kwargs)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.kill()


@pytest.fixture
def bus(virtq_bus: MemoryBus) -> MemoryBus:
    """An in-memory bus (every message through proton's codec), closed after the test: the plugin's."""
    return virtq_bus


@pytest.fixture
def connect() -> Iterator[Callable[..., Console]]:
    """Open consoles (closed after the test): connect(agent_or_url, ..., timeout=5)."""
    consoles: List[Console] = []

    def open_console(*targets: Any, timeout: float = 5.0, **kwargs: Any) -> Console:
        urls = [t if isinstance(t, str) else agent_url(t) for t in targets]
        console = Console(urls, timeout=timeout, **kwargs)
        console.start()
        consoles.append(console)
        return console

    yield open_console
    for console in consoles:
        console.close()


@pytest.fixture
def default_agent(start_agent: AgentFactory) -> Agent:
    """An agent serving libvirt's built-in test:///default hypervisor."""
    return start_agent(DEFAULT_URI)


@pytest.fixture
def node_agent(start_agent: AgentFactory) -> Agent:
    """An agent serving tests/data/node.xml: 4 domains (running, running, paused, shut off), 2 pools, 3 volumes."""
    return start_agent(NODE_URI)


@pytest.fixture
def console(connect: Callable[..., Console], node_agent: Agent) -> Console:
    return connect(node_agent)
