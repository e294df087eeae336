"""Statistics applied a batch at a time (issue 12): one StatsApplied per batch for every subscriber that does
not ask for more, StatsUpdated per object only for those that name it, snapshots made when read.

The staleness, epoch and tombstone rules themselves are tested in test_push_units.py and
test_out_of_order.py; here: that a batch keeps them row by row when it must, and what the events say.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Sequence

import pytest

from virtq.console import Console
from virtq.console.events import DomainStateChanged, Event, ObjectAdded, StatsApplied, StatsUpdated
from virtq.console.repository import AgentView
from virtq.console.subscriptions import Subscription
from virtq.schema import default_schema
from virtq.schema.codec import DataRecord, ObjectId, StatsBatch

SCHEMA = default_schema()
AGENT = "libvirt.org:virtq:batches"
RUNNING, PAUSED = 1, 3


def uuid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def dom(i: int) -> ObjectId:
    return ObjectId(f"Domain:{uuid(i)}", AGENT, 5)


def record(i: int, update_ts: int = 100, **stats: int) -> DataRecord:
    values = {"uuid": uuid(i), "name": f"vm{i}", "id": i, "configGen": 1, **stats}
    return DataRecord(dom(i), SCHEMA.cls("Domain").schema_id, values, update_ts, 100)


def batch(sample_ts: int, rows: Sequence[int], epoch: int = 5, **columns: Sequence[Any]) -> StatsBatch:
    return StatsBatch(SCHEMA.cls("Domain").schema_id, epoch, sample_ts, tuple(uuid(i) for i in rows),
                      {name: list(values) for name, values in columns.items()})


def drain(subscription: Subscription) -> List[Event]:
    return list(iter(lambda: subscription.get(0), None))


@pytest.fixture
def console() -> Iterator[Console]:
    """Never started: its updater is driven by hand, as the ingest thread would."""
    console = Console()
    console.agents.put(AGENT, AgentView(AGENT, 5, 1))
    console.updater.apply_records([record(i, state=RUNNING, cpuTime=0) for i in range(3)])
    yield console
    console.close()


def test_a_default_subscriber_gets_one_event_per_batch(console: Console) -> None:
    default, per_object, everything = (console.subscribe(kinds=k) for k in (None, StatsUpdated, Event))
    console.updater.apply_stats(AGENT, [batch(1_000, [0, 1, 2], cpuTime=[10, 11, 12])])
    (applied,) = drain(default)
    assert isinstance(applied, StatsApplied)
    assert (applied.agent, applied.class_name, applied.epoch, applied.sample_ts) == (AGENT, "Domain", 5, 1_000)
    assert list(applied.changes()) == [(dom(i), {"cpuTime": 10 + i}) for i in range(3)]
    assert applied.object_name(1) == dom(1).object_name and applied.changed(2) == {"cpuTime": 12}
    updated = drain(per_object)
    assert [(type(e), e.obj.object_id, e.changed) for e in updated if isinstance(e, StatsUpdated)] == [
        (StatsUpdated, dom(i), {"cpuTime": 10 + i}) for i in range(3)]
    assert [type(e) for e in drain(everything)] == [StatsApplied] + [StatsUpdated] * 3
    assert console.subscribers.wanted(StatsApplied) and console.subscribers.wanted(StatsUpdated)
    for subscription in (per_object, everything):
        console.unsubscribe(subscription)
    assert not console.subscribers.wanted(StatsUpdated)  # nobody asks: no per-object event is made


def test_a_batch_applies_row_by_row_when_it_must(console: Console) -> None:
    """Rows of objects holding a newer sample lose, rows of unknown objects are held; the event names only the
    rows applied, with their own values."""
    events = console.subscribe()
    updater = console.updater
    updater.apply_stats(AGENT, [batch(2_000, [1], cpuTime=[99])])
    updater.apply_stats(AGENT, [batch(1_500, [0, 1, 7, 2], cpuTime=[20, 21, 27, None], state=[None, PAUSED, 1, 3])])
    applied = [e for e in drain(events) if isinstance(e, StatsApplied)][-1]
    assert applied.keys == (uuid(0), uuid(2)) and dict(applied.columns) == {"cpuTime": [20, None],
                                                                            "state": [None, PAUSED]}
    assert console.lookup(dom(0)).stats == {"state": RUNNING, "cpuTime": 20}
    assert console.lookup(dom(1)).stats == {"state": RUNNING, "cpuTime": 99}  # its newer sample stays
    assert console.lookup(dom(2)).stats == {"state": PAUSED, "cpuTime": 0} and console.lookup(dom(2)).stats_ts == 1_500
    assert updater.held[(AGENT, dom(7).object_name)] == ({"cpuTime": 27, "state": 1}, 1_500, 5)
    assert updater.samples_applied == 3
    updater.apply_records([record(7)])
    assert console.lookup(dom(7)).stats == {"cpuTime": 27, "state": 1}


def test_snapshots_are_made_when_read_and_never_change(console: Console) -> None:
    before = console.lookup(dom(0))
    assert console.lookup(dom(0)) is before  # nothing moved: the same snapshot
    console.updater.apply_stats(AGENT, [batch(1_000, [0], cpuTime=[5])])
    after = console.lookup(dom(0))
    assert before.cpuTime == 0 and before.stats_ts == 0  # a snapshot never changes
    assert after.cpuTime == 5 and after.stats_ts == 1_000 and after == before and after.name == "vm0"
    assert console.lookup(dom(0)) is after
    assert {d.name: d.cpuTime for d in console.domains} == {"vm0": 5, "vm1": 0, "vm2": 0}
    assert [d.cpuTime for d in console.domains.of_agent(AGENT) if d.name == "vm0"] == [5]


def test_state_changes_are_told_per_object_without_per_object_statistics(console: Console) -> None:
    events = console.subscribe(kinds=(DomainStateChanged, StatsApplied))
    console.updater.apply_stats(AGENT, [batch(1_000, [0, 1, 2], state=[None, PAUSED, RUNNING], cpuTime=[1, 2, 3])])
    told = drain(events)
    assert [type(e) for e in told] == [StatsApplied, DomainStateChanged]
    change = told[1]
    assert isinstance(change, DomainStateChanged)
    assert (change.obj.object_id, change.old, change.new, change.obj.cpuTime) == (dom(1), "running", "paused", 2)


def test_a_job_records_the_statistics_of_its_object(console: Console) -> None:
    """What the console observes on an object while a job owns it is the job's, asked for or not."""
    with console.apartments.run(console, dom(1), "suspend") as job:
        console.updater.apply_stats(AGENT, [batch(1_000, [0, 1], state=[None, PAUSED], cpuTime=[1, 2])])
    assert [(type(e), getattr(e, "job", None)) for e in job.transitions] == [(StatsUpdated, job.id),
                                                                             (DomainStateChanged, job.id)]
    assert console.apartments.owners() == {}


def test_a_removed_objects_slot_is_reused_clean(console: Console) -> None:
    updater = console.updater
    updater.apply_stats(AGENT, [batch(1_000, [0, 1, 2], maxMem=[1, 2, 3])])
    updater.apply_records([DataRecord(dom(1), SCHEMA.cls("Domain").schema_id, {"uuid": uuid(1)}, 500, 100, 500)])
    assert console.domains.by_id(dom(1)) is None and console.domains.sampled_at(dom(1)) == float("-inf")
    added = console.subscribe(kinds=ObjectAdded)
    updater.apply_records([record(9)])
    assert console.lookup(dom(9)).stats == {} and console.lookup(dom(9)).stats_ts == 0
    assert len(drain(added)) == 1 and len(console.domains) == 3
    updater.apply_stats(AGENT, [batch(2_000, [9, 0], cpuTime=[9, 0])])
    assert console.lookup(dom(9)).stats == {"cpuTime": 9}
    assert console.lookup(dom(0)).stats == {"state": RUNNING, "cpuTime": 0, "maxMem": 1}
