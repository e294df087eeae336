"""What a fleet sends every interval, made cheap (docs/BENCHMARKS.md §4, "Heartbeats and the fleet's per-message
cost"): a heartbeat that says what the last one said only moves when its agent was heard, decoded once; and
heartbeats and statistics are applied by the transport's thread that received them when nothing waits in the
inbox, in arrival order all the same, with those waiting for a change woken."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator, List, Tuple

from virtq.console import Console
from virtq.console._ingest import HeartbeatDecoder, routine_push
from virtq.console.events import AgentAdded, AgentDegraded, AgentLost, AgentRecovered, AgentRestarted, Event
from virtq.schema.codec import AgentHeartbeat, DataIndication, StatsBatch, StatsIndication, now_ns
from virtq.testing import RecordingTransport, wait_until

from .fake_agents import DOMAIN, domain, feed, follow, heartbeat

HV01 = "libvirt.org:virtq:hv01"
HV02 = "libvirt.org:virtq:hv02"
UUID = "6f1d1f7e-3b0a-4a57-9d39-0c5c1b0e2a01"


@contextlib.contextmanager
def following(clock: Callable[[], float] = time.monotonic) -> Iterator[Tuple[Console, RecordingTransport]]:
    """A console with its ingest thread, following HV01 (one domain) over a RecordingTransport."""
    console = Console(timeout=2, clock=clock)
    transport = RecordingTransport()
    console.ingest.start()
    try:
        follow(console, transport, HV01, [domain(HV01, UUID, "vm1")])
        console.settle()
        yield console, transport
    finally:
        console.close()


def test_an_unchanged_heartbeat_only_moves_when_its_agent_was_heard() -> None:
    now = [100.0]
    with following(lambda: now[0]) as (console, transport):
        events: List[Event] = []
        console.subscribe(events.append, kinds=(AgentAdded, AgentDegraded, AgentLost, AgentRecovered, AgentRestarted))
        before = console.agents.get(HV01)
        now[0] = 101.0
        assert console.ingest.apply("url", transport, heartbeat(HV01).encode("x")) is False
        after = console.agents.get(HV01)
        assert after.last_seen == 101.0 and after.attributes == before.attributes

        now[0] = 102.0  # a heartbeat that says something new is told, once
        assert console.ingest.apply("url", transport, heartbeat(HV01, stuck=2).encode("x")) is True
        assert console.ingest.apply("url", transport, heartbeat(HV01, stuck=2).encode("x")) is False
        assert console.ingest.apply("url", transport, heartbeat(HV01).encode("x")) is True
        assert console.agents.get(HV01).last_seen == 102.0

        now[0] = 200.0  # lost, then back: not routine, whatever the heartbeat says
        assert [v.name for v in console.check_agents()] == [HV01]
        assert console.ingest.apply("url", transport, heartbeat(HV01).encode("x")) is True
        assert not console.is_lost(HV01)
        assert console.ingest.apply("url", transport, heartbeat(HV01, epoch=2).encode("x")) is True  # a restart
        assert console.agents.get(HV01).epoch == 2
        told = [AgentDegraded, AgentRecovered, AgentLost, AgentAdded, AgentRestarted]  # once each, in order
        assert wait_until(lambda: len(events) >= len(told), 5) and [type(e) for e in events] == told


def test_the_heartbeat_decoder_decodes_an_agent_s_unchanged_heartbeat_once() -> None:
    decoder = HeartbeatDecoder(limit=1)
    first = decoder.decode(heartbeat(HV01).encode("x"))
    again = decoder.decode(heartbeat(HV01).encode("x"))  # another _timestamp, nothing else
    assert isinstance(first, AgentHeartbeat) and again is first
    changed = decoder.decode(heartbeat(HV01, stuck=1).encode("x"))
    assert isinstance(changed, AgentHeartbeat) and changed is not first and changed.info.attributes["stuck"] == 1
    assert decoder.decode(heartbeat(HV01, stuck=1).encode("x")) is changed
    other = decoder.decode(heartbeat(HV02).encode("x"))  # beyond the limit: decoded every time, still right
    assert isinstance(other, AgentHeartbeat) and other.info.name == HV02
    assert decoder.decode(heartbeat(HV02).encode("x")) is not other
    answer = heartbeat(HV01, stuck=1).encode("x")  # not a push: not taken from what was remembered
    assert decoder.decode(type(answer)(answer.address, answer.properties, answer.body,
                                       correlation_id="c1")).correlation_id == "c1"


def _stats(cpu: int) -> StatsIndication:
    return StatsIndication(batches=(StatsBatch(DOMAIN, 1, now_ns(), (UUID,), {"cpuTime": [cpu]}),), agent=HV01)


def test_the_transport_s_thread_applies_heartbeats_and_statistics_when_nothing_waits() -> None:
    with following() as (console, transport):
        threads: List[str] = []
        console.updater.stats_observers.append(lambda agent, batches: threads.append(threading.current_thread().name))
        deliver = console.ingest.deliverer("url", transport)
        asked, woken = threading.Event(), threading.Event()

        def applied() -> bool:
            asked.set()
            return console.domains.get(UUID).stats.get("cpuTime") == 7

        def wait() -> None:  # one waiting for a change: it is woken by statistics applied on another thread
            if console.wait_for(applied, 5):
                woken.set()
        waiter = threading.Thread(target=wait)
        waiter.start()
        assert asked.wait(5)
        deliver(heartbeat(HV01).encode("x"))
        deliver(_stats(7).encode("x"))
        assert threads == [threading.current_thread().name]  # applied right here, not by the ingest thread
        assert woken.wait(5)
        waiter.join(5)


def test_only_an_agent_s_steady_state_is_applied_by_the_transport_s_thread() -> None:
    with following() as (console, transport):
        steady = console.loading.steady
        assert routine_push(heartbeat(HV01).encode("x"), steady) and routine_push(_stats(1).encode("x"), steady)
        assert not routine_push(heartbeat(HV01, epoch=2).encode("x"), steady)  # a restart: the ingest thread's
        assert not routine_push(heartbeat(HV02).encode("x"), steady)  # an agent found: loaded by ingest
        assert not routine_push(DataIndication(records=(), agent=HV01).encode("x"), steady)
        console.loading.reading.add(HV01)  # while it is read, all it sends keeps the inbox's order of old
        assert not routine_push(heartbeat(HV01).encode("x"), steady)
        assert not routine_push(_stats(1).encode("x"), steady)


def test_what_waits_in_the_inbox_is_applied_first() -> None:
    with following() as (console, transport):
        stopped, go = threading.Event(), threading.Event()

        def hold() -> None:
            stopped.set()
            go.wait(5)
        console.ingest.inbox.put(("", None, hold), wait=False)
        assert stopped.wait(5)  # the ingest thread holds an item: a heartbeat and statistics queue behind it
        deliver = console.ingest.deliverer("url", transport)
        deliver(DataIndication(records=(domain(HV01, UUID, "renamed"),), agent=HV01).encode("x"))
        deliver(_stats(9).encode("x"))
        assert console.domains.get(UUID).stats.get("cpuTime") != 9 and console.ingest.inbox.held > 0
        go.set()
        assert wait_until(lambda: console.domains.get(UUID).stats.get("cpuTime") == 9, 5)
        assert console.domains.get(UUID).name == "renamed"
