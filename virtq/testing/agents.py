"""A real agent and real consoles in the test's own process, over loopback AMQP.

``running_agent`` serves libvirt's test driver (``test:///default``, a ``test://`` XML file of your
own, or any :class:`~virtq.agent.hypervisor.Hypervisor` such as :class:`~virtq.testing.FakeHypervisor`)
in direct mode on a free loopback port; ``connected_console`` opens a Console to it. The test
driver needs libvirt-python (``pip install virtq[agent]``); it is imported only when a URI is given.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from virtq.agent import Agent, Hypervisor
from virtq.console import Console
from virtq.schema import default_schema
from virtq.transport import DirectListener, TlsConfig

from .ports import free_port

__all__ = ["DEFAULT_URI", "agent_url", "connected_console", "running_agent", "start_local_agent"]

DEFAULT_URI = "test:///default"
"""libvirt's built-in test hypervisor: one running domain (``test``) and one pool. Its state is shared by
every connection of a process while any stays open, and starts afresh once all are closed."""


def start_local_agent(target: Union[str, Hypervisor] = DEFAULT_URI, *, state_dir: Path,
                      tls: Optional[TlsConfig] = None, heartbeat: float = 1.0, **options: Any) -> Agent:
    """Start an agent serving ``target`` (a libvirt URI or a hypervisor) on a free loopback port; the
    caller stops it. ``options`` are the Agent's (``interval``, ``policy``, ``instance`` …)."""
    # proton checks a server certificate's DNS names only (not IP addresses): TLS agents are reached as localhost
    url = f"amqps://localhost:{free_port()}" if tls else f"amqp://127.0.0.1:{free_port()}"
    hypervisor = _open(target) if isinstance(target, str) else target
    agent = Agent(default_schema(), hypervisor, DirectListener(url, tls=tls), heartbeat=heartbeat,
                  state_dir=state_dir, **options)
    try:
        agent.start()
    except BaseException:
        agent.kill()
        raise
    return agent


def agent_url(agent: Agent) -> str:
    """The URL consoles reach an agent started here at."""
    listener = agent.transport
    if not isinstance(listener, DirectListener):
        raise TypeError(f"agent {agent.name} does not listen (its transport is {type(listener).__name__})")
    return listener.url


@contextlib.contextmanager
def running_agent(target: Union[str, Hypervisor] = DEFAULT_URI, *, state_dir: Optional[Path] = None,
                  **options: Any) -> Iterator[Agent]:
    """An agent started for the ``with`` block (see :func:`start_local_agent`), killed after it; its state
    (the epoch) goes to a temporary directory unless ``state_dir`` is given."""
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="virtq-agent-")))
        agent = start_local_agent(target, state_dir=state_dir, **options)
        stack.callback(agent.kill)
        yield agent


@contextlib.contextmanager
def connected_console(*targets: Union[Agent, str], timeout: float = 5.0, **options: Any) -> Iterator[Console]:
    """A Console connected to these agents (started here) or agent URLs, closed after the block;
    ``options`` are the Console's."""
    console = Console([t if isinstance(t, str) else agent_url(t) for t in targets], timeout=timeout, **options)
    console.start()
    try:
        yield console
    finally:
        console.close()


def _open(uri: str) -> Hypervisor:
    try:
        from virtq.agent.libvirt_adapter import LibvirtHypervisor
    except ImportError as exc:
        raise ImportError(f"an agent on {uri} needs libvirt-python: pip install 'virtq[agent]'") from exc
    return LibvirtHypervisor(uri)
