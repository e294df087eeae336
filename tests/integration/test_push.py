"""Push, not poll: libvirt events, statistics, configGen, agent liveness and job apartments,
end to end over real AMQP (direct mode) against libvirt's test driver.

What the test driver emits (probed with libvirt 9): domain lifecycle events for define
(defined/added, defined/updated), undefine (undefined/removed), create (started/booted),
suspend (suspended/paused), resume (resumed/unpaused), destroy (stopped/destroyed),
shutdown (stopped/shutdown — no SHUTDOWN event), managed save (stopped/saved), save and
restore (stopped/saved, started/restored), rename (undefined/renamed + defined/renamed);
domainMetadataChange for setMetadata; pool lifecycle (defined, started, stopped,
undefined) and poolRefresh. It emits nothing for reboot, setMemory, setVcpusFlags or
volume creation, and has no device hot-plug (attachDevice is unsupported).

test:///default is one in-memory hypervisor per process, shared by every connection, so
a direct libvirt connection here plays "anyone else" changing the agent's hypervisor. A
node-file URI (tests/data/node.xml) gives each connection its own copy.

The test driver reports the wall clock as every domain's cpuTime, running or not;
``RealisticCpu`` makes it behave like a real hypervisor (a domain's cpuTime advances only
while it runs) where a test needs idle domains.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import libvirt
import pytest
from pytest_mock import MockerFixture

from virtq.agent import Agent
from virtq.agent.hypervisor import Hypervisor
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console, RemoteObject
from virtq.console.events import (AgentAdded, AgentLost, AgentRestarted, ConfigChanged, DomainStateChanged, Event,
                                  LibvirtEvent, ObjectAdded, ObjectRemoved, Overflowed, StatsUpdated)
from virtq.console.subscriptions import Subscription
from virtq.schema import default_schema, errors
from virtq.schema.codec import TOPIC, StatsBatch, StatsIndication, decode, stats_subject
from virtq.schema.errors import CallTimeoutError
from virtq.testing import agent_url, domain_xml, next_event, pool_xml, wait_until
from virtq.transport import MemoryBus, direct_connection

from ..conftest import AgentFactory
from ..helpers import DEFAULT_URI, NODE_URI

pytestmark = pytest.mark.integration

FAST = {"heartbeat": 0.2, "interval": 0.2}
QUIET = {"heartbeat": 0.2, "interval": 30.0}  # no periodic sampling: only events and calls sample
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


def lifecycle(subscription: Subscription, uuid: str, timeout: float = 5.0) -> Tuple[str, str]:
    event = next_event(subscription, LibvirtEvent,
                       lambda e: e.name == "domainLifecycle" and e.object_id.object_name == f"Domain:{uuid}",
                       timeout)
    return event.event, event.detail


@pytest.fixture
def truth() -> Iterator[libvirt.virConnect]:
    """A direct libvirt connection to test:///default ("anyone"); what tests add there is removed after."""
    conn = libvirt.open(DEFAULT_URI)
    yield conn
    for dom in conn.listAllDomains():
        if dom.name().startswith("push-"):
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    for pool in conn.listAllStoragePools():
        if pool.name().startswith("push-"):
            if pool.isActive():
                pool.destroy()
            if pool.isPersistent():
                pool.undefine()
    test = conn.lookupByName("test")
    if test.info()[0] == PAUSED:
        test.resume()
    elif not test.isActive():
        test.create()
    conn.close()


class RealisticCpu(LibvirtHypervisor):
    """The test driver with a real hypervisor's cpuTime: it advances only while a domain runs
    (``frozen``: never). No bulk statistics, so every sample goes through ``invoke``."""

    def __init__(self, uri: str, frozen: bool = False) -> None:
        super().__init__(uri)
        self.frozen = frozen
        self._cpu: Dict[str, int] = {}
        self._cpu_lock = threading.Lock()

    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        result = super().invoke(class_name, key, function, args)
        if function == "virDomainGetInfo" and key is not None:
            with self._cpu_lock:
                if self.frozen or result[0] != RUNNING:
                    result[4] = self._cpu.setdefault(key, result[4])
                else:
                    self._cpu[key] = result[4]
        return result

    def bulk_domain_info(self) -> Dict[str, Dict[str, int]]:
        return {}

    def bulk_domain_info_of(self, keys: Sequence[str]) -> Dict[str, Dict[str, int]]:
        return {}


def uuids(console: Console) -> Dict[str, str]:
    return {d.name: d.uuid for d in console.domains}


# --- libvirt events arrive at subscribers ------------------------------------------------------------


@pytest.mark.parametrize("via", ["libvirt", "console"])
def test_every_domain_lifecycle_event_reaches_a_subscriber(via: str, start_agent: AgentFactory,
                                                           connect: Callable[..., Console],
                                                           truth: libvirt.virConnect, tmp_path: Path) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    sub = console.subscribe(kinds=LibvirtEvent)
    if via == "libvirt":
        uuid = truth.defineXML(domain_xml("push-life")).UUIDString()
        saved = tmp_path / "push-life.save"

        def dom() -> libvirt.virDomain:
            return truth.lookupByUUIDString(uuid)

        def snapshot_and_destroy() -> None:
            dom().snapshotCreateXML("<domainsnapshot><name>running</name></domainsnapshot>", 0)  # no event
            dom().destroy()

        steps: List[Tuple[Callable[[], Any], Tuple[str, str]]] = [
            (lambda: dom().create(), ("started", "booted")),
            (lambda: dom().suspend(), ("suspended", "paused")),
            (lambda: dom().resume(), ("resumed", "unpaused")),
            (lambda: dom().destroy(), ("stopped", "destroyed")),
            (lambda: dom().create(), ("started", "booted")),
            (lambda: dom().shutdown(), ("stopped", "shutdown")),  # no SHUTDOWN event from the test driver
            (lambda: dom().create(), ("started", "booted")),
            (lambda: dom().managedSave(0), ("stopped", "saved")),
            (lambda: dom().create(), ("started", "booted")),  # (the test driver: booted, not restored)
            (lambda: dom().save(str(saved)), ("stopped", "saved")),
            (lambda: truth.restore(str(saved)), ("started", "restored")),
            (snapshot_and_destroy, ("stopped", "destroyed")),
            (lambda: dom().revertToSnapshot(dom().snapshotLookupByName("running", 0), 0),
             ("started", "from_snapshot")),
            (lambda: dom().destroy(), ("stopped", "destroyed")),
            (lambda: dom().rename("push-life2", 0), ("undefined", "renamed")),
            (lambda: None, ("defined", "renamed")),  # the rename's second event
            (lambda: truth.defineXML(domain_xml("push-life2", memory_kib=32768, uuid=uuid)), ("defined", "updated")),
            (lambda: dom().undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA), ("undefined", "removed")),
        ]
    else:
        (node,) = console.nodes
        created = node.domainDefineXML(domain_xml("push-life"))
        uuid = created.uuid

        def on(method: str, *args: Any) -> Callable[[], Any]:
            return lambda: getattr(console.domains.get(uuid), method)(*args)

        steps = [(on("create"), ("started", "booted")), (on("suspend"), ("suspended", "paused")),
                 (on("resume"), ("resumed", "unpaused")), (on("destroy"), ("stopped", "destroyed")),
                 (on("create"), ("started", "booted")), (on("shutdown"), ("stopped", "shutdown")),
                 (lambda: node.domainDefineXML(domain_xml("push-life", memory_kib=32768, uuid=uuid)),
                  ("defined", "updated")),
                 (on("undefine"), ("undefined", "removed"))]
    first = next_event(sub, LibvirtEvent, lambda e: e.object_id.object_name == f"Domain:{uuid}")
    assert (first.name, first.event, first.detail) == ("domainLifecycle", "defined", "added")
    assert first.agent == agent.name
    assert first.obj is not None and first.obj.name == "push-life", first
    for action, expected in steps:
        action()
        assert lifecycle(sub, uuid) == expected, f"after {expected}"
        if expected == ("defined", "renamed"):
            assert console.domains.get(uuid).name == "push-life2"  # pushed with the event
    # the object is gone once its undefine event is told
    assert console.wait_for(lambda: uuid not in uuids(console).values(), timeout=5)


def test_metadata_change_event(start_agent: AgentFactory, connect: Callable[..., Console],
                               truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    sub = console.subscribe(kinds=(LibvirtEvent, ConfigChanged))
    dom = truth.lookupByName("test")
    uuid = dom.UUIDString()
    before = console.domains.get("test").configGen
    for kind, name, nsuri in ((libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "description", None),
                              (libvirt.VIR_DOMAIN_METADATA_TITLE, "title", None),
                              (libvirt.VIR_DOMAIN_METADATA_ELEMENT, "element", "http://virtq.test/push")):
        key, content = ("push", "<note>hi</note>") if nsuri else (None, f"push {name}")
        dom.setMetadata(kind, content, key, nsuri, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        changed = next_event(sub, ConfigChanged, lambda e: e.obj.uuid == uuid)
        event = next_event(sub, LibvirtEvent, lambda e: e.object_id.object_name == f"Domain:{uuid}")
        assert (event.name, event.event, event.detail) == ("domainMetadataChange", "", name)
        assert event.data == {"type": kind, "nsuri": nsuri}
        assert event.obj is not None and event.obj.name == "test"
        assert changed.old_gen == before and changed.new_gen != before
        before = changed.new_gen
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None, None, None, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None, None, None, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, "http://virtq.test/push",
                    libvirt.VIR_DOMAIN_AFFECT_LIVE)


def test_pool_lifecycle_and_refresh_events(start_agent: AgentFactory, connect: Callable[..., Console],
                                           truth: libvirt.virConnect, tmp_path: Path) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    sub = console.subscribe(kinds=(LibvirtEvent, ObjectAdded, ObjectRemoved))
    pool = truth.storagePoolDefineXML(pool_xml("push-pool", tmp_path / "pool"), 0)
    uuid = pool.UUIDString()
    name = f"Pool:{uuid}"
    added = next_event(sub, ObjectAdded, lambda e: e.obj.object_id.object_name == name)
    assert added.obj.class_name == "Pool" and added.obj.name == "push-pool"

    def pool_event() -> LibvirtEvent:
        event = next_event(sub, LibvirtEvent, lambda e: e.object_id.object_name == name)
        assert event.agent == agent.name
        return event

    event = pool_event()
    assert (event.name, event.event, event.detail) == ("poolLifecycle", "defined", "")
    assert event.obj is not None and event.obj.name == "push-pool"
    for action, expected in ((lambda: pool.build(0), ("poolLifecycle", "created")),
                             (lambda: pool.delete(0), ("poolLifecycle", "deleted")),
                             (lambda: pool.create(0), ("poolLifecycle", "started")),
                             (lambda: pool.refresh(0), ("poolRefresh", "")),
                             (pool.destroy, ("poolLifecycle", "stopped"))):
        action()
        event = pool_event()
        assert (event.name, event.event) == expected
        assert event.obj is not None and event.obj.name == "push-pool"
    pool.undefine()
    removed = next_event(sub, ObjectRemoved, lambda e: e.obj.object_id.object_name == name)
    assert removed.obj.name == "push-pool"
    event = pool_event()
    assert (event.name, event.event) == ("poolLifecycle", "undefined") and event.obj is None  # already gone


# Every other domain event kind, as libvirt-python would call the agent's callback with it: the test
# driver cannot emit these, so only libvirt's side is simulated; parsing, pump, wire and console are real.
# kind -> (callback arguments after the domain, event name, detail name, whether the XML may have changed)
SYNTHETIC: Dict[str, Tuple[Tuple[Any, ...], str, str, bool]] = {
    "REBOOT": ((), "", "", False),
    "RTC_CHANGE": ((3600,), "", "", False),
    "WATCHDOG": ((libvirt.VIR_DOMAIN_EVENT_WATCHDOG_PAUSE,), "", "pause", False),
    "IO_ERROR": (("/var/img.qcow2", "virtio-disk0", libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE), "", "pause", False),
    "GRAPHICS": ((libvirt.VIR_DOMAIN_EVENT_GRAPHICS_CONNECT, {"family": 0, "node": "127.0.0.1", "service": "5900"},
                  {"family": 0, "node": "10.0.0.9", "service": "40000"}, "none", [("x509dname", "CN=a")]),
                 "connect", "", False),
    "IO_ERROR_REASON": (("/var/img.qcow2", "virtio-disk0", libvirt.VIR_DOMAIN_EVENT_IO_ERROR_REPORT, "enospc"),
                        "", "report", False),
    "CONTROL_ERROR": ((), "", "", False),
    "BLOCK_JOB": (("/var/img.qcow2", libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_PULL, libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED),
                  "pull", "completed", True),
    "DISK_CHANGE": (("/old.iso", "/new.iso", "ide0-0-0", libvirt.VIR_DOMAIN_EVENT_DISK_CHANGE_MISSING_ON_START),
                    "", "change_missing_on_start", True),
    "TRAY_CHANGE": (("ide0-1-0", libvirt.VIR_DOMAIN_EVENT_TRAY_CHANGE_OPEN), "", "open", True),
    "PMWAKEUP": ((0,), "", "", False),
    "PMSUSPEND": ((0,), "", "", False),
    "BALLOON_CHANGE": ((32768,), "", "", False),
    "PMSUSPEND_DISK": ((0,), "", "", False),
    "DEVICE_REMOVED": (("net0",), "", "", True),
    "BLOCK_JOB_2": (("vda", libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY, libvirt.VIR_DOMAIN_BLOCK_JOB_READY),
                    "copy", "ready", False),
    "TUNABLE": (({"cputune.vcpu0": "0-1"},), "", "", True),
    "AGENT_LIFECYCLE": ((libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED,
                         libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_CHANNEL), "connected", "channel", False),
    "DEVICE_ADDED": (("net1",), "", "", True),
    "MIGRATION_ITERATION": ((2,), "", "", False),
    "JOB_COMPLETED": (({"time_elapsed": 5, "memory_total": 1 << 30},), "", "", False),
    "DEVICE_REMOVAL_FAILED": (("net0",), "", "", True),
    "METADATA_CHANGE": ((libvirt.VIR_DOMAIN_METADATA_ELEMENT, "http://virtq.test/"), "", "element", True),
    "BLOCK_THRESHOLD": (("vda", "/var/img.qcow2", 1 << 20, 4096), "", "", False),
    "MEMORY_FAILURE": ((libvirt.VIR_DOMAIN_EVENT_MEMORY_FAILURE_RECIPIENT_GUEST,
                        libvirt.VIR_DOMAIN_EVENT_MEMORY_FAILURE_ACTION_INJECT, 0), "guest", "inject", False),
    "MEMORY_DEVICE_SIZE_CHANGE": (("dimm0", 1 << 20), "", "", True),
}
WARNINGS = {"IO_ERROR", "IO_ERROR_REASON", "CONTROL_ERROR", "WATCHDOG", "MEMORY_FAILURE"}


def test_event_kinds_the_test_driver_cannot_produce_travel_the_same_path(start_agent: AgentFactory,
                                                                         connect: Callable[..., Console]) -> None:
    from virtq.agent.libvirt_events import DOMAIN_EVENT_KINDS, event_callback, event_name

    assert set(SYNTHETIC) == set(DOMAIN_EVENT_KINDS) - {"LIFECYCLE"}  # a new kind needs a line here
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    sub = console.subscribe(kinds=LibvirtEvent)
    hv = agent.hypervisor
    assert isinstance(hv, LibvirtHypervisor)
    handle = hv._conn.lookupByName("test")
    for kind, (args, event_text, detail, config) in SYNTHETIC.items():
        gen = console.domains.get("test").configGen
        event_callback("domain", kind, DOMAIN_EVENT_KINDS[kind], agent.pump.deliver)(hv._conn, handle, *args, None)
        event = next_event(sub, LibvirtEvent)
        assert (event.name, event.event, event.detail) == (event_name("domain", kind), event_text, detail), kind
        assert event.object_id.object_name == f"Domain:{handle.UUIDString()}" and event.obj is not None
        assert set(event.data) == set(DOMAIN_EVENT_KINDS[kind].args), kind
        assert event.severity == (4 if kind in WARNINGS else 5), kind
        # the event's records were pushed before it: configGen has moved (or not) by now
        assert (console.domains.get("test").configGen != gen) is config, kind
    assert dict(event.data) == {"recipient": 1, "action": 1, "flags": 0} or kind != "MEMORY_FAILURE"


# --- objects defined or undefined by anyone are pushed at once -------------------------------------


def test_objects_defined_and_undefined_by_anyone_are_pushed_at_once(
        start_agent: AgentFactory, connect: Callable[..., Console], truth: libvirt.virConnect,
        tmp_path: Path, mocker: MockerFixture) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)  # reconcile: every 300 s
    console = connect(agent)
    queries = mocker.spy(agent.dispatcher, "query")
    sub = console.subscribe(kinds=(ObjectAdded, ObjectRemoved))
    configs = console.subscribe(kinds=ConfigChanged)

    def told(kind: Type[ObjectAdded] | Type[ObjectRemoved], name: str) -> RemoteObject:
        event = next_event(sub, kind, lambda e: e.obj.values.get("name") == name, timeout=2)
        return event.obj

    persistent = truth.defineXML(domain_xml("push-anyone"))
    obj = told(ObjectAdded, "push-anyone")
    assert obj.uuid == persistent.UUIDString() and obj.id == -1 and obj.agent == agent.name
    assert console.domains.get("push-anyone") == obj

    transient = truth.createXML(domain_xml("push-transient"), 0)  # exists only while it runs
    obj = told(ObjectAdded, "push-transient")
    assert obj.id == transient.ID() and obj.id > 0
    transient.destroy()
    told(ObjectRemoved, "push-transient")

    pool = truth.storagePoolCreateXML(pool_xml("push-transient-pool", tmp_path / "pool"), 0)
    told(ObjectAdded, "push-transient-pool")
    pool.destroy()
    told(ObjectRemoved, "push-transient-pool")

    persistent.undefine()
    obj = told(ObjectRemoved, "push-anyone")
    assert obj.uuid == persistent.UUIDString()
    assert {"push-anyone", "push-transient"}.isdisjoint(uuids(console))
    assert queries.call_count == 0  # pushed, never asked for
    # a new object comes with its generation: no ConfigChanged for what nobody changed since
    assert [e.obj.name for e in iter(lambda: configs.get(0), None) if isinstance(e, ConfigChanged)] == []


# --- statistics: each interval, only what changed -----------------------------------------------------


def test_statistics_arrive_each_interval_only_for_changed_domains(start_agent: AgentFactory,
                                                                  connect: Callable[..., Console]) -> None:
    agent = start_agent(RealisticCpu(NODE_URI), **FAST)
    console = connect(agent)
    ids = uuids(console)
    counts: Dict[str, List[StatsUpdated]] = {name: [] for name in ids}
    sub = console.subscribe(kinds=StatsUpdated)
    web1 = f"Domain:{ids['web1']}"
    # Skip what was already on its way when we subscribed (up to a pass that is not the first,
    # full one), then count over several intervals.
    next_event(sub, StatsUpdated, lambda e: e.obj.object_id.object_name == web1 and set(e.changed) == {"cpuTime"})
    started = time.monotonic()
    while len(counts["web1"]) < 5:
        event = next_event(sub, StatsUpdated, lambda e: e.obj.class_name == "Domain", timeout=2)
        counts[event.obj.name].append(event)
    elapsed = time.monotonic() - started
    assert elapsed < 5 * 0.2 * 4  # about one per interval, not one per second
    assert abs(len(counts["web2"]) - len(counts["web1"])) <= 1  # both running: both change
    assert counts["db1"] == [] and counts["build"] == []  # paused and shut off: nothing changed, nothing sent
    for event in counts["web1"] + counts["web2"]:
        assert set(event.changed) == {"cpuTime"}  # only the field that changed
        assert event.obj.cpuTime == event.changed["cpuTime"] and event.obj.state == RUNNING
    cpu = [e.changed["cpuTime"] for e in counts["web1"]]
    assert cpu == sorted(cpu) and len(set(cpu)) == len(cpu)
    # the console has the idle domains' values from the query / first pass all along
    assert console.domains.get("db1").state == PAUSED and console.domains.get("build").state == SHUTOFF


def test_a_sample_with_nothing_changed_sends_no_stats_message(start_agent: AgentFactory) -> None:
    hv = RealisticCpu(NODE_URI, frozen=True)
    agent = start_agent(hv, **FAST)
    # the first pass pushes everything (all classes); listen from after it
    wait_until(lambda: {r.class_name for r in agent.sampler.reports} == {"Domain", "Node", "Pool", "Volume"})
    wires: List[Any] = []
    connector = direct_connection(agent_url(agent), sources=[f"{TOPIC}/agent.ind.stats.#"])
    connector.start(wires.append, timeout=5)
    try:
        passes = 4
        calls = agent.sampler.libvirt_calls
        wait_until(lambda: agent.sampler.libvirt_calls >= calls + passes * 4, timeout=5)
        report = next(r for r in agent.sampler.reports if r.class_name == "Domain")
        assert report.sampled == 4 and report.changed == 0 and report.skipped == ()
        assert wires == []  # several passes, nothing changed: not one byte of statistics

        web1 = next(d for d in hv.list_domains() if d.name == "web1")
        hv.invoke("Domain", web1.uuid, "virDomainSuspend", [])  # the event makes the agent sample web1
        wait_until(lambda: len(wires) >= 1, timeout=5)
        calls = agent.sampler.libvirt_calls
        wait_until(lambda: agent.sampler.libvirt_calls >= calls + 3 * 4, timeout=5)  # passes: nothing new
        (wire,) = wires
        message = decode(wire)
        assert isinstance(message, StatsIndication) and message.agent == agent.name
        (batch,) = message.batches
        assert batch.keys == (web1.uuid,) and dict(batch.columns) == {"state": [PAUSED]}
        assert batch.epoch == agent.epoch
    finally:
        connector.stop()


# --- DomainStateChanged ---------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["console", "libvirt"])
def test_domain_state_changes_carry_their_reason(via: str, start_agent: AgentFactory,
                                                 connect: Callable[..., Console],
                                                 truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    sub = console.subscribe(kinds=DomainStateChanged)
    uuid = console.domains.get("test").uuid
    expected = [("suspend", "running", "paused", "suspended/paused"),
                ("resume", "paused", "running", "resumed/unpaused"),
                ("suspend", "running", "paused", "suspended/paused"),
                ("resume", "paused", "running", "resumed/unpaused"),
                ("destroy", "running", "shutoff", "stopped/destroyed"),
                ("create", "shutoff", "running", "started/booted")]
    for method, old, new, reason in expected:
        if via == "libvirt":
            getattr(truth.lookupByUUIDString(uuid), method)()
        else:
            job = console.run(console.domains.get(uuid), method)[0]
        change = next_event(sub, DomainStateChanged, lambda e: e.obj.uuid == uuid)
        assert (change.old, change.new) == (old, new)
        assert change.obj.state_name == new
        if via == "libvirt":
            assert change.reason == reason and change.job is None
        else:
            # The call's own sample may be pushed before libvirt's event: then the job explains it.
            assert change.reason in (reason, method), f"{method}: {change.reason!r}"
            assert change.job == job.id and change in job.transitions


# --- configGen and the XML fetcher -------------------------------------------------------------------------


def test_config_gen_moves_exactly_when_configuration_changes(start_agent: AgentFactory,
                                                             connect: Callable[..., Console],
                                                             truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)

    def gen(ref: str = "test") -> Any:
        return console.domains.get(ref).configGen

    g = gen()
    dom = console.domains.get("test")
    for call in (dom.suspend, dom.resume, dom.getInfo, dom.getXMLDesc, dom.isActive, dom.getState):
        call()
        assert gen() == g, call.__name__
    events = console.subscribe(kinds=LibvirtEvent)
    dom = truth.lookupByName("test")  # the same through someone else's connection
    dom.suspend()
    dom.resume()
    next_event(events, LibvirtEvent, lambda e: e.event == "resumed")  # its changes were pushed before it
    assert gen() == g

    def moved(action: Callable[[], Any], ref: str = "test") -> None:
        nonlocal g
        action()
        assert console.wait_for(lambda: gen(ref) != g), "configGen did not move"
        g = gen(ref)

    # (DESCRIPTION and TITLE need a NULL key and uri, which the schema's lstr arguments cannot carry yet)
    moved(lambda: console.domains.get("test").setMetadata(type=libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                                          metadata="<via>console</via>", key="push",
                                                          uri="http://virtq.test/console", flags=0))
    moved(lambda: dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, "by anyone", None, None, 0))
    moved(lambda: console.domains.get("test").destroy())
    moved(lambda: console.domains.get("test").create())
    moved(lambda: console.domains.get("test").setVcpusFlags(nvcpus=1, flags=libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    moved(lambda: dom.destroy())
    moved(lambda: dom.create())
    # a device added or removed: the test driver has no hot-plug, a re-definition is how it changes
    created = truth.defineXML(domain_xml("push-gen"))
    assert console.wait_for(lambda: "push-gen" in uuids(console))
    g = gen("push-gen")
    nic = "<interface type='network'><source network='default'/></interface>"
    moved(lambda: truth.defineXML(domain_xml("push-gen", devices=nic, uuid=created.UUIDString())), "push-gen")
    moved(lambda: truth.defineXML(domain_xml("push-gen", uuid=created.UUIDString())), "push-gen")
    created.undefine()
    assert console.wait_for(lambda: "push-gen" not in uuids(console))


def test_xml_is_fetched_once_per_generation(start_agent: AgentFactory, connect: Callable[..., Console],
                                            truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    dom = console.domains.get("test")
    fetches = console.xml_fetches
    text = dom.xml()
    assert "<name>test</name>" in text and console.xml_fetches == fetches + 1
    assert dom.xml() == text and console.domains.get("test").xml() == text
    assert console.xml_fetches == fetches + 1  # same generation: from the cache
    dom.suspend()
    dom.resume()
    assert console.domains.get("test").xml() == text and console.xml_fetches == fetches + 1
    old_gen = console.domains.get("test").configGen
    truth.lookupByName("test").setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "fetch me", None, None, 0)
    assert console.wait_for(lambda: console.domains.get("test").configGen != old_gen)
    text = dom.xml()  # an old snapshot still reads the current generation
    assert "fetch me" in text and console.xml_fetches == fetches + 2
    assert console.domains.get("test").xml() == text and console.xml_fetches == fetches + 2


def test_config_gen_is_stable_across_agent_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"

    bus = MemoryBus()

    def generations() -> Tuple[int, Dict[str, Any]]:
        agent = Agent(default_schema(), LibvirtHypervisor(NODE_URI), bus.agent_transport(),
                      state_dir=state, events=False)
        try:
            agent.registry.sync_all()
            return agent.epoch, {e.key: agent.registry.record(e).values["configGen"]
                                 for e in agent.registry.entries()}
        finally:
            agent.hypervisor.close()

    epoch, first = generations()
    again_epoch, again = generations()
    bus.close()
    assert again_epoch == epoch + 1 and again == first and len(set(first.values())) == len(first)


# --- agents lost and restarted -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_agent_lost_keeps_its_objects_marked_stale(start_agent: AgentFactory) -> None:
    agent = start_agent(NODE_URI, **FAST)
    clock = FakeClock()
    with Console([agent_url(agent)], timeout=5, clock=clock) as console:
        sub = console.subscribe(kinds=(AgentLost, AgentAdded))
        view = console.agents.get(agent.name)
        lost_after = 3 * view.heartbeat_interval
        clock.now += lost_after - 0.5
        assert console.check_agents() == []
        # heartbeats keep it alive: the next one is seen at the (fake) present
        assert console.wait_for(lambda: console.agents.get(agent.name).last_seen == clock.now, timeout=5)
        clock.now += lost_after - 0.5
        assert console.check_agents() == [] and not console.is_lost(agent.name)

        domains = {d.uuid for d in console.domains}
        agent.stop()  # no more heartbeats
        console.settle()  # a heartbeat already received is applied
        seen = console.agents.get(agent.name).last_seen
        clock.now = seen + lost_after + 0.1
        console.check_agents()  # (the console's monitor thread may have been first)
        assert console.is_lost(agent.name)
        event = next_event(sub, AgentLost)
        assert event.agent.name == agent.name
        assert console.check_agents() == [] and sub.get(0.3) is None  # told once
        assert {d.uuid for d in console.domains} == domains  # kept …
        assert all(d.stale for d in console.domains) and all(p.stale for p in console.pools)  # … marked stale
        assert next(iter(console.nodes)).stale


def test_agent_restarted_resyncs_and_drops_statistics_of_the_old_epoch(tmp_path: Path) -> None:
    """Over the in-memory bus, whose agent side can be swapped at once: statistics of the old epoch still in
    flight are dropped (the same restart over real AMQP: test_direct_reconnect)."""
    bus = MemoryBus()
    state = tmp_path / "state"
    first = Agent(default_schema(), LibvirtHypervisor(NODE_URI), bus.agent_transport(), state_dir=state,
                  heartbeat=0.2, interval=30)
    first.start()
    second: Optional[Agent] = None
    console = Console(transports=[bus.console_transport()], timeout=5)
    try:
        console.start()
        sub = console.subscribe(kinds=(AgentRestarted, ObjectRemoved, ObjectAdded))
        (node,) = console.nodes
        extra = node.domainDefineXML(domain_xml("push-gone"))  # only in the first agent's hypervisor
        next_event(sub, ObjectAdded, lambda e: e.obj.uuid == extra.uuid)
        web1 = console.domains.get("web1")
        web1_gen = web1.configGen
        removals = console.subscribe(kinds=ObjectRemoved)  # its own queue: the removal may come first
        first.stop()

        second = Agent(default_schema(), LibvirtHypervisor(NODE_URI), bus.agent_transport(), state_dir=state,
                       heartbeat=0.2, interval=30)
        assert second.name == first.name and second.epoch == first.epoch + 1
        second.start()
        restarted = next_event(sub, AgentRestarted)
        assert restarted.old_epoch == first.epoch and restarted.agent.epoch == second.epoch
        removed = next_event(removals, ObjectRemoved)  # the full resync finds it gone (before or after)
        assert removed.obj.uuid == extra.uuid
        assert console.wait_for(lambda: "push-gone" not in uuids(console))
        assert console.domains.get("web1").configGen == web1_gen  # stable across the restart
        assert console.agents.get(first.name).epoch == second.epoch

        # Statistics still in flight from the first life are dropped; the second life's are applied.
        stats = console.subscribe(kinds=StatsUpdated)
        fake = bus.agent_transport()
        fake.start(lambda wire: None)
        schema_id = default_schema().cls("Domain").schema_id

        def push(epoch: int, cpu: int) -> None:
            batch = StatsBatch(schema_id, epoch, time.time_ns(), (web1.uuid,), {"cpuTime": [cpu]})
            fake.send(StatsIndication(batches=(batch,), agent=first.name).encode(
                TOPIC, stats_subject("org.libvirt", "Domain")))

        push(first.epoch, 111)
        push(second.epoch, 222)
        told = next_event(stats, StatsUpdated, lambda e: e.changed.get("cpuTime") in (111, 222))
        assert told.changed["cpuTime"] == 222 and told.obj.uuid == web1.uuid  # 111 came first, and was dropped
    finally:
        console.close()
        for agent in (first, second):
            if agent is not None:
                agent.kill()
        bus.close()


def test_an_agent_that_reconnected_is_read_again_by_consoles_that_did_not(tmp_path: Path) -> None:
    """An agent's connection fails over (a broker node stops) while the console's stays up. What the agent
    sent just before the loss was noticed went nowhere — here the deletion of a domain; its re-push after
    the reconnect covers what exists, not what is gone. The heartbeat's ``reconnects`` tells the console
    to read the agent again, and the ghost goes."""
    bus = MemoryBus()
    hv = LibvirtHypervisor(NODE_URI)
    link = bus.agent_transport()
    agent = Agent(default_schema(), hv, link, state_dir=tmp_path / "state", heartbeat=0.2, interval=30)
    agent.start()
    console = Console(transports=[bus.console_transport()], timeout=5)
    try:
        console.start()
        sub = console.subscribe(kinds=(ObjectAdded, ObjectRemoved))
        ghost = hv.invoke("Node", None, "virDomainDefineXML", [domain_xml("push-ghost")])
        next_event(sub, ObjectAdded, lambda e: e.obj.name == "push-ghost")
        assert console.agents.get(agent.name).attributes["reconnects"] == 0

        link.lossy = True  # failing, not yet known to be
        hv.invoke("Domain", ghost.uuid, "virDomainUndefine", [])
        wait_until(lambda: agent.registry.get(f"Domain:{ghost.uuid}") is None)
        time.sleep(0.3)  # (a heartbeat or two lost too)
        assert "push-ghost" in uuids(console)
        link.reconnect()
        removed = next_event(sub, ObjectRemoved)
        assert removed.obj.uuid == ghost.uuid
        assert console.agents.get(agent.name).attributes["reconnects"] == 1
        assert not console.is_lost(agent.name) and "push-ghost" not in uuids(console)
    finally:
        console.close()
        agent.kill()
        bus.close()


# --- job apartments ---------------------------------------------------------------------------------------


class Recorder:
    """Wraps a hypervisor's invoke: calls of ``function`` are slowed down and their spans recorded."""

    def __init__(self, hv: Hypervisor, function: str, delay: float) -> None:
        self.original = hv.invoke
        self.function = function
        self.delay = delay
        self.spans: List[Tuple[Optional[str], float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        if function != self.function:
            return self.original(class_name, key, function, args)
        start = time.monotonic()
        time.sleep(self.delay)
        result = self.original(class_name, key, function, args)
        with self.lock:
            self.spans.append((key, start, time.monotonic()))
        return result


def test_calls_on_one_object_run_one_at_a_time_in_arrival_order(start_agent: AgentFactory,
                                                                connect: Callable[..., Console],
                                                                mocker: MockerFixture) -> None:
    agent = start_agent(NODE_URI, **QUIET)
    console = connect(agent)
    recorder = Recorder(agent.hypervisor, "virDomainIsActive", 0.1)
    mocker.patch.object(agent.hypervisor, "invoke", side_effect=recorder)
    web1 = console.domains.get("web1")
    apartment = console.apartments._apartment((web1.agent, web1.object_id.object_name))
    jobs: Dict[int, Any] = {}

    def call(i: int) -> None:
        jobs[i] = console.run(web1, "isActive")[0]

    threads = []
    for i in range(4):  # each takes its ticket before the next thread starts: a known arrival order
        thread = threading.Thread(target=call, args=(i,))
        thread.start()
        threads.append(thread)
        wait_until(lambda: apartment.next_ticket == len(threads))
    for thread in threads:
        thread.join(5)
    spans = sorted(recorder.spans, key=lambda s: s[1])
    assert len(spans) == 4
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        assert start >= end  # never two at once on the agent
    order = sorted(jobs, key=lambda i: jobs[i].started)
    assert order == [0, 1, 2, 3]  # served in arrival order
    for a, b in zip(order, order[1:]):
        assert jobs[b].started >= jobs[a].finished
    assert [jobs[i].id for i in order] == sorted(j.id for j in jobs.values())


def test_calls_on_different_objects_run_in_parallel(start_agent: AgentFactory, connect: Callable[..., Console],
                                                    mocker: MockerFixture) -> None:
    agent = start_agent(NODE_URI, **QUIET)
    console = connect(agent)
    recorder = Recorder(agent.hypervisor, "virDomainIsActive", 0.3)
    mocker.patch.object(agent.hypervisor, "invoke", side_effect=recorder)
    targets = [console.domains.get(name) for name in ("web1", "web2", "db1")]
    threads = [threading.Thread(target=console.run, args=(dom, "isActive")) for dom in targets]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - started < 0.3 * 3 * 0.8  # not one after the other
    assert len(recorder.spans) == 3
    latest_start = max(s[1] for s in recorder.spans)
    earliest_end = min(s[2] for s in recorder.spans)
    assert latest_start < earliest_end  # all three were in libvirt at the same moment


def test_a_job_waits_for_the_pushed_state(start_agent: AgentFactory, connect: Callable[..., Console],
                                          truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    sub = console.subscribe(kinds=(DomainStateChanged, StatsUpdated))
    dom = console.domains.get("test")
    stopped = dom.destroy().wait_state("shutoff", timeout=5)
    assert stopped.state_name == "shutoff" and stopped.object_id == dom.object_id
    job = console.domains.get("test").create()
    running = job.wait_state("running", timeout=5)
    assert isinstance(running, RemoteObject) and running.state_name == "running" and running.state == RUNNING
    assert running.id > 0 and running.object_id == dom.object_id  # the snapshot it reached
    # what was observed while the job owned the object is the job's
    changes = [e for e in job.transitions if isinstance(e, DomainStateChanged)]
    assert [(c.old, c.new) for c in changes] == [("shutoff", "running")]
    assert all(getattr(e, "job") == job.id for e in job.transitions)
    told = next_event(sub, DomainStateChanged, lambda e: e.new == "running")
    assert told.job == job.id and told in job.transitions
    with pytest.raises(CallTimeoutError):
        console.domains.get("test").suspend().wait_state("shutoff", timeout=0.3)


# --- a stuck domain does not delay the others ---------------------------------------------------------------


def test_a_stuck_domain_does_not_delay_the_others_statistics(start_agent: AgentFactory,
                                                             connect: Callable[..., Console],
                                                             mocker: MockerFixture) -> None:
    hv = RealisticCpu(NODE_URI)
    agent = start_agent(hv, **FAST)
    console = connect(agent)
    ids = uuids(console)
    stuck = ids["web2"]
    gate, blocked = threading.Event(), threading.Event()
    original = hv.invoke

    def invoke(class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        if function == "virDomainGetInfo" and key == stuck:
            blocked.set()
            gate.wait(10)
        return original(class_name, key, function, args)

    mocker.patch.object(hv, "invoke", side_effect=invoke)
    sub = console.subscribe(kinds=StatsUpdated)
    def domain_report() -> Any:
        return next(r for r in agent.sampler.reports if r.class_name == "Domain")

    try:
        assert blocked.wait(5)
        wait_until(lambda: domain_report().skipped == (f"Domain:{stuck}",))
        since = time.time_ns()  # samples from before the domain got stuck may still be on their way
        started = time.monotonic()
        seen: Dict[str, int] = {}
        while seen.get("web1", 0) < 5:
            event = next_event(sub, StatsUpdated, lambda e: e.obj.class_name == "Domain" and e.obj.stats_ts > since,
                               timeout=1)  # never waits for the stuck one
            seen[event.obj.name] = seen.get(event.obj.name, 0) + 1
        assert time.monotonic() - started < 5 * 0.2 * 4
        assert "web2" not in seen
        report = domain_report()
        assert report.skipped == (f"Domain:{stuck}",) and report.sampled == 4
    finally:
        gate.set()
    event = next_event(sub, StatsUpdated, lambda e: e.obj.uuid == stuck, timeout=3)  # sampled again
    assert "cpuTime" in event.changed
    wait_until(lambda: domain_report().skipped == ())


# --- subscribers: overflow, and a slow one never stalls ingest ---------------------------------------------------


def test_a_subscriber_that_does_not_read_overflows(start_agent: AgentFactory, connect: Callable[..., Console],
                                                   truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    small = console.subscribe(kinds=LibvirtEvent, maxsize=5)
    everything = console.subscribe(kinds=LibvirtEvent)
    dom = truth.lookupByName("test")
    for _ in range(6):
        dom.suspend()
        dom.resume()
    told = [next_event(everything, LibvirtEvent) for _ in range(12)]
    notice = small.get(1)
    assert notice == Overflowed(dropped=7)
    newest = [small.get(1) for _ in range(5)]
    assert all(a is b for a, b in zip(newest, told[-5:])) and len(newest) == 5
    assert [(e.event, e.detail) for e in newest if isinstance(e, LibvirtEvent)][-1] == ("resumed", "unpaused")
    assert small.get(0.05) is None and small.dropped == 7


def test_a_slow_subscriber_never_stalls_ingest(start_agent: AgentFactory, connect: Callable[..., Console],
                                               truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    gate = threading.Event()
    slow_got: List[Event] = []

    def slow(event: Event) -> None:
        gate.wait(10)  # stuck until the end of the test
        slow_got.append(event)

    console.subscribe(slow, maxsize=3)
    fast = console.subscribe(kinds=LibvirtEvent)
    dom = truth.lookupByName("test")
    try:
        for i in range(5):
            started = time.monotonic()
            (dom.suspend if i % 2 == 0 else dom.resume)()
            event = next_event(fast, LibvirtEvent, timeout=2)
            assert time.monotonic() - started < 1.0
            assert event.event == ("suspended" if i % 2 == 0 else "resumed")
            want = PAUSED if i % 2 == 0 else RUNNING
            assert console.wait_for(lambda: console.domains.get("test").state == want, timeout=2)
        assert slow_got == []
    finally:
        gate.set()
    wait_until(lambda: any(isinstance(e, Overflowed) for e in slow_got), timeout=5)


def test_an_inline_subscriber_runs_on_the_console_s_thread_and_may_not_call_it(
        start_agent: AgentFactory, connect: Callable[..., Console], truth: libvirt.virConnect) -> None:
    agent = start_agent(DEFAULT_URI, **QUIET)
    console = connect(agent)
    got: List[Tuple[str, str]] = []
    refused: List[BaseException] = []
    threads = {t.ident for t in threading.enumerate()}

    def inline(event: Event) -> None:
        assert isinstance(event, LibvirtEvent)
        got.append((event.event, threading.current_thread().name))
        if event.event == "suspended":
            try:
                console.domains.get("test").getInfo()  # would wait on the thread it holds
            except errors.InlineCallError as exc:
                refused.append(exc)
            try:
                console.wait_for(lambda: False, timeout=5)
            except errors.InlineCallError as exc:
                refused.append(exc)
        raise RuntimeError("a subscriber's bug")  # logged; the next event comes all the same

    subscription = console.subscribe(inline, kinds=LibvirtEvent, inline=True)
    assert {t.ident for t in threading.enumerate()} == threads  # no delivery thread
    dom = truth.lookupByName("test")
    started = time.monotonic()
    dom.suspend()
    dom.resume()
    assert wait_until(lambda: [e for e, _ in got] == ["suspended", "resumed"], 5)
    assert time.monotonic() - started < 4  # refused at once, not after the 5 s timeouts
    assert len(refused) == 2 and "inline subscriber" in str(refused[0])
    assert not any(name.startswith("virtq-subscriber") for _, name in got)
    assert subscription.delivered == 0 and console.domains.get("test").getInfo()["state"] == RUNNING  # callable
    with pytest.raises(errors.InvalidParameterError):
        console.subscribe(kinds=LibvirtEvent, inline=True)  # inline needs a callback
