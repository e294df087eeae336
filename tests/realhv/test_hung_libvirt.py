"""A hung libvirtd (SIGSTOP) or a hung QEMU never silences the agent: the real-hypervisor tier.

While libvirtd is stopped the agent keeps answering queries and locate, method calls time out or are
refused with typed errors, heartbeats say libvirt is unresponsive within 2 heartbeats; after SIGCONT
everything converges with nothing lost. A stopped QEMU holds only its own domain. libvirtd and QEMU
are always continued in a ``finally`` (a stopped libvirtd would break the rest of the tier).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import libvirt
import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console, RemoteObject
from virtq.console.events import LibvirtEvent
from virtq.schema.codec import AgentHeartbeat, AgentLocateRequest, AgentLocateResponse, QueryRequest, QueryResponse
from virtq.schema.codec import decode, direct_address
from virtq.schema.errors import LibvirtTimeoutError, ObjectBusyError, RemoteError
from virtq.testing import wait_until

from .conftest import TinyGuest
from .harness import LibvirtDaemons, Unavailable

pytestmark = pytest.mark.realhv

HEARTBEAT = 0.5
CALL_TIMEOUT = 2.0
STOPPED_FOR = 6.0
"""Seconds libvirtd (or QEMU) stays stopped: 12 heartbeats and 3 call timeouts, enough to see every effect."""
RUNNING, PAUSED = libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED


class Heartbeats:
    """Every heartbeat the agent sends, with when (recorded at the agent: exact, whatever consoles do)."""

    def __init__(self, agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: List[Tuple[float, Dict[str, Any]]] = []
        original = agent._send

        def send(wire: Any) -> bool:
            if wire.subject.startswith("agent.ind.heartbeat"):
                message = decode(wire)
                assert isinstance(message, AgentHeartbeat)
                self.sent.append((time.monotonic(), dict(message.info.attributes)))
            return original(wire)

        monkeypatch.setattr(agent, "_send", send)

    def after(self, moment: float) -> List[Dict[str, Any]]:
        return [attributes for at, attributes in self.sent if at > moment]


@pytest.fixture
def hung_agent(admin_agent: Callable[..., Agent]) -> Agent:
    return admin_agent(heartbeat=HEARTBEAT, interval=HEARTBEAT, call_timeout=CALL_TIMEOUT, lookup_timeout=1.0,
                       object_queue=0)


@pytest.fixture
def truth(real_libvirt: str) -> Iterator[libvirt.virConnect]:
    conn = libvirt.open(real_libvirt)
    yield conn
    conn.close()


def running_guest(console: Console, agent: Agent, guest: TinyGuest) -> RemoteObject:
    (node,) = console.nodes.of_agent(agent.name)
    dom = node.domainDefineXML(xml=guest.xml)
    assert isinstance(dom, RemoteObject)
    events = console.subscribe(kinds=LibvirtEvent)
    try:
        dom.create()
        # Its events' re-reads run in its apartment: let the last one ("started") end, so that what the
        # test sees of the domain is the test's own doing.
        deadline = time.monotonic() + 10
        while True:
            event = events.get(max(0.0, deadline - time.monotonic()))
            assert event is not None, "no started event within 10 s"
            if isinstance(event, LibvirtEvent) and event.event == "started" and \
                    event.object_id.object_name == f"Domain:{dom.uuid}":
                break
    finally:
        console.unsubscribe(events)
    wait_until(lambda: converged(console, agent, libvirt_of(agent)) and not agent.apartments.busy(), timeout=10)
    return dom


def libvirt_of(agent: Agent) -> libvirt.virConnect:
    hv = agent.hypervisor
    assert isinstance(hv, LibvirtHypervisor)
    return hv._conn


def answered_quickly(console: Console, agent: Agent) -> float:
    """A full query and a locate, answered by the agent itself; the slower of the two, in seconds."""
    started = time.monotonic()
    replies = console.query(agent.name, QueryRequest(what="OBJECT"), timeout=5)
    assert all(isinstance(r, QueryResponse) for r in replies), replies
    query = time.monotonic() - started
    started = time.monotonic()
    route = console.tracker.route(agent.name)  # (query() sends queries only)
    (locate,) = console.requests.ask(route, AgentLocateRequest(), direct_address(agent.name), 5, f"locate {agent.name}")
    assert isinstance(locate, AgentLocateResponse)
    return max(query, time.monotonic() - started)


def failure(call: Callable[[], Any]) -> Tuple[Optional[BaseException], float]:
    started = time.monotonic()
    try:
        call()
    except RemoteError as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def converged(console: Console, agent: Agent, truth: libvirt.virConnect) -> bool:
    """The console's view of the agent's domains (names, ids, pushed states) equals libvirt's."""
    seen = {d.uuid: (d.name, d.id, d.latest().state) for d in console.domains if d.agent == agent.name}
    real = {d.UUIDString(): (d.name(), d.ID(), d.info()[0]) for d in truth.listAllDomains(0)}
    return seen == real


def test_a_stopped_libvirtd_leaves_the_agent_answering_and_nothing_is_lost(
        libvirt_daemons: LibvirtDaemons, hung_agent: Agent, admin_console: Callable[..., Console],
        tiny_guest: Callable[[], TinyGuest], truth: libvirt.virConnect, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = hung_agent
    console, other = admin_console(agent, timeout=10), admin_console(agent, timeout=10)
    dom = running_guest(console, agent, tiny_guest())
    wait_until(lambda: converged(console, agent, truth), timeout=10)
    beats = Heartbeats(agent, monkeypatch)
    outcomes: Dict[str, Tuple[Optional[BaseException], float]] = {}
    slowest = 0.0
    try:
        with libvirt_daemons.libvirtd_stopped():
            stopped = time.monotonic()
            suspend = threading.Thread(target=lambda: outcomes.setdefault("suspend", failure(dom.suspend)))
            suspend.start()
            wait_until(lambda: agent.apartments.running(f"Domain:{dom.uuid}") is not None, timeout=2)
            outcomes["resume"] = failure(lambda: other.domains.get(dom.uuid).resume())
            outcomes["node"] = failure(lambda: other.nodes.of_agent(agent.name)[0].getCapabilities())
            while time.monotonic() - stopped < STOPPED_FOR:
                slowest = max(slowest, answered_quickly(other, agent))
            suspend.join(CALL_TIMEOUT + 5)
            during = beats.after(stopped)
    except Unavailable as exc:
        pytest.skip(f"cannot stop libvirtd: {exc}")
    print(f"\nlibvirtd stopped {STOPPED_FOR:.0f} s: slowest query/locate {slowest * 1000:.0f} ms; "
          f"heartbeats {len(during)}, first unresponsive: #"
          f"{next(i for i, b in enumerate(during, 1) if b['libvirt'] == 'unresponsive')}; "
          + ", ".join(f"{k}: {type(e).__name__} in {t:.2f} s" for k, (e, t) in outcomes.items()))
    assert slowest < 1.0
    error, took = outcomes["suspend"]
    assert isinstance(error, LibvirtTimeoutError) and CALL_TIMEOUT <= took < CALL_TIMEOUT + 1.5, outcomes
    assert error.error_text == f"Timed out during operation: libvirt did not answer virDomainSuspend within " \
                               f"{CALL_TIMEOUT:g} s"
    error, took = outcomes["resume"]
    assert isinstance(error, ObjectBusyError) and took < 0.5, outcomes  # refused at once: its object is stuck
    assert f"Domain:{dom.uuid} has 1 libvirt call stuck, the oldest suspend for" in error.error_text
    error, took = outcomes["node"]
    assert isinstance(error, LibvirtTimeoutError) and took < CALL_TIMEOUT + 1.5, outcomes
    assert len(during) >= STOPPED_FOR / HEARTBEAT - 2  # heartbeats kept going out
    assert any(b["libvirt"] == "unresponsive" for b in during[:2]), during[:3]
    assert during[-1]["stuck"] >= 2 and during[-1]["stuck_age"] > STOPPED_FOR - 1.5
    # After SIGCONT: healthy again, the suspend that timed out happened, and the console saw it.
    wait_until(lambda: beats.sent[-1][1]["libvirt"] == "ok", timeout=10)
    wait_until(lambda: truth.lookupByUUIDString(dom.uuid).info()[0] == PAUSED, timeout=10)
    wait_until(lambda: converged(console, agent, truth), timeout=10)
    dom.resume()
    assert dom.getInfo()["state"] == RUNNING


def qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())


@contextlib.contextmanager
def qemu_stopped(name: str) -> Iterator[int]:
    pid = qemu_pid(name)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_stopped_qemu_holds_only_its_own_domain(hung_agent: Agent, admin_console: Callable[..., Console],
                                                   tiny_guest: Callable[[], TinyGuest],
                                                   truth: libvirt.virConnect) -> None:
    agent = hung_agent
    console, other = admin_console(agent, timeout=10), admin_console(agent, timeout=10)
    stuck_guest, free_guest = tiny_guest(), tiny_guest()
    stuck, free = running_guest(console, agent, stuck_guest), running_guest(console, agent, free_guest)
    outcomes: Dict[str, Tuple[Optional[BaseException], float]] = {}
    with qemu_stopped(stuck_guest.name):
        suspend = threading.Thread(target=lambda: outcomes.setdefault("suspend", failure(stuck.suspend)))
        suspend.start()
        wait_until(lambda: agent.apartments.running(f"Domain:{stuck.uuid}") is not None, timeout=2)
        outcomes["again"] = failure(lambda: other.domains.get(stuck.uuid).resume())
        started = time.monotonic()
        free.suspend()
        assert free.getInfo()["state"] == PAUSED
        free.resume()
        assert free.getInfo()["state"] == RUNNING
        others = time.monotonic() - started
        slowest = answered_quickly(other, agent)
        suspend.join(CALL_TIMEOUT + 5)
    print(f"\nQEMU stopped: the other domain's 4 calls {others * 1000:.0f} ms, query/locate {slowest * 1000:.0f} ms; "
          + ", ".join(f"{k}: {type(e).__name__} in {t:.2f} s" for k, (e, t) in outcomes.items()))
    assert others < 3.0 and slowest < 1.0
    assert isinstance(outcomes["suspend"][0], LibvirtTimeoutError), outcomes
    assert isinstance(outcomes["again"][0], ObjectBusyError) and outcomes["again"][1] < 0.5, outcomes
    wait_until(lambda: truth.lookupByUUIDString(stuck.uuid).info()[0] == PAUSED, timeout=10)
    wait_until(lambda: converged(console, agent, truth), timeout=10)
