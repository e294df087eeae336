"""A migrated domain is one move (console/_moves.py): subscribers that ask for DomainMigrated get it instead of
the ObjectRemoved/ObjectAdded pair of its two copies, whichever order the two agents' pushes arrive in;
the others get the pair, as before. Driven through the console's updater, as pushes are applied."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from typing import List, Optional

import pytest

from virtq.console import Console
from virtq.console.cli import KINDS, Watcher
from virtq.console.events import DomainMigrated, Event, ObjectAdded, ObjectEvent, ObjectRemoved
from virtq.console.repository import AgentView
from virtq.console.subscriptions import Subscription
from virtq.schema import default_schema
from virtq.schema.codec import DataRecord, EventRecord, ObjectId

SCHEMA = default_schema()
A, B = "libvirt.org:virtq:host-a", "libvirt.org:virtq:host-b"
UUID = "7c1a9e52-3f0b-4d8e-9a61-2b5c8d4e7f10"
RUNNING, PAUSED, SHUTOFF = 1, 3, 5
MOVES = (DomainMigrated, ObjectAdded, ObjectRemoved)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def console() -> Console:
    console = Console()
    for name in (A, B):
        console.agents.put(name, AgentView(name, 1, 1))
    return console


def _copy(agent: str, ts: int, state: Optional[int] = None, deleted: bool = False) -> DataRecord:
    stats = {} if state is None else {"state": state}
    return DataRecord(ObjectId(f"Domain:{UUID}", agent, 1), SCHEMA.cls("Domain").schema_id,
                      {"uuid": UUID, "name": "web1", "id": 1, "configGen": 1, **stats}, ts, 1, ts if deleted else 0)


def _lifecycle(agent: str, event: str, detail: str) -> EventRecord:
    values = {"domain": ObjectId(f"Domain:{UUID}", agent, 1).to_wire(), "event": event, "detail": detail}
    return EventRecord(SCHEMA.events["domainLifecycle"].schema_id, values, time.time_ns())


def _drain(subscription: Subscription) -> List[Event]:
    events: List[Event] = []
    while True:
        event = subscription.get(timeout=0.05)
        if event is None:
            return events
        events.append(event)


def _seen(events: List[Event]) -> List[str]:
    """What a subscriber saw, shortly: "added b", "removed a", "migrated a->b"."""
    short = {A: "a", B: "b"}
    out = []
    for event in events:
        if isinstance(event, DomainMigrated):
            out.append(f"migrated {short[event.from_agent]}->{short[event.to_agent]}")
        elif isinstance(event, (ObjectAdded, ObjectRemoved)):
            assert isinstance(event, ObjectEvent)
            out.append(f"{'added' if isinstance(event, ObjectAdded) else 'removed'} {short[event.obj.agent]}")
    return out


def _start_on_a(console: Console) -> None:
    console.updater.apply_records([_copy(A, 10, RUNNING)])


def test_destination_appears_before_the_source_goes(console: Console) -> None:
    _start_on_a(console)
    followers, others = console.subscribe(kinds=MOVES), console.subscribe()
    console.updater.apply_records([_copy(B, 20, PAUSED)])  # incoming: created paused when the migration starts
    console.updater.apply_records([_copy(B, 30, RUNNING)])
    console.updater.apply_records([_copy(A, 31, deleted=True)])
    assert _seen(_drain(followers)) == ["migrated a->b"]
    assert _seen(_drain(others)) == ["added b", "removed a"]
    moved = console.domains.get(UUID)  # one copy left, reachable under the new agent
    assert moved.agent == B and console.domains.get(f"{B.rsplit(':', 1)[1]}/web1").agent == B


def test_source_goes_before_the_destination_appears(console: Console) -> None:
    _start_on_a(console)
    followers, others = console.subscribe(kinds=MOVES), console.subscribe()
    console.updater.apply_events(A, [_lifecycle(A, "stopped", "migrated")])
    console.updater.apply_records([_copy(A, 31, deleted=True)])
    assert len(console.domains) == 0
    console.updater.apply_records([_copy(B, 30, RUNNING)])
    followed = _drain(followers)
    assert _seen(followed) == ["migrated a->b"]
    migrated = followed[-1]
    assert isinstance(migrated, DomainMigrated) and migrated.obj.agent == B and migrated.downtime is None
    assert _seen(_drain(others)) == ["removed a", "added b"]


def test_a_departure_whose_destination_never_appears_is_told_gone_late() -> None:
    clock = Clock()
    console = Console()
    console.moves._clock = clock
    console.agents.put(A, AgentView(A, 1, 1))
    _start_on_a(console)
    followers = console.subscribe(kinds=MOVES)
    console.updater.apply_events(A, [_lifecycle(A, "stopped", "migrated")])
    console.updater.apply_records([_copy(A, 31, deleted=True)])
    assert _seen(_drain(followers)) == []
    clock.now += console.moves.grace + 1
    console.moves.flush()
    assert _seen(_drain(followers)) == ["removed a"]


def test_a_failed_migration_is_nothing_to_followers(console: Console) -> None:
    _start_on_a(console)
    followers, others = console.subscribe(kinds=MOVES), console.subscribe()
    console.updater.apply_records([_copy(B, 20, PAUSED)])
    console.updater.apply_records([_copy(B, 25, deleted=True)])  # aborted: the destination's copy goes
    assert _seen(_drain(followers)) == []
    assert _seen(_drain(others)) == ["added b", "removed b"]
    assert console.domains.get(UUID).agent == A


def test_a_move_that_keeps_the_source_definition(console: Console) -> None:
    _start_on_a(console)
    followers = console.subscribe(kinds=MOVES)
    console.updater.apply_records([_copy(B, 20, PAUSED)])
    console.updater.apply_records([_copy(B, 30, RUNNING)])
    console.updater.apply_records([_copy(A, 31, SHUTOFF)])  # not undefined: shut off, kept
    assert _seen(_drain(followers)) == ["migrated a->b"]
    console.updater.apply_records([_copy(A, 40, deleted=True)])  # its definition removed right after
    assert _seen(_drain(followers)) == []


def test_two_shut_off_definitions_are_not_a_move(console: Console) -> None:
    console.updater.apply_records([_copy(A, 10, SHUTOFF)])
    followers = console.subscribe(kinds=MOVES)
    console.updater.apply_records([_copy(B, 20, SHUTOFF)])  # the same definition on two hosts (shared storage)
    console.updater.apply_records([_copy(A, 30, deleted=True)])
    assert _seen(_drain(followers)) == ["added b", "removed a"]


def test_the_console_own_migration_tells_its_downtime(console: Console) -> None:
    _start_on_a(console)
    followers = console.subscribe(kinds=MOVES)
    console.moves.expect(UUID)
    console.updater.apply_records([_copy(A, 31, deleted=True)])  # no lifecycle event needed: it is ours
    console.updater.apply_records([_copy(B, 30, RUNNING)])
    assert _seen(_drain(followers)) == []  # told by the job, with the downtime
    move = console.moves.done(UUID, downtime=17, job=5)
    assert move is not None and (move.from_agent, move.to_agent) == (A, B)
    told = _drain(followers)
    assert _seen(told) == ["migrated a->b"]
    assert isinstance(told[0], DomainMigrated) and told[0].downtime == 17 and told[0].job == 5


def test_subscribers_without_kinds_do_not_get_moves(console: Console) -> None:
    _start_on_a(console)
    everything = console.subscribe()
    console.updater.apply_records([_copy(B, 20, PAUSED)])
    console.updater.apply_records([_copy(A, 31, deleted=True)])
    assert not any(isinstance(e, DomainMigrated) for e in _drain(everything))


def test_virtq_watch_shows_a_move_as_one_line(console: Console) -> None:
    console.agents.put(A, AgentView(A, 1, 1, hostname="hv01"))
    console.agents.put(B, AgentView(B, 1, 1, hostname="hv02"))
    _start_on_a(console)
    watcher = Watcher(console, [])
    events = console.subscribe(kinds=tuple(cls for name, cls in KINDS.items() if name != "stats"))  # its default
    console.updater.apply_records([_copy(B, 20, PAUSED)])
    console.updater.apply_records([_copy(A, 31, deleted=True)])
    moved = [e for e in _drain(events) if isinstance(e, (ObjectAdded, ObjectRemoved, DomainMigrated))]
    assert len(moved) == 1 and isinstance(moved[0], DomainMigrated)
    now = datetime(2026, 1, 2, 12, 0, 1, 234000)
    assert watcher.line(moved[0], now) == "12:00:01.234 hv02 domain web1 migrated hv01 -> hv02"
    told = dataclasses.replace(moved[0], downtime=17, job=3)
    assert watcher.line(told, now).endswith("migrated hv01 -> hv02 (downtime 17 ms) [job 3]")
    record = watcher.record(told, now)
    assert (record["type"], record["from_agent"], record["to_agent"], record["downtime"]) == ("migrated", A, B, 17)
