"""Push machinery in isolation: the sampler, the updater's staleness guards, subscriptions,
job apartments, configGen rules and the `_stats` wire budget.

Everything here runs without sockets; the sampler runs against a fake hypervisor whose
calls can be made to block, the updater against a console that was never started.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

import pytest

from virtq.agent.configgen import ConfigGenerations, event_changes_config, method_changes_config
from virtq.agent.events import EventPump
from virtq.agent.hypervisor import DomainIdentity, HypervisorEvent
from virtq.agent.registry import Registry
from virtq.agent.sampler import SampleReport, Sampler
from virtq.console import Console
from virtq.console.events import (DomainStateChanged, Event, LibvirtEvent, ObjectAdded, ObjectEvent, ObjectRemoved,
                                  Overflowed, StatsUpdated)
from virtq.console._jobs import Apartments
from virtq.console.repository import AgentView
from virtq.console.subscriptions import Subscription
from virtq.schema import default_schema
from virtq.schema.codec import (TOPIC, DataIndication, DataRecord, EventRecord, ObjectId, StatsBatch, StatsIndication,
                                decode, stats_subject)
from virtq.testing import PAUSED, RUNNING, SHUTOFF, FakeHypervisor, RecordingTransport, wait_until
from virtq.testing import numbered_uuid as uuid_of
from virtq.transport._convert import roundtrip, to_proton

from .sampling import make_sampler

SCHEMA = default_schema()
AGENT = "libvirt.org:virtq:11111111-1111-4111-8111-111111111111"


# --- the sampler ----------------------------------------------------------------------------------


def test_sampler_pushes_only_changed_fields_and_nothing_when_nothing_changed() -> None:
    hv = FakeHypervisor.with_running_domains(3)
    sampler, published = make_sampler(hv)
    try:
        first = sampler.sample("Domain")
        assert first.changed == 3 and first.skipped == ()
        (batch,) = published.batches
        assert set(batch.keys) == set(hv.info) and batch.epoch == 3
        assert set(batch.columns) == {"state", "maxMem", "memory", "nrVirtCpu", "cpuTime"}

        published.batches.clear()
        again = sampler.sample("Domain")
        assert again.changed == 0 and published.batches == []  # nothing changed: nothing published

        hv.info[uuid_of(1)][4] += 12345
        sampler.sample("Domain")
        (batch,) = published.batches
        assert batch.keys == (uuid_of(1),)
        assert dict(batch.columns) == {"cpuTime": [1_000_012_345]}  # just the field that changed
        assert batch.rows() == [(f"Domain:{uuid_of(1)}", {"cpuTime": 1_000_012_345})]
        assert sampler.latest(f"Domain:{uuid_of(1)}") == {"state": RUNNING, "maxMem": 65536, "memory": 65536,
                                                          "nrVirtCpu": 1, "cpuTime": 1_000_012_345}
    finally:
        sampler.stop()


def test_sampler_sparse_columns_for_different_changes() -> None:
    hv = FakeHypervisor.with_running_domains(3)
    sampler, published = make_sampler(hv)
    try:
        sampler.sample("Domain")
        published.batches.clear()
        hv.info[uuid_of(0)][4] += 1
        hv.info[uuid_of(2)][0] = PAUSED
        sampler.sample("Domain")
        (batch,) = published.batches
        assert dict(batch.rows()) == {f"Domain:{uuid_of(0)}": {"cpuTime": 1},
                                      f"Domain:{uuid_of(2)}": {"state": PAUSED}}
        assert set(batch.columns) == {"state", "cpuTime"}
    finally:
        sampler.stop()


def test_sampler_uses_bulk_values_and_asks_only_the_rest() -> None:
    hv = FakeHypervisor.with_running_domains(3)
    fields = ("state", "maxMem", "memory", "nrVirtCpu", "cpuTime")
    hv.bulk = {uuid_of(0): dict(zip(fields, hv.info[uuid_of(0)])), uuid_of(1): dict(zip(fields, hv.info[uuid_of(1)]))}
    sampler, published = make_sampler(hv)
    try:
        report = sampler.sample("Domain")
        assert hv.called("virDomainGetInfo") == [uuid_of(2)]  # only the domain the bulk call left out
        assert report.libvirt_calls == 2 and report.changed == 3
        # a targeted sample (after an event or a call) asks just those domains: in bulk, the rest one by one
        hv.calls.clear()
        sampler.sample("Domain", [uuid_of(0), uuid_of(2)])
        assert hv.called("virDomainGetInfo") == [uuid_of(2)]
    finally:
        sampler.stop()


def test_stuck_domain_is_skipped_reported_and_sampled_again_once_it_answers() -> None:
    hv = FakeHypervisor.with_running_domains(4)
    stuck = uuid_of(2)
    gate = hv.gates.close("virDomainGetInfo", stuck)
    sampler, published = make_sampler(hv, timeout=0.1)
    try:
        started = time.monotonic()
        report = sampler.sample("Domain")
        assert time.monotonic() - started < 1.0  # the deadline, not the stuck call, ends the pass
        assert report.skipped == (f"Domain:{stuck}",)
        (batch,) = published.batches
        assert set(batch.keys) == set(hv.info) - {stuck}  # the others were pushed

        # While its call is still stuck, the domain is not asked again (no pile-up of blocked calls).
        published.batches.clear()
        hv.info[uuid_of(0)][4] += 1
        report = sampler.sample("Domain")
        assert report.skipped == (f"Domain:{stuck}",) and hv.called("virDomainGetInfo").count(stuck) == 1
        assert [b.keys for b in published.batches] == [(uuid_of(0),)]
        assert sampler.reports[-1] == report

        gate.set()
        assert wait_until(lambda: not sampler._stuck)
        published.batches.clear()
        report = sampler.sample("Domain")
        assert report.skipped == () and hv.called("virDomainGetInfo").count(stuck) == 2
        assert [b.keys for b in published.batches] == [(stuck,)]  # sampled again, pushed at last
    finally:
        gate.set()
        sampler.stop()


def test_sampler_forgets_removed_domains() -> None:
    hv = FakeHypervisor.with_running_domains(2)
    sampler, published = make_sampler(hv)
    try:
        sampler.sample("Domain")
        gone = uuid_of(1)
        identity = hv.domains.pop(1)
        info = hv.info.pop(gone)
        sampler._registry.sync_all()
        sampler.sample("Domain")
        assert sampler.latest(f"Domain:{gone}") is None
        hv.domains.append(identity)  # back (re-defined): its values are new to consoles, pushed in full
        hv.info[gone] = info
        sampler._registry.sync_all()
        published.batches.clear()
        sampler.sample("Domain")
        (batch,) = published.batches
        assert batch.keys == (gone,) and len(batch.columns) == 5
    finally:
        sampler.stop()


# --- the `_stats` wire budget ---------------------------------------------------------------------


def encoded_size(batch: StatsBatch) -> int:
    message = StatsIndication(batches=(batch,), agent=AGENT)
    wire = message.encode(TOPIC, stats_subject(SCHEMA.package, batch.schema_id.class_name))
    return len(to_proton(wire).encode())


def test_stats_of_40_running_domains_cost_at_most_60_bytes_each() -> None:
    keys = tuple(str(uuidlib.uuid4()) for _ in range(40))
    cpu = [1_795_296_018_493_981_000 + i * 7_919_000 for i in range(40)]  # large, realistic values
    batch = StatsBatch(SCHEMA.cls("Domain").schema_id, 12, time.time_ns(), keys, {"cpuTime": cpu})
    size = encoded_size(batch)
    assert size / 40 <= 60, f"{size} bytes for 40 domains: {size / 40:.1f} per VM"
    # and what the wire carries decodes to the same values
    wire = roundtrip(StatsIndication(batches=(batch,), agent=AGENT).encode(TOPIC, "s"))
    decoded = decode(wire)
    assert isinstance(decoded, StatsIndication)
    assert decoded.batches[0].keys == keys and list(decoded.batches[0].columns["cpuTime"]) == cpu


def test_sampler_output_for_40_running_domains_meets_the_budget() -> None:
    hv = FakeHypervisor.with_running_domains(40)
    sampler, published = make_sampler(hv)
    try:
        sampler.sample("Domain")
        first = encoded_size(published.batches[0])
        published.batches.clear()
        for info in hv.info.values():
            info[4] += 10_000_000  # 10 ms of CPU each: only cpuTime changed
        sampler.sample("Domain")
        (batch,) = published.batches
        assert set(batch.columns) == {"cpuTime"}
        size = encoded_size(batch)
        assert size / 40 <= 60, f"{size / 40:.1f} bytes per running VM"
        assert size < first  # the first (full) batch carries every field
    finally:
        sampler.stop()


# --- the updater: staleness guards and state changes ------------------------------------------------


@pytest.fixture
def console() -> Console:
    """A console that was never started: its updater is driven by hand (as the ingest thread would)."""
    console = Console()
    console.agents.put(AGENT, AgentView(AGENT, 5, 1))
    return console


class Collected:
    """The per-object events a console emitted, in order (StatsUpdated, opt-in, included; the per-batch
    StatsApplied not): a queue subscription (filled on the emitting thread), drained whenever it is read."""

    def __init__(self, console: Console) -> None:
        self._subscription = console.subscribe(kinds=(ObjectEvent, LibvirtEvent))
        self._seen: List[Event] = []

    def __iter__(self) -> Iterator[Event]:
        while (event := self._subscription.get(0)) is not None:
            self._seen.append(event)
        return iter(list(self._seen))


def collect(console: Console) -> Collected:
    return Collected(console)


DOM = ObjectId(f"Domain:{uuid_of(1)}", AGENT, 5)


def record(update_ts: int, name: str = "vm1", gen: int = 1, delete_ts: int = 0, **extra: Any) -> DataRecord:
    values = {"uuid": uuid_of(1), "name": name, "id": 1, "configGen": gen, **extra}
    return DataRecord(DOM, SCHEMA.cls("Domain").schema_id, values, update_ts, 100, delete_ts)


def stats(sample_ts: int, epoch: int = 5, **columns: int) -> StatsBatch:
    return StatsBatch(SCHEMA.cls("Domain").schema_id, epoch, sample_ts, (uuid_of(1),),
                      {k: [v] for k, v in columns.items()})


def lifecycle(event: str, detail: str, timestamp: int = 0) -> EventRecord:
    values = {"domain": DOM.to_wire(), "event": event, "detail": detail, "data": {}}
    return EventRecord(SCHEMA.events["domainLifecycle"].schema_id, values, timestamp or time.time_ns())


def test_an_older_record_never_overwrites_a_newer_one(console: Console) -> None:
    updater = console.updater
    updater.apply_records([record(200, name="new", gen=2)])
    updater.apply_records([record(150, name="old", gen=1)])  # arrives late
    assert console.lookup(DOM).name == "new"
    updater.apply_records([record(250, name="newer", gen=3)])
    assert console.lookup(DOM).name == "newer"


def test_an_older_sample_never_overwrites_a_newer_one(console: Console) -> None:
    events = collect(console)
    updater = console.updater
    updater.apply_records([record(100, state=RUNNING)])  # as a query answer: with the latest statistics
    updater.apply_stats(AGENT, [stats(2_000, cpuTime=20, state=RUNNING)])
    updater.apply_stats(AGENT, [stats(1_000, cpuTime=10, state=PAUSED)])  # older: ignored entirely
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.cpuTime == 20 and obj.state == RUNNING and obj.stats_ts == 2_000
    assert [type(e) for e in events] == [ObjectAdded, StatsUpdated]
    updater.apply_stats(AGENT, [stats(3_000, cpuTime=30)])
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.cpuTime == 30 and obj.state == RUNNING  # merged with what it had


def test_statistics_of_another_epoch_are_dropped(console: Console) -> None:
    updater = console.updater
    updater.apply_records([record(100)])
    updater.apply_stats(AGENT, [stats(2_000, epoch=4, cpuTime=99)])  # the agent's previous life
    obj = console.domains.by_id(DOM)
    assert obj is not None and "cpuTime" not in obj.stats
    updater.apply_stats(AGENT, [stats(2_000, epoch=5, cpuTime=42)])
    assert console.lookup(DOM).cpuTime == 42


def test_records_from_before_a_deletion_do_not_resurrect_the_object(console: Console) -> None:
    events = collect(console)
    updater = console.updater
    updater.apply_records([record(100)])
    updater.apply_records([record(300, delete_ts=300)])
    assert console.domains.by_id(DOM) is None
    updater.apply_records([record(200, name="late")])  # sent before the deletion, arrived after
    updater.apply_records([record(300, name="same instant")])
    updater.apply_stats(AGENT, [stats(400, cpuTime=1)])  # statistics do not bring it back either
    assert console.domains.by_id(DOM) is None
    assert [type(e) for e in events] == [ObjectAdded, ObjectRemoved]
    updater.apply_records([record(500, name="again")])  # defined again after the deletion
    assert console.lookup(DOM).name == "again"
    assert [type(e) for e in events] == [ObjectAdded, ObjectRemoved, ObjectAdded]


def test_state_change_reason_comes_from_the_lifecycle_event(console: Console) -> None:
    events = collect(console)
    updater = console.updater
    updater.apply_records([record(100, state=RUNNING)])
    updater.apply_events(AGENT, [lifecycle("suspended", "paused")])
    updater.apply_stats(AGENT, [stats(2_000, state=PAUSED)])
    changes = [e for e in events if isinstance(e, DomainStateChanged)]
    assert [(c.old, c.new, c.reason) for c in changes] == [("running", "paused", "suspended/paused")]
    assert [e for e in events if isinstance(e, LibvirtEvent)][0].obj == console.domains.by_id(DOM)


def test_a_late_lifecycle_event_does_not_explain_a_later_transition(console: Console) -> None:
    """The state can be pushed before libvirt's event (a call samples at once): that event's reason
    must not be given to the next, unrelated, transition."""
    events = collect(console)
    updater = console.updater
    updater.apply_records([record(100, state=RUNNING)])
    updater.apply_stats(AGENT, [stats(2_000, state=PAUSED)])  # sampled before the event arrived
    updater.apply_events(AGENT, [lifecycle("suspended", "paused")])  # late
    updater.apply_stats(AGENT, [stats(3_000, state=RUNNING)])  # resumed: its own event not here yet
    updater.apply_events(AGENT, [lifecycle("resumed", "unpaused")])
    updater.apply_events(AGENT, [lifecycle("stopped", "destroyed")])
    updater.apply_stats(AGENT, [stats(4_000, state=SHUTOFF)])
    changes = [(e.old, e.new, e.reason) for e in events if isinstance(e, DomainStateChanged)]
    assert changes == [("running", "paused", ""), ("paused", "running", ""),
                       ("running", "shutoff", "stopped/destroyed")]


def test_a_lagging_event_does_not_explain_a_later_transition_to_the_same_state(console: Console) -> None:
    """Calls push their samples at once; libvirt's events may come several changes later. The resume's
    event, arriving after the domain was destroyed, must not explain the following create."""
    events = collect(console)
    updater = console.updater
    updater.apply_records([record(100, state=PAUSED)])
    updater.apply_stats(AGENT, [stats(3_000, state=RUNNING)])  # resumed (the call's own sample)
    updater.apply_stats(AGENT, [stats(4_000, state=SHUTOFF)])  # destroyed
    updater.apply_events(AGENT, [lifecycle("resumed", "unpaused", timestamp=2_900)])  # the resume's event, late
    updater.apply_stats(AGENT, [stats(5_000, state=RUNNING)])  # created
    updater.apply_events(AGENT, [lifecycle("stopped", "destroyed", timestamp=3_900)])
    updater.apply_events(AGENT, [lifecycle("started", "booted", timestamp=4_900)])
    updater.apply_events(AGENT, [lifecycle("suspended", "paused", timestamp=5_100)])  # in time, this one
    updater.apply_stats(AGENT, [stats(5_200, state=PAUSED)])
    changes = [(e.old, e.new, e.reason) for e in events if isinstance(e, DomainStateChanged)]
    assert changes == [("paused", "running", ""), ("running", "shutoff", ""), ("shutoff", "running", ""),
                       ("running", "paused", "suspended/paused")]


def test_a_job_explains_the_change_its_call_caused(console: Console) -> None:
    events = collect(console)
    updater = console.updater
    updater.apply_records([record(100, state=RUNNING)])
    with console.apartments.run(console, DOM, "suspend") as job:
        updater.apply_stats(AGENT, [stats(2_000, state=PAUSED)])
    (change,) = [e for e in events if isinstance(e, DomainStateChanged)]
    assert (change.old, change.new, change.reason, change.job) == ("running", "paused", "suspend", job.id)
    assert change in job.transitions


# --- subscriptions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick(Event):
    n: int


def test_overflow_drops_the_oldest_and_says_how_many() -> None:
    subscription = Subscription(None, None, maxsize=5)
    offered = [Tick(i) for i in range(12)]
    for event in offered:
        subscription.offer(event)
    assert subscription.get(0) == Overflowed(7)
    assert [subscription.get(0) for _ in range(5)] == offered[-5:]
    assert subscription.get(0.01) is None and subscription.dropped == 7
    subscription.offer(offered[0])  # no overflow since: no new notice
    assert subscription.get(0) is offered[0]


def test_a_slow_callback_never_blocks_offer() -> None:
    gate, entered = threading.Event(), threading.Event()
    got: List[Event] = []

    def slow(event: Event) -> None:
        entered.set()
        gate.wait(5)
        got.append(event)

    subscription = Subscription(slow, None, maxsize=3)
    try:
        subscription.offer(Tick(0))
        assert entered.wait(5)  # the callback is busy with the first event
        started = time.monotonic()
        for i in range(1, 100):
            subscription.offer(Tick(i))
        assert time.monotonic() - started < 0.5
    finally:
        gate.set()
        assert wait_until(lambda: len(got) == 5)
        subscription.close()
    assert got == [Tick(0), Overflowed(96), Tick(97), Tick(98), Tick(99)]


# --- job apartments ----------------------------------------------------------------------------------


def test_apartments_serve_one_object_in_arrival_order_and_others_in_parallel() -> None:
    apartments = Apartments()
    console = Console()
    a, b = ObjectId("Domain:a", AGENT), ObjectId("Domain:b", AGENT)
    log: List[str] = []
    first_in = threading.Event()
    release = threading.Event()

    def work(oid: ObjectId, label: str, hold: bool) -> None:
        with apartments.run(console, oid, label):
            log.append(f"{label}+")
            if hold:
                first_in.set()
                release.wait(5)
            log.append(f"{label}-")

    threads = [threading.Thread(target=work, args=(a, "a1", True))]
    threads[0].start()
    assert first_in.wait(5)
    for label in ("a2", "a3", "a4"):  # queue behind a1, in this order
        t = threading.Thread(target=work, args=(a, label, False))
        t.start()
        threads.append(t)
        assert wait_until(lambda: apartments._apartment((AGENT, "Domain:a")).next_ticket == len(threads))
    other = threading.Thread(target=work, args=(b, "b1", False))
    other.start()
    other.join(5)
    assert log == ["a1+", "b1+", "b1-"]  # b ran while a1 held a
    release.set()
    for t in threads:
        t.join(5)
    assert log[3:] == ["a1-", "a2+", "a2-", "a3+", "a3-", "a4+", "a4-"]
    assert apartments.owner(a) is None and apartments.completed == 5


# --- configGen rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["getInfo", "getXMLDesc", "isActive", "listAllDomains", "lookupByName",
                                    "hasManagedSaveImage", "numOfDomains", "suspend", "resume", "getState",
                                    "blockStats", "interfaceStats", "memoryStats", "getJobInfo"])
def test_readers_and_run_state_changes_keep_the_generation(method: str) -> None:
    assert not method_changes_config(method)


@pytest.mark.parametrize("method", ["create", "destroy", "setMetadata", "setVcpusFlags", "attachDeviceFlags",
                                    "detachDevice", "undefine", "domainDefineXML", "setMemoryFlags", "rename",
                                    "shutdown", "refresh", "isolate", "history", "listener"])
def test_changing_methods_move_the_generation(method: str) -> None:
    assert method_changes_config(method)


def test_config_events() -> None:
    assert event_changes_config("domainLifecycle", "defined")
    assert event_changes_config("domainLifecycle", "undefined")
    assert event_changes_config("domainLifecycle", "started")
    assert event_changes_config("domainLifecycle", "stopped")
    assert not event_changes_config("domainLifecycle", "suspended")
    assert not event_changes_config("domainLifecycle", "resumed")
    assert event_changes_config("domainMetadataChange", "")
    assert event_changes_config("domainDeviceAdded", "")
    assert event_changes_config("domainDeviceRemoved", "")
    assert event_changes_config("domainTunable", "")
    assert event_changes_config("domainBlockJob", "pull", "completed")  # a block job's status is its detail
    assert event_changes_config("domainBlockJob2", "commit", "completed")
    assert not event_changes_config("domainBlockJob", "copy", "ready")
    assert not event_changes_config("domainLifecycle", "suspended", "paused")
    assert not event_changes_config("domainRtcChange", "")
    assert not event_changes_config("domainReboot", "")
    assert event_changes_config("poolLifecycle", "started")


def test_generations_persist_and_are_never_reused(tmp_path: Path) -> None:
    gens = ConfigGenerations(tmp_path)
    a, b = gens.assign("Domain:a"), gens.assign("Domain:b")
    assert a != b and gens.get("Domain:a") == gens.assign("Domain:a") == a  # stable while nothing changes
    bumped = gens.bump("Domain:a")
    gens.forget("Domain:b")
    assert gens.get("Domain:b") == 0  # (none: what a record of a vanished object carries)
    assert not (tmp_path / ConfigGenerations.FILE).exists()  # reading and changing write nothing ...
    gens.save()  # ... until the registry saves, before it hands out records
    again = ConfigGenerations(tmp_path)  # the agent restarted
    assert again.get("Domain:a") == bumped
    assert again.assign("Domain:b") not in (a, b, bumped)  # a re-defined object gets a new value
    (tmp_path / ConfigGenerations.FILE).write_text("{not json")
    broken = ConfigGenerations(tmp_path)
    assert broken.assign("Domain:a") > bumped  # unreadable state: new values, still never an old one


def test_the_registry_saves_generations_before_it_returns_records(tmp_path: Path) -> None:
    hv = FakeHypervisor.with_running_domains(2)
    registry = Registry(SCHEMA, hv, AGENT, 3, ConfigGenerations(tmp_path))
    records = registry.sync_all()
    saved = ConfigGenerations(tmp_path)  # what a restart would read now
    assert all(saved.get(r.object_id.object_name) == r.values["configGen"] != 0 for r in records)
    (bumped,) = registry.bump_config(records[-1].object_id.object_name)
    assert ConfigGenerations(tmp_path).get(bumped.object_id.object_name) == bumped.values["configGen"]


# --- events: every kind libvirt has, and what the pump does with them --------------------------------


def test_every_event_kind_of_this_libvirt_is_registered_and_in_the_schema() -> None:
    import libvirt

    from virtq.agent.libvirt_adapter import LibvirtHypervisor
    from virtq.agent.libvirt_events import DOMAIN_EVENT_KINDS, POOL_EVENT_KINDS, event_name

    domain_ids = {n[len("VIR_DOMAIN_EVENT_ID_"):] for n in dir(libvirt) if n.startswith("VIR_DOMAIN_EVENT_ID_")}
    pool_ids = {n[len("VIR_STORAGE_POOL_EVENT_ID_"):] for n in dir(libvirt)
                if n.startswith("VIR_STORAGE_POOL_EVENT_ID_")}
    domain_ids.discard("LAST")
    pool_ids.discard("LAST")
    assert domain_ids <= set(DOMAIN_EVENT_KINDS) and pool_ids <= set(POOL_EVENT_KINDS)
    for prefix, kinds in (("domain", DOMAIN_EVENT_KINDS), ("pool", POOL_EVENT_KINDS)):
        for kind in kinds:
            assert event_name(prefix, kind) in SCHEMA.events, kind
    hv = LibvirtHypervisor("test:///default")
    try:
        hv.watch(lambda event: None)
        assert len(hv._callbacks) == len(domain_ids) + len(pool_ids)  # the test driver accepts them all
        hv.unwatch()
        assert hv._callbacks == []
    finally:
        hv.close()


class Pushed:
    def __init__(self) -> None:
        self.records: List[List[DataRecord]] = []
        self.events: List[EventRecord] = []
        self.sampled: List[str] = []

    def push_records(self, records: Sequence[DataRecord]) -> None:
        self.records.append(list(records))


def make_pump(hv: FakeHypervisor) -> "tuple[EventPump, Registry, Pushed]":
    registry = Registry(SCHEMA, hv, AGENT, 3)
    registry.sync_all()
    pushed = Pushed()

    class NoSampler(Sampler):
        """Samples nothing: records the objects the pump asks it to sample."""

        def sample(self, class_name: str, keys: Optional[Sequence[str]] = None) -> SampleReport:
            pushed.sampled += list(keys or [])
            return SampleReport(class_name, 0, 0, (), 0)

    pump = EventPump(registry, NoSampler(registry, hv, lambda batches: None), pushed.push_records,
                     pushed.events.extend)
    return pump, registry, pushed


def test_an_object_someone_defined_is_pushed_once_with_its_first_generation() -> None:
    hv = FakeHypervisor.with_running_domains(1)
    pump, registry, pushed = make_pump(hv)
    new = uuid_of(7)
    hv.domains.append(DomainIdentity(new, "dom7", -1))
    pump.handle(HypervisorEvent("Domain", new, "domainLifecycle", "defined", "added"))
    (records,) = pushed.records
    assert [r.object_id.object_name for r in records] == [f"Domain:{new}"]  # one record: no extra bump
    first_gen = records[0].values["configGen"]
    assert pushed.events[0].values["event"] == "defined" and pushed.sampled == []  # once the burst is over:
    pump.sample_changed()
    assert pushed.sampled == [new]
    pump.handle(HypervisorEvent("Domain", new, "domainLifecycle", "defined", "updated"))  # re-defined
    (record,) = pushed.records[1]
    assert record.values["configGen"] != first_gen
    pump.handle(HypervisorEvent("Domain", new, "domainLifecycle", "suspended", "paused"))
    assert pushed.records[2] == []  # no configuration change, nothing re-read changed
    pump.sample_changed()
    assert pushed.sampled == [new, new]  # once for the two events since the last sample
    hv.domains.pop()
    pump.handle(HypervisorEvent("Domain", new, "domainLifecycle", "undefined", "removed"))
    (gone,) = pushed.records[3]
    assert gone.deleted and registry.get(f"Domain:{new}") is None
    pump.sample_changed()
    assert pushed.sampled == [new, new]  # not the vanished one


def test_a_burst_of_events_is_sampled_once_when_it_is_over() -> None:
    hv = FakeHypervisor.with_running_domains(2)
    pump, registry, pushed = make_pump(hv)
    pump.sample_quiet, pump.sample_latest = 0.05, 5.0
    first, second = (identity.uuid for identity in hv.domains[:2])
    pump.start()
    try:
        for key, event in [(first, "suspended"), (second, "suspended"), (first, "resumed")]:
            pump.deliver(HypervisorEvent("Domain", key, "domainLifecycle", event, "paused"))
        assert wait_until(lambda: pump.handled == 3, 5) and pushed.sampled == []  # within sample_quiet
        assert wait_until(lambda: pushed.sampled == [first, second], 5)  # then each once, in order
        pump.sample_quiet, pump.sample_latest = 5.0, 0.2  # a quiet longer than sample_latest: sampled at that
        pump.deliver(HypervisorEvent("Domain", first, "domainLifecycle", "suspended", "paused"))
        assert wait_until(lambda: pushed.sampled == [first, second, first], 5)
    finally:
        pump.stop()


def test_the_agent_pushes_deletions_before_updates() -> None:
    from virtq.agent import Agent

    transport = RecordingTransport()
    agent = Agent(SCHEMA, FakeHypervisor.with_running_domains(2), transport, instance="unit")
    updated = DataRecord(ObjectId("Domain:a", agent.name), SCHEMA.cls("Domain").schema_id, {"name": "a"}, 5, 1)
    pool = DataRecord(ObjectId("Pool:p", agent.name), SCHEMA.cls("Pool").schema_id, {"name": "p"}, 5, 1)
    deleted = DataRecord(ObjectId("Domain:b", agent.name), SCHEMA.cls("Domain").schema_id, {"name": "b"}, 5, 1, 5)
    agent.push([updated, pool, deleted])
    sent = transport.sent
    messages = [decode(roundtrip(w)) for w in sent]
    assert all(isinstance(m, DataIndication) for m in messages)
    records = [m.records for m in messages if isinstance(m, DataIndication)]
    assert [[r.object_id.object_name for r in m] for m in records] == [["Domain:b"], ["Domain:a"], ["Pool:p"]]
    assert records[0][0].delete_ts == 5
    assert all(w.subject.startswith("agent.ind.data.") for w in sent)
