"""Agents and consoles through a broker, libvirt's truth to compare them with, and measured timings.

``Fleet`` starts in-process agents (``LibvirtHypervisor`` on a test-driver URI, one
``Connection`` each, ``rabbitmq`` profile, ``require_connection=False`` as the daemon uses
it, the ``ALLOW_ALL`` policy unless given another) and consoles, and stops them all at the
end of the test or module that owns it.

``truth(hypervisor)`` reads libvirt (through the agent's own connection: every
``test:///<file>`` connection has its own copy of the file, so only the agent's connection, or
test:///default, which every connection of the process shares, shows what the agent serves);
``seen(console, agent)`` is the same picture from the console's repositories. "Nothing lost"
means the two are equal.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from virtq.agent import Agent
from virtq.agent.hypervisor import Hypervisor
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console
from virtq.schema import default_schema
from virtq.testing import waiting
from virtq.transport import Backoff, Connection, TlsConfig, profile

from ..helpers import NODE_URI
from .conftest import ALLOW_ALL

RUNNING, PAUSED, SHUTOFF = 1, 3, 5

HEARTBEAT = 1.0
"""Seconds between heartbeats in the fault tests (the wire carries whole seconds, at least 1)."""

FAST_BACKOFF = (0.05, 1.0)
"""(base, cap) of the fault tests' reconnect backoff: the default cap (5 s) suits a fleet, not a test
that wants the reconnect within a heartbeat or two of the broker's return."""


def fast_backoff() -> Backoff:
    return Backoff(*FAST_BACKOFF)


# --- libvirt's truth and the console's picture --------------------------------------------------------

Picture = Dict[str, Any]


def truth(hypervisor: Hypervisor) -> Picture:
    """Domains (name, state, id), pools and volumes as libvirt has them."""
    domains = {d.uuid: (d.name, hypervisor.invoke("Domain", d.uuid, "virDomainGetState", [0])[0], d.id)
               for d in hypervisor.list_domains()}
    pools = {p.uuid: p.name for p in hypervisor.list_pools()}
    volumes = {v.key: v.name for uuid in pools for v in hypervisor.list_volumes(uuid)}
    return {"domains": domains, "pools": pools, "volumes": volumes}


def seen(console: Console, agent_name: str) -> Picture:
    """The same, from the console's repositories (objects of one agent)."""
    domains = {d.uuid: (d.name, d.stats.get("state"), d.id) for d in console.domains if d.agent == agent_name}
    pools = {p.uuid: p.name for p in console.pools if p.agent == agent_name}
    volumes = {v.key: v.name for v in console.volumes if v.agent == agent_name}
    return {"domains": domains, "pools": pools, "volumes": volumes}


def difference(console: Console, agents: Sequence[Agent], expected: Sequence[Picture]) -> Dict[str, Any]:
    """What the console sees differently from ``expected``: {agent: {kind: {key: (seen, expected)}}}."""
    found: Dict[str, Any] = {}
    for agent, want in zip(agents, expected):
        have = seen(console, agent.name)
        for kind, items in want.items():
            keys = set(items) | set(have[kind])
            diff = {k: (have[kind].get(k), items.get(k)) for k in keys if have[kind].get(k) != items.get(k)}
            if diff:
                found.setdefault(agent.instance, {})[kind] = diff
    return found


def converged(console: Console, agents: Sequence[Agent], expected: Optional[Sequence[Picture]] = None) -> bool:
    pictures = expected if expected is not None else [truth(a.hypervisor) for a in agents]
    return all(seen(console, a.name) == p for a, p in zip(agents, pictures))


# --- agents and consoles --------------------------------------------------------------------------------

@dataclass
class Fleet:
    """Agents and consoles through a broker; ``close()`` stops them all."""

    state: Path
    agents: List[Agent] = field(default_factory=list)
    consoles: List[Console] = field(default_factory=list)

    def agent(self, urls: Union[str, Sequence[str]], instance: str, *, uri: str = NODE_URI,
              heartbeat: float = HEARTBEAT, interval: float = 0.5, backoff: Optional[Callable[[], Backoff]] = None,
              state_dir: Optional[Path] = None, start: bool = True, tls: Optional[TlsConfig] = None,
              **kwargs: Any) -> Agent:
        """An agent (started unless ``start=False``) on ``uri`` reaching the broker at ``urls`` (``tls``: for
        amqps:// URLs); ``kwargs`` go to Agent."""
        urls = [urls] if isinstance(urls, str) else list(urls)

        def transport(name: str) -> Connection:
            return Connection(urls, profile("rabbitmq"), role="agent", agent_name=name, tls=tls,
                              require_connection=False, backoff=backoff() if backoff else None)

        kwargs.setdefault("policy", ALLOW_ALL)
        agent = Agent(default_schema(), LibvirtHypervisor(uri), transport, instance=instance, heartbeat=heartbeat,
                      interval=interval, state_dir=state_dir or self.state / instance, **kwargs)
        self.agents.append(agent)
        if start:
            agent.start()
        return agent

    def console(self, urls: Union[str, Sequence[str]], *, backoff: Optional[Callable[[], Backoff]] = None,
                timeout: float = 5.0, discovery: float = 0.5, **kwargs: Any) -> Console:
        """A started console. Without ``backoff``: ``Console(urls, addressing="rabbitmq", **kwargs)`` as users
        write it; with one: the same through a Connection given that backoff (``broker_of`` finds it)."""
        if backoff is None:
            console = Console(urls, timeout=timeout, addressing="rabbitmq", discovery=discovery, **kwargs)
        else:
            urls = [urls] if isinstance(urls, str) else list(urls)
            connection = Connection(urls, profile("rabbitmq"), role="console", backoff=backoff())
            console = Console(timeout=timeout, addressing="rabbitmq", transports=[connection], discovery=discovery,
                              **kwargs)
        self.consoles.append(console)
        console.start()
        return console

    def close(self) -> None:
        for console in self.consoles:
            console.close()
        for agent in self.agents:
            agent.kill()
        self.consoles.clear()
        self.agents.clear()


def broker_of(console: Console) -> Connection:
    """The console's one broker connection (its reconnects and state, for measurements)."""
    (transport,) = [t for _, t in console.connections]
    assert isinstance(transport, Connection)
    return transport


def agent_broker(agent: Agent) -> Connection:
    assert isinstance(agent.transport, Connection)
    return agent.transport


# --- timings --------------------------------------------------------------------------------------------

@dataclass
class Recovery:
    """When each side reconnected and the console converged, in seconds after ``since`` (the broker back)."""

    what: str
    reconnected: Dict[str, float] = field(default_factory=dict)
    converged: Optional[float] = None
    extra: Dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        parts = [f"{name} reconnected +{t:.2f} s" for name, t in self.reconnected.items()]
        if self.converged is not None:
            parts.append(f"console converged +{self.converged:.2f} s")
        parts += [f"{name} {value}" for name, value in self.extra.items()]
        return f"{self.what}: " + ", ".join(parts)


def follow_recovery(what: str, since: float, connections: Dict[str, Callable[[], bool]],
                    done: Callable[[], bool], timeout: float = 20.0, interval: float = 0.005) -> Recovery:
    """Poll until every connection is up and ``done()``; times relative to ``since`` (monotonic).

    Raises AssertionError (with what was reached) after ``timeout``."""
    recovery = Recovery(what)
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        for name, up in connections.items():
            if name not in recovery.reconnected and up():
                recovery.reconnected[name] = now - since
        if recovery.converged is None and len(recovery.reconnected) == len(connections) and done():
            recovery.converged = time.monotonic() - since
            return recovery
        if now > deadline:
            raise AssertionError(f"no recovery within {timeout:.0f} s: {recovery.line()}")
        time.sleep(interval)


class Timings:
    """Measured timings of a module, printed (``pytest -s``) as they come and summarised at its end."""

    def __init__(self, title: str, path: Path) -> None:
        self.title = title
        self.path = path
        self.lines: List[str] = []
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        print(f"\n[timing] {line}")
        with self._lock:
            self.lines.append(line)

    def summary(self) -> str:
        return "\n".join([f"--- {self.title} ---", *self.lines]) if self.lines else ""

    def write(self) -> None:
        """Append the summary to ``path`` (one file per session, shared by the modules)."""
        if self.lines:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(self.summary() + "\n")
            with open(self.path.with_suffix(".json"), "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"module": self.title, "timings": self.lines}) + "\n")


def timings_fixture(title: str, request: Any, tmp_path_factory: Any) -> Iterator[Timings]:
    """Body of a module-scoped fixture: the summary goes to the terminal (past pytest's capture, so it
    shows in ``make test`` too) and to ``<basetemp>/broker-timings.txt``."""
    timings = Timings(title, Path(tmp_path_factory.getbasetemp()) / "broker-timings.txt")
    yield timings
    timings.write()
    summary = timings.summary()
    if summary:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            with capture.global_and_fixture_disabled():
                print(f"\n{summary}\n(also in {timings.path})")
        else:
            print(summary)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005) -> float:
    """Seconds until ``predicate()`` held (the fault tests report them); WaitTimeout after ``timeout``."""
    started = time.monotonic()
    waiting.wait_until(predicate, timeout, interval)
    return time.monotonic() - started
