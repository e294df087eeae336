"""pytest fixtures for code built on virtq: a real agent on libvirt's test driver and a console to it.

Installed with virtq and loaded by pytest automatically (entry point ``pytest11``)::

    def test_my_manager_sees_the_test_domain(virtq_console):
        assert "test" in {d.name for d in virtq_console.domains}

``virtq_agent`` serves ``virtq_libvirt_uri`` (``test:///default``; override the fixture to serve a
``test://`` XML file of your own) in this process, on a free loopback port; ``virtq_agent_url`` is
where it listens, ``virtq_console`` a Console connected to it. ``virtq_fake_hypervisor`` and
``virtq_bus`` are the in-memory pieces for unit tests. Every fixture stops what it started.

Loading the plugin imports virtq.testing (the console library and the agent's pure-Python parts, a few
tenths of a second); libvirt-python is imported only by ``virtq_agent``. The conformance suites' asserts
are rewritten by pytest, so a failed check shows its values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from virtq.agent import Agent
from virtq.console import Console

from .agents import DEFAULT_URI, agent_url, connected_console, running_agent
from .fake_hypervisor import FakeHypervisor
from .transports import MemoryBus

pytest.register_assert_rewrite("virtq.testing.conformance")  # (nothing above imports it)


@pytest.fixture
def virtq_libvirt_uri() -> str:
    """The libvirt URI ``virtq_agent`` serves; override it for a test-driver XML file of your own."""
    return DEFAULT_URI


@pytest.fixture
def virtq_agent(virtq_libvirt_uri: str, tmp_path: Path) -> Iterator[Agent]:
    """A virtq agent in this process serving ``virtq_libvirt_uri`` on a free loopback port."""
    with running_agent(virtq_libvirt_uri, state_dir=tmp_path / "virtq-agent-state") as agent:
        yield agent


@pytest.fixture
def virtq_agent_url(virtq_agent: Agent) -> str:
    """Where ``virtq_agent`` listens (``amqp://127.0.0.1:<port>``): give it to the code under test."""
    return agent_url(virtq_agent)


@pytest.fixture
def virtq_console(virtq_agent: Agent) -> Iterator[Console]:
    """A Console connected to ``virtq_agent``, its repositories loaded."""
    with connected_console(virtq_agent) as console:
        yield console


@pytest.fixture
def virtq_fake_hypervisor() -> Iterator[FakeHypervisor]:
    """An in-memory hypervisor shaped like ``test:///default`` (domain ``test`` running, one pool)."""
    hypervisor = FakeHypervisor.like_default_driver()
    yield hypervisor
    hypervisor.gates.open_all()
    hypervisor.close()


@pytest.fixture
def virtq_bus() -> Iterator[MemoryBus]:
    """An in-memory bus for agents and consoles of this process (``bus.agent_transport()`` …)."""
    bus = MemoryBus()
    yield bus
    bus.close()
