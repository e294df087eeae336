"""Push, not poll, against a real libvirtd with the QEMU driver (TCG): what the test-driver tier
checks, with the events real QEMU emits.

Real QEMU differs from libvirt's test driver: ``create`` emits RESUMED/UNPAUSED before
STARTED/BOOTED (libvirt starts QEMU paused, then lets it run), ``destroy`` emits
SHUTDOWN/HOST before STOPPED/DESTROYED. These sequences are asserted exactly, except where QEMU
and libvirt are genuinely nondeterministic: SHUTDOWN/HOST is missing now and then on a loaded
machine (libvirt tears the monitor down before it read QEMU's SHUTDOWN), and a sample may catch
the short PAUSED while QEMU starts or the short SHUTDOWN state while it stops.

Timings (event latency, libvirt call -> console subscriber) are measured and printed, not asserted.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Type

import libvirt
import pytest

from virtq.agent import Agent
from virtq.console import Console, Job, RemoteObject
from virtq.console.events import (ConfigChanged, DomainStateChanged, Event, LibvirtEvent, ObjectEvent,
                                  StatsUpdated)
from virtq.testing import wait_until

from .conftest import TinyGuest
from .harness import LibvirtDaemons, Unavailable

pytestmark = pytest.mark.realhv

INTERVAL = 0.3
"""The agent's statistics and heartbeat interval in this tier."""
RUNNING, PAUSED, SHUTOFF = libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTOFF
INFO_FIELDS = ("state", "maxMem", "memory", "nrVirtCpu", "cpuTime")
BULK_KEYS = ("state.state", "balloon.maximum", "balloon.current", "vcpu.current", "cpu.time")
"""What the agent's bulk pass reads from virConnectGetAllDomainStats for the virDomainGetInfo fields."""

CREATE = ["resumed/unpaused", "started/booted"]
SUSPEND = ["suspended/paused"]
RESUME = ["resumed/unpaused"]
DESTROY = ["shutdown/host", "stopped/destroyed"]
DESTROYS = (DESTROY, ["stopped/destroyed"])
"""What destroy emits: SHUTDOWN/HOST (QEMU's answer to libvirt's SIGTERM) is lost now and then under load."""


class Recorder:
    """Every event a console subscriber receives, with the monotonic time it arrived."""

    def __init__(self, console: Console) -> None:
        self._cond = threading.Condition()
        self.events: List[Tuple[float, Event]] = []
        self.subscription = console.subscribe(self._receive, kinds=Event)  # every kind, per-object StatsUpdated too

    def _receive(self, event: Event) -> None:
        now = time.monotonic()
        with self._cond:
            self.events.append((now, event))
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def timed(self, uuid: str, kinds: Tuple[Type[Event], ...] = (Event,), since: int = 0) -> List[Tuple[float, Event]]:
        """(arrival, event) of one domain's events of these kinds, from ``since`` on."""
        with self._cond:
            events = self.events[since:]
        return [(t, e) for t, e in events if isinstance(e, kinds) and uuid_of(e) == uuid]

    def of(self, uuid: str, kinds: Tuple[Type[Event], ...] = (Event,), since: int = 0) -> List[Event]:
        return [e for _, e in self.timed(uuid, kinds, since)]

    def lifecycle(self, uuid: str, since: int = 0) -> List[str]:
        """The domain's domainLifecycle events as "event/detail"."""
        return [f"{e.event}/{e.detail}" for e in self.of(uuid, (LibvirtEvent,), since)
                if isinstance(e, LibvirtEvent) and e.name == "domainLifecycle"]

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def lifecycle_until(self, uuid: str, last: str, since: int, timeout: float = 10.0) -> List[str]:
        """Wait for the domain's lifecycle event ``last`` since ``since``; returns all of them."""
        self.wait(lambda: last in self.lifecycle(uuid, since), timeout)
        return self.lifecycle(uuid, since)

    def wait_lifecycle(self, uuid: str, count: int, since: int, timeout: float = 10.0) -> List[str]:
        """Wait for ``count`` lifecycle events of the domain since ``since``; returns all of them."""
        self.wait(lambda: len(self.lifecycle(uuid, since)) >= count, timeout)
        return self.lifecycle(uuid, since)

    def states(self, uuid: str, since: int = 0) -> List[DomainStateChanged]:
        """The domain's state transitions (not the console learning a new domain's state: "unknown" -> …)."""
        return [e for e in self.of(uuid, (DomainStateChanged,), since)
                if isinstance(e, DomainStateChanged) and e.old != "unknown"]


def uuid_of(event: Event) -> Optional[str]:
    if isinstance(event, ObjectEvent):
        return str(event.obj.values.get("uuid"))
    if isinstance(event, LibvirtEvent):
        return event.object_id.object_name.partition(":")[2]
    return None


def report(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    """Measurements go to the terminal even when pytest captures output."""
    with capsys.disabled():
        print()
        for line in lines:
            print(f"  [realhv push] {line}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return (f"n={len(ordered)} min {ms(ordered[0])}, p50 {ms(statistics.median(ordered))}, "
            f"p90 {ms(p90)}, max {ms(ordered[-1])}")


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def push_agent(admin_agent: Callable[..., Agent]) -> Agent:
    return admin_agent(heartbeat=INTERVAL, interval=INTERVAL)


@pytest.fixture
def push_console(admin_console: Callable[..., Console], push_agent: Agent) -> Console:
    return admin_console(push_agent, timeout=20)


@pytest.fixture
def recorder(push_console: Console) -> Iterator[Recorder]:
    rec = Recorder(push_console)
    yield rec
    push_console.unsubscribe(rec.subscription)


@pytest.fixture
def direct(real_libvirt: str) -> Iterator[Callable[[], libvirt.virConnect]]:
    """Direct libvirt connections (not through virtq), closed after the test."""
    opened: List[libvirt.virConnect] = []

    def open_connection() -> libvirt.virConnect:
        conn = libvirt.open(real_libvirt)
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


def define(console: Console, agent: Agent, rec: Recorder, guest: TinyGuest) -> RemoteObject:
    """Define a guest through the console; return once its DEFINED event and first statistics are in."""
    (node,) = console.nodes.of_agent(agent.name)
    mark = rec.mark()
    dom = node.domainDefineXML(xml=guest.xml)
    assert isinstance(dom, RemoteObject), dom
    assert rec.wait_lifecycle(dom.uuid, 1, mark) == ["defined/added"]
    # Its statistics come in a sample (StatsUpdated, DomainStateChanged from "unknown") or, when the
    # sample was taken before the console knew the domain, with a record (ObjectAdded/ConfigChanged).
    assert rec.wait(lambda: any(e.obj.stats.get("state") == SHUTOFF for e in rec.of(dom.uuid, (ObjectEvent,), mark)
                                if isinstance(e, ObjectEvent)))
    return dom.latest()


def start(dom: RemoteObject, rec: Recorder) -> RemoteObject:
    """Start a defined guest through the console; return once it runs and both start events are in."""
    mark = rec.mark()
    job: Job = dom.create()
    running = job.wait_state("running", timeout=10)
    assert rec.wait_lifecycle(dom.uuid, len(CREATE), mark) == CREATE
    return running


def same_domain(event: Event, dom: RemoteObject) -> bool:
    """The event names the domain, and the snapshot it carries is that domain's."""
    if isinstance(event, LibvirtEvent):
        return (event.object_id.object_name == dom.object_id.object_name and event.agent == dom.agent
                and event.obj is not None and event.obj.uuid == dom.uuid and event.obj.name == dom.name)
    assert isinstance(event, ObjectEvent)
    return event.obj.object_id == dom.object_id and event.obj.uuid == dom.uuid


# --- lifecycle events ---------------------------------------------------------------------------------


def test_create_emits_resumed_then_started(push_console: Console, push_agent: Agent, recorder: Recorder,
                                          tiny_guest: Callable[[], TinyGuest],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    guest = tiny_guest()
    dom = define(push_console, push_agent, recorder, guest)
    mark = recorder.mark()

    began = time.monotonic()
    job = dom.create()
    returned = time.monotonic()
    running = job.wait_state("running", timeout=10)
    assert running.state_name == "running" and running.id > 0

    assert recorder.wait_lifecycle(dom.uuid, 2, mark) == CREATE  # exactly, in QEMU's order
    timed = [(t, e) for t, e in recorder.timed(dom.uuid, (LibvirtEvent,), mark)]
    assert all(same_domain(e, dom) for _, e in timed)
    assert all(isinstance(e, LibvirtEvent) and e.severity == 5 and e.data == {} for _, e in timed)
    assert wait_until(guest.booted, timeout=20), f"serial output: {guest.serial_text()!r}"

    # The state moves shutoff -> running once (a sample taken while QEMU is still starting may see it
    # paused first: libvirt starts QEMU stopped, then resumes it), and the job that started it owns it.
    changes = recorder.states(dom.uuid, mark)
    assert [c.new for c in changes] in (["running"], ["paused", "running"]), changes
    assert changes[0].old == "shutoff"
    assert all(c.job == job.id for c in changes), changes
    assert changes[-1].reason in ("resumed/unpaused", "started/booted", "create"), changes
    assert all(same_domain(c, dom) for c in changes)
    assert push_console.domains.get(dom.uuid).state_name == "running"

    report(capsys, f"create: QEMU emitted {' -> '.join(CREATE)}; state changes "
                   f"{[(c.old, c.new, c.reason) for c in changes]}",
           f"create: the call took {ms(returned - began)}; at the subscriber "
           + ", ".join(f"{e.event}/{e.detail} +{ms(t - began)}" for t, e in timed if isinstance(e, LibvirtEvent))
           + " after the call began")


def test_suspend_resume_destroy(push_console: Console, push_agent: Agent, recorder: Recorder,
                                tiny_guest: Callable[[], TinyGuest], capsys: pytest.CaptureFixture[str]) -> None:
    dom = define(push_console, push_agent, recorder, tiny_guest())
    start(dom, recorder)
    mark = recorder.mark()
    jobs = {}
    seen: List[str] = []

    for method, expected, state in (("suspend", (SUSPEND,), "paused"), ("resume", (RESUME,), "running"),
                                    ("destroy", DESTROYS, "shutoff")):
        before = recorder.mark()
        job = getattr(dom.latest(), method)()
        jobs[method] = job
        job.wait_state(state, timeout=10)
        events = recorder.lifecycle_until(dom.uuid, expected[0][-1], before)
        assert events in expected, method
        seen += events

    assert recorder.lifecycle(dom.uuid, mark) == seen
    assert all(same_domain(e, dom) for e in recorder.of(dom.uuid, (LibvirtEvent,), mark))
    # Between SHUTDOWN and STOPPED libvirt reports the state "shutdown" for a few ms: a sample may see it.
    # (The subscriber hears of the last change on its own thread, after the repository: wait for it.)
    assert recorder.wait(lambda: [c.new for c in recorder.states(dom.uuid, mark)][-1:] == ["shutoff"])
    changes = recorder.states(dom.uuid, mark)
    assert [(c.old, c.new) for c in changes] in (
        [("running", "paused"), ("paused", "running"), ("running", "shutoff")],
        [("running", "paused"), ("paused", "running"), ("running", "shutdown"), ("shutdown", "shutoff")]), changes
    reasons = {"suspend": ("suspended/paused", "suspend"), "resume": ("resumed/unpaused", "resume"),
               "destroy": ("stopped/destroyed", "shutdown/host", "destroy")}
    methods = ["suspend", "resume"] + ["destroy"] * (len(changes) - 2)
    for change, method in zip(changes, methods):
        assert change.job == jobs[method].id, (method, change)
        assert change.reason in reasons[method], (method, change)
        assert same_domain(change, dom)
    final = push_console.domains.get(dom.uuid)
    assert (final.state_name, final.id) == ("shutoff", -1)

    report(capsys, f"suspend/resume/destroy: QEMU emitted {' -> '.join(seen)}",
           f"state changes (old, new, reason): {[(c.old, c.new, c.reason) for c in changes]}")


# --- statistics --------------------------------------------------------------------------------------


def test_statistics(push_console: Console, push_agent: Agent, recorder: Recorder,
                    tiny_guest: Callable[[], TinyGuest], direct: Callable[[], libvirt.virConnect],
                    capsys: pytest.CaptureFixture[str]) -> None:
    running = define(push_console, push_agent, recorder, tiny_guest())
    idle = define(push_console, push_agent, recorder, tiny_guest())  # defined, never started
    start(running, recorder)
    truth = direct()

    # virConnectGetAllDomainStats describes both guests completely, even without a memory balloon
    # device: libvirt reports balloon.* from the definition. So one bulk call covers every domain.
    flags = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
    raw = {dom.UUIDString(): record for dom, record in truth.getAllDomainStats(
        libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
        | libvirt.VIR_DOMAIN_STATS_VCPU, flags)}
    for uuid in (running.uuid, idle.uuid):
        assert set(BULK_KEYS) <= set(raw[uuid]), sorted(raw[uuid])
    bulk = push_agent.hypervisor.bulk_domain_info()
    for dom in (running, idle):
        info = dict(zip(INFO_FIELDS, truth.lookupByUUIDString(dom.uuid).info()))
        assert set(bulk[dom.uuid]) == set(INFO_FIELDS)
        assert {f: bulk[dom.uuid][f] for f in INFO_FIELDS[:4]} == {f: info[f] for f in INFO_FIELDS[:4]}
    assert bulk[running.uuid]["state"] == RUNNING and bulk[running.uuid]["cpuTime"] > 0
    assert (bulk[running.uuid]["maxMem"], bulk[running.uuid]["memory"], bulk[running.uuid]["nrVirtCpu"]) == \
        (64 * 1024, 64 * 1024, 1)
    # A shut-off domain has used no CPU: virDomainGetInfo says 0, and so must the bulk pass (without
    # cgroups libvirt's bulk cpu.time of an inactive domain is libvirtd's own CPU time).
    assert bulk[idle.uuid]["state"] == SHUTOFF and bulk[idle.uuid]["cpuTime"] == 0 == truth.lookupByUUIDString(
        idle.uuid).info()[4]
    pass_report = push_agent.sampler.sample("Domain")
    assert (pass_report.libvirt_calls, pass_report.skipped) == (1, ()), pass_report  # no per-domain fallback

    # Steady state: each interval brings the running guest's cpuTime (only), the idle guest nothing.
    mark = recorder.mark()
    began = time.monotonic()
    time.sleep(6 * INTERVAL)
    window = time.monotonic() - began
    busy = [e for e in recorder.of(running.uuid, (StatsUpdated,), mark) if isinstance(e, StatsUpdated)]
    assert recorder.of(idle.uuid, (StatsUpdated, DomainStateChanged, ConfigChanged), mark) == []
    assert len(busy) >= 3, busy
    assert all(set(e.changed) == {"cpuTime"} for e in busy), [e.changed for e in busy]
    cpu = [int(e.changed["cpuTime"]) for e in busy]
    assert cpu == sorted(set(cpu)), cpu  # strictly increasing
    assert all(same_domain(e, running) for e in busy)
    assert push_console.domains.get(running.uuid).cpuTime == cpu[-1]
    assert push_console.domains.get(idle.uuid).stats == {"state": SHUTOFF, "maxMem": 65536, "memory": 65536,
                                                          "nrVirtCpu": 1, "cpuTime": 0}

    report(capsys, f"statistics: {len(busy)} StatsUpdated for the running guest in {window:.2f} s "
                   f"(interval {INTERVAL} s), 0 for the idle one; cpuTime +{(cpu[-1] - cpu[0]) / 1e6:.1f} ms "
                   f"over the window; bulk record keys for the running guest: {len(raw[running.uuid])}")


def test_new_domain_sampled_before_its_record_still_gets_statistics(
        push_console: Console, push_agent: Agent, tiny_guest: Callable[[], TinyGuest],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry knows a new domain before the agent pushes its record: a statistics pass in between
    sends its values to consoles that do not know it yet (they drop them). An idle domain's values never
    change, so they would never come again: the record must bring them.

    Made deterministic: the pass runs inside that window, and the event pump (whose DEFINED handling
    may push a record first, or not, depending on timing) waits until the define returned.
    """
    registry, pump = push_agent.registry, push_agent.pump
    learn, handle = registry.sync_identities, pump.handle
    defined = threading.Event()

    def learn_then_sample(identities: Any) -> Any:
        changes = learn(identities)
        push_agent.sampler.sample("Domain")  # a periodic pass, before the record is pushed
        return changes

    def handle_later(event: Any) -> None:
        defined.wait(10)
        handle(event)

    monkeypatch.setattr(registry, "sync_identities", learn_then_sample)
    monkeypatch.setattr(pump, "handle", handle_later)
    (node,) = push_console.nodes.of_agent(push_agent.name)
    try:
        dom = node.domainDefineXML(xml=tiny_guest().xml)
    finally:
        defined.set()
    latest = push_agent.sampler.latest(dom.object_id.object_name)
    assert latest is not None and latest["state"] == SHUTOFF  # sampled during the define
    assert push_console.wait_for(lambda: dom.latest().stats == latest, timeout=5), dom.latest().stats


def test_cpu_time_never_goes_back(push_console: Console, push_agent: Agent, recorder: Recorder,
                                  tiny_guest: Callable[[], TinyGuest]) -> None:
    """Samples taken at once after events and by the periodic pass read the same counter."""
    dom = define(push_console, push_agent, recorder, tiny_guest())
    start(dom, recorder)
    mark = recorder.mark()
    for _ in range(3):
        dom.latest().suspend().wait_state("paused", timeout=10)
        time.sleep(INTERVAL)
        dom.latest().resume().wait_state("running", timeout=10)
        time.sleep(INTERVAL)
    cpu = [int(e.changed["cpuTime"]) for e in recorder.of(dom.uuid, (StatsUpdated,), mark)
           if isinstance(e, StatsUpdated) and "cpuTime" in e.changed]
    assert len(cpu) >= 3 and cpu == sorted(cpu), cpu


# --- configuration generations ------------------------------------------------------------------------


def test_config_generation(push_console: Console, push_agent: Agent, recorder: Recorder,
                           tiny_guest: Callable[[], TinyGuest], capsys: pytest.CaptureFixture[str]) -> None:
    guest = tiny_guest()
    dom = define(push_console, push_agent, recorder, guest)

    def fetched(expect: int) -> str:
        """Read the XML twice: ``expect`` new fetches (one per generation, none when it did not move)."""
        before = push_console.xml_fetches
        text = dom.latest().xml()
        assert dom.latest().xml() == text
        assert push_console.xml_fetches - before == expect
        return text

    gens = [dom.latest().configGen]
    assert f"<name>{guest.name}</name>" in fetched(1)
    fetched(0)

    start(dom, recorder)  # STARTED: the live XML (ids, aliases) differs
    gens.append(dom.latest().configGen)
    assert gens[1] != gens[0]
    assert "id='" in fetched(1).split(">", 1)[0]

    mark = recorder.mark()  # suspend/resume change the run state only
    dom.latest().suspend().wait_state("paused", timeout=10)
    dom.latest().resume().wait_state("running", timeout=10)
    assert recorder.wait_lifecycle(dom.uuid, 2, mark) == SUSPEND + RESUME
    assert dom.latest().configGen == gens[1]
    assert recorder.of(dom.uuid, (ConfigChanged,), mark) == []
    fetched(0)

    dom.latest().destroy().wait_state("shutoff", timeout=10)  # STOPPED: back to the inactive XML
    assert recorder.lifecycle_until(dom.uuid, DESTROY[-1], mark) in [SUSPEND + RESUME + d for d in DESTROYS]
    gens.append(dom.latest().configGen)
    assert gens[2] != gens[1]
    assert "id='" not in fetched(1).split(">", 1)[0]

    mark = recorder.mark()  # DEFINED/UPDATED: a new definition of the same domain
    (node,) = push_console.nodes.of_agent(push_agent.name)
    node.domainDefineXML(xml=guest.xml.replace(
        "<vcpu>", f"<uuid>{dom.uuid}</uuid>\n  <description>second</description>\n  <vcpu>"))
    assert recorder.wait_lifecycle(dom.uuid, 1, mark) == ["defined/updated"]
    gens.append(dom.latest().configGen)
    assert gens[3] != gens[2]
    assert "<description>second</description>" in fetched(1)
    assert len(set(gens)) == len(gens)

    report(capsys, f"configGen: {len(gens)} generations over define/start/suspend+resume/destroy/redefine; "
                   f"{push_console.xml_fetches} XML fetch(es) in all")


# --- restarts ----------------------------------------------------------------------------------------


def test_reconnects_after_libvirtd_restart(libvirt_daemons: LibvirtDaemons, push_console: Console,
                                           push_agent: Agent, recorder: Recorder,
                                           tiny_guest: Callable[[], TinyGuest],
                                           direct: Callable[[], libvirt.virConnect],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if libvirt_daemons.reused:
        pytest.skip("the harness reused a libvirtd it did not start: not restarting it")
    dom = define(push_console, push_agent, recorder, tiny_guest())
    assert push_agent.hypervisor.alive()

    began = time.monotonic()
    try:
        libvirt_daemons.restart_libvirtd()
    except Unavailable as exc:
        pytest.skip(f"cannot restart libvirtd: {exc}")
    restarted = time.monotonic() - began
    # The agent reconnects by itself (libvirt's close callback: test_libvirt_connection.py), not at the reconcile.
    wait_until(lambda: push_agent.reconnector.reconnects == 1 and push_agent.hypervisor.alive(), timeout=10)
    push_agent.reconcile()  # the periodic backstop, after that, changes nothing
    assert push_agent.hypervisor.alive()

    # Events flow again: a guest started behind virtq's back (a direct connection) is pushed.
    mark = recorder.mark()
    direct().lookupByUUIDString(dom.uuid).create()
    assert recorder.wait_lifecycle(dom.uuid, 2, mark) == CREATE
    assert push_console.wait_for(lambda: dom.latest().state_name == "running", timeout=10)
    # Subscribers hear of it on their own thread, after the repository changed: wait for the event too (QEMU
    # starts a guest paused, so a sample may catch it on the way: shut off -> paused -> running).
    assert recorder.wait(lambda: [s.new for s in recorder.states(dom.uuid, mark)][-1:] == ["running"]), \
        [(s.old, s.new) for s in recorder.states(dom.uuid, mark)]
    # ... and the agent's own calls work on the new connection.
    dom.latest().destroy().wait_state("shutoff", timeout=10)
    assert recorder.lifecycle_until(dom.uuid, DESTROY[-1], mark) in [CREATE + d for d in DESTROYS]

    report(capsys, f"libvirtd restart took {restarted:.2f} s; after the agent's own reconnect events flow again")


# --- timings -----------------------------------------------------------------------------------------


def test_event_latency(push_console: Console, push_agent: Agent, recorder: Recorder,
                       tiny_guest: Callable[[], TinyGuest], direct: Callable[[], libvirt.virConnect],
                       capsys: pytest.CaptureFixture[str]) -> None:
    """libvirt call (on a direct connection) -> the console subscriber: printed, not asserted."""
    dom = define(push_console, push_agent, recorder, tiny_guest())
    start(dom, recorder)
    handle = direct().lookupByUUIDString(dom.uuid)
    after_return: List[float] = []
    after_call: List[float] = []
    to_state: List[float] = []
    for i in range(20):
        action, wanted, state = (handle.suspend, "suspended/paused", "paused") if i % 2 == 0 else \
            (handle.resume, "resumed/unpaused", "running")
        mark = recorder.mark()
        began = time.monotonic()
        action()
        returned = time.monotonic()
        assert recorder.wait(lambda: wanted in recorder.lifecycle(dom.uuid, mark)
                             and any(c.new == state for c in recorder.states(dom.uuid, mark)))
        (arrived, _), = [(t, e) for t, e in recorder.timed(dom.uuid, (LibvirtEvent,), mark)]
        (changed, _), = recorder.timed(dom.uuid, (DomainStateChanged,), mark)
        after_call.append(arrived - began)
        after_return.append(arrived - returned)
        to_state.append(changed - began)

    report(capsys, f"event latency, call returned -> subscriber: {spread(after_return)}",
           f"event latency, call began -> subscriber: {spread(after_call)}",
           f"state change, call began -> DomainStateChanged at the subscriber: {spread(to_state)}")
