"""A hostile agent against a console (issue 10, item 3): it can neither speak for another agent over its own
connection nor grow the console's agents, objects, tombstones, held samples or threads beyond the named
bounds — and an honest agent's state stays as its own messages made it."""

from __future__ import annotations

import threading
import uuid as uuidlib
from typing import List

from virtq.console import Console
from virtq.console.events import Event, LimitReached
from virtq.console.limits import Limits
from virtq.schema.codec import DataIndication, DataRecord, ObjectId
from virtq.testing import RecordingTransport, wait_until

from .fake_agents import DOMAIN, domain, feed, follow, heartbeat, push, stats

HV01 = "libvirt.org:virtq:hv01"
HV02 = "libvirt.org:virtq:hv02"
WEB = "11111111-1111-1111-1111-111111111111"
GHOST = "22222222-2222-2222-2222-222222222222"


def ids(n: int) -> List[str]:
    return [str(uuidlib.UUID(int=i + 1)) for i in range(n)]


def test_a_direct_connection_speaks_only_for_the_agent_that_first_answered_on_it() -> None:
    console = Console(timeout=2)
    honest, hostile, third = RecordingTransport(), RecordingTransport(), RecordingTransport()
    follow(console, honest, HV01, [domain(HV01, WEB, "web1")])
    follow(console, hostile, HV02, [domain(HV02, ids(1)[0], "own")])
    assert console.ingest.bound == {honest: HV01, hostile: HV02}

    # over its own connection, HV02 renames, then deletes HV01's domain, and keeps HV01's heartbeat alive
    push(console, hostile, HV02, [domain(HV01, WEB, "pwned")])
    push(console, hostile, HV01, [domain(HV01, WEB, "pwned")])
    push(console, hostile, HV02, [domain(HV01, WEB, "web1", deleted=True)])
    feed(console, hostile, heartbeat(HV01))
    # an object of no agent at all, and a third connection taking HV01's name over
    push(console, hostile, HV02, [DataRecord(ObjectId("Domain:x", "", 1), DOMAIN, {"name": "ghost"})])
    feed(console, third, heartbeat(HV01))
    assert console.untrusted == 6
    assert console.domains.get(WEB).name == "web1" and console.domains.get(WEB).agent == HV01
    assert len(console.domains) == 2 and third not in console.ingest.bound
    # HV01 is lost on time: HV02's heartbeats in its name did not count
    hv01 = console.agents.by_name(HV01)
    assert hv01 is not None
    seen = hv01.last_seen
    console.clock = lambda: seen + 3.5
    console.check_agents()
    assert console.is_lost(HV01)
    # HV02's own pushes still apply
    push(console, hostile, HV02, [domain(HV02, ids(1)[0], "renamed")])
    assert console.domains.get(ids(1)[0]).name == "renamed"
    console.close()


def test_nothing_is_believed_on_a_connection_before_an_agent_answered_on_it() -> None:
    console = Console(timeout=2)
    transport = RecordingTransport()
    push(console, transport, HV01, [domain(HV01, WEB, "early")])
    assert console.unbound == 1 and len(console.domains) == 0
    console.close()


def test_floods_stay_within_the_named_bounds() -> None:
    limits = Limits(agents=5, objects_per_agent=100, tombstones=50, tombstone_age=600.0, held_samples=300,
                    held_samples_per_agent=100, loaders=2)
    now = [1000.0]
    console = Console(timeout=0.2, addressing="qmf", limits=limits, clock=lambda: now[0])  # a broker, no rule
    events: List[Event] = []
    subscription = console.subscribe(events.append, kinds=LimitReached)
    honest = RecordingTransport()
    follow(console, honest, HV01, [domain(HV01, WEB, "web1")])
    before = console.domains.get(WEB)
    threads = threading.active_count()
    hostile = RecordingTransport()

    # ~1,000 ghost agents' heartbeats: at most `agents` followed, loaders bounded, not a thread each
    for i in range(1000):
        feed(console, hostile, heartbeat(f"libvirt.org:virtq:ghost{i}"))
    assert len(console.tracker.routes) <= limits.agents
    assert threading.active_count() <= threads + limits.loaders
    assert console.loading.workers.threads <= limits.loaders

    # 5,000 fake domains of one agent, then 1 of each of 1,000 agents
    push(console, hostile, HV02, [domain(HV02, u, f"fake{i}") for i, u in enumerate(ids(5000))])
    assert sum(1 for d in console.domains if d.agent == HV02) == limits.objects_per_agent
    for i in range(1000):
        push(console, hostile, f"libvirt.org:virtq:ghost{i}", [domain(f"libvirt.org:virtq:ghost{i}", GHOST, "x")])
    assert len({d.agent for d in console.domains}) <= limits.agents

    # 5,000 deletions: tombstones capped; after tombstone_age they are pruned
    push(console, hostile, HV02, [domain(HV02, u, "gone", deleted=True) for u in ids(5000)])
    assert console.updater.tombstones == limits.tombstones
    now[0] += limits.tombstone_age + 1
    push(console, hostile, HV02, [domain(HV02, ids(1)[0], "gone", deleted=True)])
    assert console.updater.tombstones == 1

    # samples of 5,000 unknown objects, from 10 agents: per agent and in all
    for i in range(10):
        stats(console, hostile, f"libvirt.org:virtq:s{i}", ids(5000), columns={"cpuTime": 1, "junk" * 1000: 1})
    held = console.updater.held
    assert len(held) <= limits.held_samples
    assert all(n <= limits.held_samples_per_agent for n in console.updater.held_per_agent.values())
    assert all("junk" * 1000 not in sample[0] for sample in held.values())  # undeclared statistics are not kept

    # the honest agent's state is as it was; every bound said so, once per episode
    assert console.domains.get(WEB) == before and console.domains.get(f"{HV01}/web1") == before
    assert wait_until(lambda: {e.limit for e in events if isinstance(e, LimitReached)} >= {
        "agents", "objects_per_agent", "tombstones", "held_samples", "held_samples_per_agent"}, 2)
    assert sum(1 for e in events if isinstance(e, LimitReached) and e.limit == "tombstones") == 1
    assert console.limit_watch.hits > 10_000
    console.close()
    subscription.close()
    wait_until(lambda: threading.active_count() <= threads, 5)


def test_loads_run_on_a_few_threads_one_piece_of_work_per_agent() -> None:
    console = Console(timeout=0.3, addressing="qmf", limits=Limits(loaders=3))
    transport = RecordingTransport()
    threads = threading.active_count()
    for i in range(50):
        feed(console, transport, heartbeat(f"libvirt.org:virtq:hv{i}"))
    assert console.loading.workers.threads == 3 and threading.active_count() <= threads + 3
    for _ in range(3):  # a load not answered yet is queued once, however often it is asked for
        for i in range(50):
            console.loading.reread(f"libvirt.org:virtq:hv{i}")
    assert console.loading.workers.pending() <= 50 + 50
    console.close()
    wait_until(lambda: threading.active_count() <= threads, 5)


def test_an_unknown_agent_cannot_be_pushed_into_an_honest_agents_records() -> None:
    """A push whose message names the honest agent but comes over another's connection (direct mode)."""
    console = Console(timeout=2)
    honest, hostile = RecordingTransport(), RecordingTransport()
    follow(console, honest, HV01, [domain(HV01, WEB, "web1")])
    follow(console, hostile, HV02, [])
    feed(console, hostile, DataIndication(records=(domain(HV01, WEB, "x", deleted=True),), agent=HV01))
    assert console.domains.get(WEB).name == "web1"
    console.close()


def test_a_second_connection_answering_with_a_followed_name_is_refused_at_once() -> None:
    import pytest

    from virtq.schema import errors
    from virtq.schema.codec import TOPIC, AgentInfo, AgentLocateRequest, AgentLocateResponse, now_ns

    console = Console(timeout=2)
    first, second = RecordingTransport(), RecordingTransport()
    follow(console, first, HV01, [])
    pending = console.requests.send(second, AgentLocateRequest(), TOPIC)
    feed(console, second, AgentLocateResponse(AgentInfo(HV01, 1, 1, now_ns()), correlation_id=pending.cid,
                                              agent=HV01))
    with pytest.raises(errors.NotConnectedError, match="already answered on another connection"):
        console.requests.wait(pending, 2, "agent locate")
    assert console.ingest.bound == {first: HV01}
    console.close()


def test_a_peer_faster_than_the_console_meets_back_pressure() -> None:
    """The inbox holds at most ``inbox_bytes``: a transport's delivery then waits for the ingest thread."""
    from virtq.console._inbox import Inbox

    full: List[int] = []
    inbox: Inbox[int] = Inbox(4096, full.append)
    for i in range(4):
        inbox.put(i, 1024)
    done = threading.Event()

    def put_one_more() -> None:
        inbox.put(4, 1024)
        done.set()

    waiter = threading.Thread(target=put_one_more)
    waiter.start()
    assert not done.wait(0.2) and full == [4096] and inbox.waits == 1
    inbox.put(99, 10_000, wait=False)  # the console's own items never wait
    assert inbox.get() == 0 and done.wait(2)
    assert [inbox.get() for _ in range(5)] == [1, 2, 3, 99, 4]
    waiter.join()

    console = Console(timeout=2, addressing="qmf", limits=Limits(inbox_bytes=10_000))
    events: List[Event] = []
    subscription = console.subscribe(events.append, kinds=LimitReached)
    transport = RecordingTransport()
    deliver = console.ingest.deliverer("url", transport)
    # records: a heartbeat or statistics would be applied by the transport's thread itself, the inbox empty
    flood = DataIndication(records=(), agent="libvirt.org:virtq:x").encode("x")
    flooding = threading.Thread(target=lambda: [deliver(flood) for _ in range(100)], daemon=True)
    flooding.start()  # nobody applies them yet: the transport's thread waits at ~10 KB
    assert wait_until(lambda: console.ingest.inbox.waits == 1, 2) and console.ingest.inbox.held <= 10_000 + 512
    console.ingest.start()  # the console catches up, and the flood goes on
    flooding.join(5)
    assert not flooding.is_alive() and wait_until(
        lambda: any(isinstance(e, LimitReached) and e.limit == "inbox_bytes" for e in events), 2)
    console.close()
    subscription.close()
