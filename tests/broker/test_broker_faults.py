"""Faults through RabbitMQ, each with "nothing lost" checked against libvirt's truth.

- The broker stopped (a clean AMQP close) or killed (a crash) and started again while domains change
  state, one is defined and one undefined: calls during the outage fail fast with NotConnectedError;
  once the broker is back, the agents reconnect (heartbeat at once, then the latest state of what
  changed while they were away) and the console reconnects and re-queries them; it converges to
  libvirt's truth within two heartbeat intervals of the agents' reconnect. An agent started while the
  broker is down connects when it comes up.
- An agent killed and started again (same state directory: a new epoch): AgentLost, then
  AgentRestarted and a full resync (an object removed while it was down: ObjectRemoved).
- A console restarted: the new one rebuilds everything from queries.

Changes go through each agent's own libvirt connection (``agent.hypervisor``): every
``test:///<file>`` connection has a copy of its own, so that connection is the truth; the restart test
uses test:///default, which every connection of this process shares.

The tests share the session's node and leave it running; reconnects use a backoff capped at 1 s
(the default cap of 5 s suits a fleet). Timings are printed (``pytest -s``) and summed up at the end.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Type, TypeVar

import libvirt
import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console.events import (AgentAdded, AgentLost, AgentRestarted, DomainStateChanged, Event, ObjectAdded,
                                  ObjectRemoved)
from virtq.console.subscriptions import Subscription
from virtq.schema.errors import NotConnectedError
from virtq.testing import domain_xml, next_event, port_open
from virtq.testing.rabbitmq import RabbitNode
from virtq.transport import Connection

from ..helpers import DEFAULT_URI
from .fleet import (HEARTBEAT, PAUSED, RUNNING, Fleet, Picture, Timings, agent_broker, broker_of, converged,
                    difference, fast_backoff, follow_recovery, seen, timings_fixture, truth, wait_until)

pytestmark = pytest.mark.broker

E = TypeVar("E", bound=Event)


@pytest.fixture(scope="module")
def timings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Timings]:
    yield from timings_fixture("broker faults (RabbitMQ, heartbeat 1 s, backoff cap 1 s)", request,
                               tmp_path_factory)


@pytest.fixture
def broker(rabbit: RabbitNode) -> Iterator[RabbitNode]:
    """The session's node; running again after the test, whatever the test did to it."""
    yield rabbit
    if not rabbit.running:
        rabbit.start()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path / "state")
    yield fleet
    fleet.close()


def events(subscription: Subscription, kind: Type[E], timeout: float = 0.0) -> List[E]:
    """The events of ``kind`` queued so far (waiting up to ``timeout`` for the first one)."""
    found: List[E] = []
    deadline = time.monotonic() + timeout
    while True:
        event = subscription.get(max(0.0, deadline - time.monotonic()) if not found else 0.05)
        if event is None:
            return found
        if isinstance(event, kind):
            found.append(event)


def uuid_of(agent: Agent, name: str) -> str:
    (found,) = [d.uuid for d in agent.hypervisor.list_domains() if d.name == name]
    return found


def change_everything(agent: Agent, new_name: str) -> Dict[str, str]:
    """On the agent's own libvirt: web1 paused, db1 resumed, build started, web2 destroyed and undefined,
    ``new_name`` defined. Returns {what: object name} of the removed and added domain."""
    hv = agent.hypervisor
    web2 = uuid_of(agent, "web2")
    hv.invoke("Domain", uuid_of(agent, "web1"), "virDomainSuspend", [])
    hv.invoke("Domain", uuid_of(agent, "db1"), "virDomainResume", [])
    hv.invoke("Domain", uuid_of(agent, "build"), "virDomainCreate", [])
    hv.invoke("Domain", web2, "virDomainDestroy", [])
    hv.invoke("Domain", web2, "virDomainUndefine", [])
    added = hv.invoke("Node", None, "virDomainDefineXML", [domain_xml(new_name)])
    return {"removed": f"Domain:{web2}", "added": f"Domain:{added.uuid}"}


def up(connection: Connection) -> Callable[[], bool]:
    return lambda: connection.connected


def fails_fast(call: Callable[[], Any]) -> float:
    """Seconds ``call`` took to raise NotConnectedError."""
    started = time.monotonic()
    with pytest.raises(NotConnectedError):
        call()
    return time.monotonic() - started


# --- the broker goes away and comes back -------------------------------------------------------------------

def _outage(how: str, broker: RabbitNode, fleet: Fleet, timings: Timings, late_agent: bool = False) -> None:
    agents = [fleet.agent(broker.url, f"{how}-{i}", backoff=fast_backoff) for i in range(2)]
    console = fleet.console(broker.url, backoff=fast_backoff)
    wait_until(lambda: converged(console, agents), timeout=5)
    web1 = console.domains.get(f"{how}-0/web1")
    connections: Dict[str, Callable[[], bool]] = {a.instance: up(agent_broker(a)) for a in agents}
    connections["console"] = up(broker_of(console))

    with console.subscribe(kinds=(ObjectAdded, ObjectRemoved, DomainStateChanged, AgentLost, AgentAdded)) as sub:
        started = time.monotonic()
        broker.stop() if how == "stop" else broker.kill()
        down = time.monotonic() - started
        wait_until(lambda: not any(connected() for connected in connections.values()), timeout=5)

        # calls fail fast, typed, while the console has no broker
        fast = max(fails_fast(web1.suspend), fails_fast(web1.getInfo),
                   fails_fast(lambda: console.resync(agents[1].name)))
        assert fast < 1.0

        # libvirt changes meanwhile; an agent may even start now
        changes = [change_everything(agent, f"{how}-new-{i}") for i, agent in enumerate(agents)]
        starting: Optional[threading.Thread] = None
        if late_agent:
            late = fleet.agent(broker.url, f"{how}-late", backoff=fast_backoff, start=False)
            starting = threading.Thread(target=late.start, name="late-agent-start")  # (waits for the broker)
            starting.start()
            agents.append(late)
            connections[late.instance] = up(agent_broker(late))
        expected: List[Picture] = [truth(a.hypervisor) for a in agents]
        assert all(seen(console, a.name) != p for a, p in zip(agents, expected))

        started = time.monotonic()
        broker.spawn()
        wait_until(lambda: port_open(broker.port), timeout=60, interval=0.01)
        back = time.monotonic()  # the broker listens again: times below count from here
        try:
            recovery = follow_recovery(f"broker {'stopped' if how == 'stop' else 'killed'} and restarted", back,
                                       connections, lambda: converged(console, agents, expected))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the console differs (seen, libvirt): "
                                 f"{difference(console, agents, expected)}") from None
        broker.wait_ready()
        assert recovery.converged is not None
        agent_back = max(t for name, t in recovery.reconnected.items() if name != "console")
        recovery.extra.update({"converged after the last agent reconnected": f"{recovery.converged - agent_back:.2f} s",
                               "stopping the broker took": f"{down:.2f} s",
                               "its port opened after": f"{back - started:.2f} s",
                               "calls during the outage failed within": f"{fast * 1000:.1f} ms"})
        timings.add(recovery.line())
        assert recovery.converged - agent_back <= 2 * HEARTBEAT, recovery.line()
        if starting is not None:
            starting.join(10)
            assert not starting.is_alive()

        # subscribers were told what changed
        told = events(sub, Event, timeout=0.5)
    names: Dict[str, Set[Tuple[str, str]]] = defaultdict(set)
    for e in told:
        if isinstance(e, (ObjectAdded, ObjectRemoved)):
            names[type(e).__name__].add((e.obj.agent, e.obj.object_id.object_name))
        elif isinstance(e, DomainStateChanged):
            names[type(e).__name__].add((e.obj.agent, f"{e.obj.name}:{e.new}"))
    for agent, change in zip(agents, changes):
        assert (agent.name, change["removed"]) in names["ObjectRemoved"], told
        assert (agent.name, change["added"]) in names["ObjectAdded"], told
        for name, state in (("web1", "paused"), ("db1", "running"), ("build", "running")):
            assert (agent.name, f"{name}:{state}") in names["DomainStateChanged"], told
    if late_agent:
        assert any(isinstance(e, AgentAdded) and e.agent.name == agents[-1].name for e in told)
    # and the console works again
    db1 = console.domains.get(f"{how}-0/db1")
    # (the state is waited for: through a broker a call's pushes and its reply come through two queues,
    # docs/CONSOLE.md, Job apartments)
    assert db1.suspend().wait_state("paused", timeout=5).state == PAUSED == \
        agents[0].hypervisor.invoke("Domain", db1.uuid, "virDomainGetState", [0])[0]


def test_broker_stopped_and_restarted(broker: RabbitNode, fleet: Fleet, timings: Timings) -> None:
    """A graceful stop: RabbitMQ ends every session ("shutdown") and closes cleanly."""
    _outage("stop", broker, fleet, timings)


def test_broker_killed_and_restarted_while_an_agent_starts(broker: RabbitNode, fleet: Fleet,
                                                           timings: Timings) -> None:
    """A crash (SIGKILL): connections drop. An agent started during the outage (require_connection=False,
    as the daemon runs) connects when the broker comes up, and the console adds it."""
    _outage("kill", broker, fleet, timings, late_agent=True)


# --- an agent dies and comes back --------------------------------------------------------------------------

@pytest.fixture
def shared_libvirt() -> Iterator[libvirt.virConnect]:
    """A direct connection to test:///default (shared by the process); what the test adds is removed."""
    conn = libvirt.open(DEFAULT_URI)
    yield conn
    for dom in conn.listAllDomains():
        if dom.name().startswith("fault-"):
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
    test = conn.lookupByName("test")
    if test.info()[0] == PAUSED:
        test.resume()
    conn.close()


def test_agent_killed_and_restarted(broker: RabbitNode, fleet: Fleet, shared_libvirt: libvirt.virConnect,
                                    tmp_path: Path, timings: Timings) -> None:
    state = tmp_path / "restart-state"
    agent = fleet.agent(broker.url, "fault-restart", uri=DEFAULT_URI, state_dir=state)
    bystander = fleet.agent(broker.url, "fault-bystander")
    console = fleet.console(broker.url)
    gone = shared_libvirt.defineXML(domain_xml("fault-gone")).UUIDString()
    wait_until(lambda: any(d.uuid == gone and d.agent == agent.name for d in console.domains), timeout=5)
    truth_hv = LibvirtHypervisor(DEFAULT_URI)
    try:
        with console.subscribe(kinds=(AgentLost, AgentRestarted, AgentAdded, ObjectRemoved, ObjectAdded)) as sub:
            killed = time.monotonic()
            agent.kill()  # no goodbye in the protocol: the console only misses its heartbeats
            lost = next_event(sub, AgentLost, lambda e: e.agent.name == agent.name, timeout=3 * HEARTBEAT + 2)
            lost_after = time.monotonic() - killed
            assert lost.agent.epoch == agent.epoch

            # while it is down
            shared_libvirt.lookupByUUIDString(gone).undefine()
            added = shared_libvirt.defineXML(domain_xml("fault-new")).UUIDString()
            shared_libvirt.lookupByName("test").suspend()
            expected = truth(truth_hv)

            started = time.monotonic()
            again = fleet.agent(broker.url, "fault-restart", uri=DEFAULT_URI, state_dir=state)
            assert again.name == agent.name and again.epoch == agent.epoch + 1
            restarted = next_event(sub, AgentRestarted, lambda e: e.agent.name == agent.name, timeout=5)
            restarted_after = time.monotonic() - started
            assert (restarted.old_epoch, restarted.agent.epoch) == (agent.epoch, again.epoch)
            converge = wait_until(lambda: seen(console, again.name) == expected, timeout=5)
            removed = next_event(sub, ObjectRemoved, lambda e: e.obj.uuid == gone, timeout=1)
            assert removed.obj.agent == agent.name
            assert console.domains.get("fault-restart/fault-new").uuid == added
            assert not console.is_lost(bystander.name) and not console.is_lost(again.name)
            assert console.domains.get("fault-restart/test").state == PAUSED
            # every object of the new epoch
            assert {o.object_id.agent_epoch for o in console.domains if o.agent == again.name} <= {again.epoch, 0}
        timings.add(f"agent killed and restarted: AgentLost +{lost_after:.2f} s after the kill "
                    f"(3 heartbeats of {HEARTBEAT:g} s), AgentRestarted +{restarted_after:.2f} s after the new "
                    f"agent started, converged +{converge:.2f} s later")
    finally:
        truth_hv.close()


# --- the console dies and comes back -----------------------------------------------------------------------

def test_console_restarted_rebuilds_everything_from_queries(broker: RabbitNode, fleet: Fleet,
                                                            timings: Timings) -> None:
    agents = [fleet.agent(broker.url, f"fault-console-{i}") for i in range(2)]
    first = fleet.console(broker.url)
    wait_until(lambda: converged(first, agents), timeout=5)
    first.domains.get("fault-console-0/web1").suspend()
    epochs = {a.name: a.epoch for a in first.agents}
    first.close()

    # with no console at all
    change_everything(agents[1], "fault-console-new")
    expected = [truth(a.hypervisor) for a in agents]

    started = time.monotonic()
    second = fleet.console(broker.url)
    # start() located the agents and queried each (an answer that missed the discovery window on a
    # loaded machine: the agent's next heartbeat makes the console query it)
    wait_until(lambda: converged(second, agents, expected), timeout=5)
    elapsed = time.monotonic() - started
    assert {a.name: a.epoch for a in second.agents} == epochs
    assert second.domains.get("fault-console-0/web1").state == PAUSED
    assert second.domains.get("fault-console-1/build").state == RUNNING
    timings.add(f"console restarted: new console started and loaded {len(second.domains)} domains, "
                f"{len(second.volumes)} volumes in {elapsed:.2f} s (discovery window 0.5 s)")
