"""A 2-node RabbitMQ cluster on this machine: agents connected to node A (failover list [A, B]), the
console to node B (failover list [B, A]). Everything flows from node to node; then node A is stopped
while libvirt keeps changing: the agents fail over to B, and the console — which never lost its own
connection — converges to libvirt's truth from what the agents push after reconnecting (their heartbeat
at once, then the latest state of everything) and from re-reading them (their heartbeat's ``reconnects``
changed): what they sent just before the loss was noticed may be lost, deletions included.

The cluster is the session's (``rabbit_cluster``, shared with test_harness.py): node A is started again
after the module (``cluster``), and rejoins by itself.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable, Iterator, List, Set

import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.console.events import DomainStateChanged, LibvirtEvent, StatsUpdated
from virtq.testing import domain_xml
from virtq.testing.rabbitmq import RabbitCluster
from virtq.transport import Connection

from .fleet import (PAUSED, RUNNING, Fleet, Timings, agent_broker, broker_of, converged, fast_backoff,
                    follow_recovery, seen, timings_fixture, truth, wait_until)

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def timings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Timings]:
    yield from timings_fixture("broker cluster (2 RabbitMQ nodes, heartbeat 1 s, backoff cap 1 s)", request,
                               tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(rabbit_cluster: RabbitCluster, timings: Timings) -> Iterator[RabbitCluster]:
    """The session's cluster, whole again after the module (a stopped node started, the cluster re-formed)."""
    yield rabbit_cluster
    stopped = [node for node in rabbit_cluster.nodes if not node.running]
    started = time.monotonic()
    for node in stopped:
        node.start()
    names = sorted(node.name for node in rabbit_cluster.nodes)
    wait_until(lambda: rabbit_cluster.running_nodes() == names, timeout=30, interval=0.2)
    if stopped:
        timings.add(f"node A started again and rejoined in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def fleet(cluster: RabbitCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("cluster-state"))
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def agents(fleet: Fleet, cluster: RabbitCluster) -> List[Agent]:
    a, b = cluster.a, cluster.b
    return [fleet.agent([a.url, b.url], f"cluster-{i}", backoff=fast_backoff, interval=0.3) for i in range(2)]


@pytest.fixture(scope="module")
def console(fleet: Fleet, cluster: RabbitCluster, agents: List[Agent]) -> Console:
    return fleet.console([cluster.b.url, cluster.a.url], backoff=fast_backoff)


def test_agents_on_a_and_a_console_on_b(cluster: RabbitCluster, agents: List[Agent], console: Console) -> None:
    a, b = cluster.a, cluster.b
    assert [agent_broker(agent).current_url for agent in agents] == [a.url, a.url]
    assert broker_of(console).current_url == b.url
    wait_until(lambda: converged(console, agents), timeout=5)  # (locate answers, else the next heartbeats)
    assert {view.name for view in console.agents} == {agent.name for agent in agents}

    agent = agents[0]
    web1 = console.domains.get(f"{agent.instance}/web1")
    with console.subscribe(kinds=(LibvirtEvent, DomainStateChanged, StatsUpdated)) as sub:
        job = web1.suspend()  # request B -> A, reply A -> B
        # (waited for: the pushes and the reply come through two queues, docs/CONSOLE.md, Job apartments)
        assert job.wait_state("paused", timeout=5).state == PAUSED
        kinds: Set[type] = set()
        deadline = time.monotonic() + 5
        while kinds != {LibvirtEvent, DomainStateChanged, StatsUpdated} and time.monotonic() < deadline:
            event = sub.get(0.2)
            if isinstance(event, LibvirtEvent) and event.agent == agent.name or \
                    isinstance(event, (DomainStateChanged, StatsUpdated)) and event.obj.agent == agent.name:
                kinds.add(type(event))
        assert kinds == {LibvirtEvent, DomainStateChanged, StatsUpdated}  # pushed A -> B
    web1.resume().wait_state("running", timeout=5)
    assert seen(console, agent.name) == truth(agent.hypervisor)


class Churn:
    """Keeps changing the agents' libvirt (suspend/resume, create/destroy, define/undefine) on a thread."""

    def __init__(self, agents: List[Agent], pause: float = 0.02) -> None:
        self.agents = agents
        self.pause = pause
        self.steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)
        self.error: List[BaseException] = []

    def _step(self, agent: Agent, n: int) -> None:
        hv = agent.hypervisor
        domains = {d.name: d.uuid for d in hv.list_domains()}
        name = ("web1", "db1", "build", "define")[n % 4]
        if name == "define":
            extra = sorted(d for d in domains if d.startswith("churn-"))
            if len(extra) >= 2:
                hv.invoke("Domain", domains[extra[0]], "virDomainUndefine", [])
            hv.invoke("Node", None, "virDomainDefineXML", [domain_xml(f"churn-{n:05d}")])
            return
        uuid = domains[name]
        state = hv.invoke("Domain", uuid, "virDomainGetState", [0])[0]
        if name == "build":
            hv.invoke("Domain", uuid, "virDomainDestroy" if state == RUNNING else "virDomainCreate", [])
        else:
            hv.invoke("Domain", uuid, "virDomainSuspend" if state == RUNNING else "virDomainResume", [])

    def _run(self) -> None:
        try:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                for agent in self.agents:
                    self._step(agent, n)
                self.steps += 1
                time.sleep(self.pause)
        except BaseException as exc:  # (reported by stop())
            self.error.append(exc)

    def start(self) -> "Churn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self.error, self.error


def test_node_a_stopped_agents_fail_over_to_b_and_the_console_converges(
        cluster: RabbitCluster, agents: List[Agent], console: Console, timings: Timings) -> None:
    a, b = cluster.a, cluster.b

    def on_b_check(connection: Connection) -> Callable[[], bool]:
        return lambda: connection.connected and connection.current_url == b.url

    on_b = {agent.instance: on_b_check(agent_broker(agent)) for agent in agents}
    churn = Churn(agents).start()
    time.sleep(0.3)  # (changing before the stop too)
    stopped = time.monotonic()
    stopper = threading.Thread(target=a.stop, name="stop-node-a")
    stopper.start()
    try:
        wait_until(lambda: not any(agent.transport.connected and agent_broker(agent).current_url == a.url
                                   for agent in agents), timeout=15)
        left = time.monotonic() - stopped
        failover = follow_recovery("node A stopped: agents failed over to B", stopped, on_b, lambda: True,
                                   timeout=15)
    finally:
        time.sleep(0.3)  # (and after the agents are back)
        churn.stop()
    expected = [truth(agent.hypervisor) for agent in agents]
    try:
        converge = wait_until(lambda: converged(console, agents, expected), timeout=10)
    except AssertionError:
        diff = {agent.name: {k: (v, seen(console, agent.name)[k]) for k, v in want.items()
                             if seen(console, agent.name)[k] != v} for agent, want in zip(agents, expected)}
        links = {agent.name: {"reconnects": agent.reconnects, "dropped": agent_broker(agent).dropped,
                              "console saw": console.agents.get(agent.name).attributes.get("reconnects")}
                 for agent in agents}
        raise AssertionError(f"the console did not converge after {churn.steps} churn steps: {diff}; {links}")
    stopper.join(30)
    assert broker_of(console).current_url == b.url and broker_of(console).reconnects == 0  # never left B
    assert not any(console.is_lost(agent.name) for agent in agents)
    timings.add(f"{failover.line()} (counted from the start of the stop; agents left A +{left:.2f} s); "
                f"console converged {converge:.2f} s after the last change; {churn.steps} churn steps of "
                f"{len(agents)} agents; stopping node A took {time.monotonic() - stopped:.1f} s")

    # and the path still works, all through B
    db1 = console.domains.get(f"{agents[1].instance}/db1")
    state = db1.state
    (db1.suspend if state == RUNNING else db1.resume)()
    assert console.domains.get(f"{agents[1].instance}/db1").state != state
