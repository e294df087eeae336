"""The hops issue 12 cut (bench/event_latency measures them): a reactor woken once per burst of calls, apartment
threads reused instead of started per call, an event pushed from its re-read's apartment, credit topped up in
batches, small method requests queued in their apartment by the transport's thread."""

from __future__ import annotations

import functools
import os
import threading
from typing import Any, List

import pytest
from pytest_mock import MockerFixture

from virtq.agent import apartments as apartments_module
from virtq.agent.apartments import Apartments, Ticket
from virtq.transport._credit import GatedFlow
from virtq.transport import _reactor as reactor_module
from virtq.transport._reactor import _Calls
from virtq.testing import wait_until


def _pipe_bytes(calls: _Calls) -> bytes:
    os.set_blocking(calls.pipe[0], False)
    try:
        return os.read(calls.pipe[0], 512)
    except BlockingIOError:
        return b""


class _Selectable:
    def terminate(self) -> None: ...

    def update(self) -> None: ...


class _Event:
    context = _Selectable()


def test_a_burst_of_calls_wakes_the_reactor_once_and_runs_in_order() -> None:
    calls = _Calls()
    ran: List[int] = []
    try:
        for i in range(5):
            calls.add(functools.partial(ran.append, i))
        assert _pipe_bytes(calls) == b"!"  # one wake-up for the five
        os.write(calls.pipe[1], b"!")  # (put back what the test took, as the reactor would find it)
        calls.on_selectable_readable(_Event())
        assert ran == [0, 1, 2, 3, 4]
        calls.add(lambda: ran.append(5))  # woken again for a call after the wake-up
        assert _pipe_bytes(calls) == b"!"
    finally:
        for fd in calls.pipe:
            os.close(fd)


def test_a_failing_call_does_not_stop_the_others(mocker: MockerFixture) -> None:
    logged = mocker.patch.object(reactor_module.log, "exception")  # (a logger an earlier test may have disabled)
    calls = _Calls()
    ran: List[str] = []
    try:
        def fail() -> None:
            raise ZeroDivisionError("boom")
        calls.add(fail)
        calls.add(lambda: ran.append("after"))
        calls.on_selectable_readable(_Event())
        assert ran == ["after"]
        logged.assert_called_once_with("reactor call failed")
    finally:
        for fd in calls.pipe:
            os.close(fd)


def test_an_apartment_thread_serves_the_next_object_then_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apartments_module, "IDLE_LINGER", 0.3)
    apartments = Apartments()
    threads: List[int] = []

    def job(ticket: Ticket) -> None:
        threads.append(threading.get_ident())

    try:
        for name in ("Domain:a", "Domain:b", "Domain:a"):
            ticket = apartments.submit(name, "getInfo", job, timeout=5)
            assert ticket.wait(5)
            wait_until(lambda: not apartments.busy() and apartments._idle == 1, 5)
        assert len(set(threads)) == 1  # no thread started per call
        wait_until(lambda: apartments._idle == 0, 5)  # and none kept beyond IDLE_LINGER
    finally:
        apartments.stop()


def test_objects_busy_at_once_still_get_a_thread_each() -> None:
    apartments = Apartments()
    release = threading.Event()
    started: List[str] = []

    def job(ticket: Ticket) -> None:
        started.append(ticket.name)
        release.wait(5)

    try:
        tickets = [apartments.submit(f"Domain:{i}", "getInfo", job, timeout=5) for i in range(3)]
        assert wait_until(lambda: len(started) == 3, 5)  # in parallel, not one behind the other
        release.set()
        assert all(t.wait(5) for t in tickets)
    finally:
        release.set()
        apartments.stop()


class _Link:
    is_receiver = True
    state = 0

    def __init__(self, credit: int) -> None:
        self.credit = credit
        self.granted: List[int] = []

    def flow(self, n: int) -> None:
        self.granted.append(n)
        self.credit += n


def test_credit_is_topped_up_once_half_the_window_is_used() -> None:
    flow = GatedFlow(8)
    link = _Link(0)
    flow._flow(link, None)
    assert link.granted == [8]
    for _ in range(3):
        link.credit -= 1
        flow._flow(link, None)
    assert link.granted == [8]  # 5 of 8 left: no flow frame per message
    link.credit -= 1
    flow._flow(link, None)
    assert link.granted == [8, 4] and link.credit == 8


def test_a_small_method_request_skips_the_worker_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    from virtq.agent import Agent
    from virtq.schema import default_schema
    from virtq.schema.codec import MethodRequest, ObjectId, direct_address
    from virtq.testing import FakeHypervisor, RecordingTransport

    transport = RecordingTransport()
    agent = Agent(default_schema(), FakeHypervisor.with_running_domains(1), transport, heartbeat=60.0)
    submitted: List[Any] = []
    monkeypatch.setattr(agent._pool, "submit", lambda *a: submitted.append(a))
    agent.registry.sync_all()
    domain = next(e for e in agent.registry.entries() if e.class_name == "Domain")
    request = MethodRequest(object_id=ObjectId(f"Domain:{domain.key}", agent.name), method_name="getInfo",
                            arguments={}, correlation_id="c1", reply_to="reply-1")
    try:
        agent._receive(request.encode(direct_address(agent.name)))
        assert wait_until(lambda: any(w.correlation_id == "c1" for w in transport.sent), 5)
        assert submitted == []
    finally:
        agent.apartments.stop()
        agent._pool.shutdown(wait=False)


class _NoSampler:
    def sample(self, class_name: str, keys: Any = None) -> None: ...


def test_an_event_goes_out_from_its_re_read_and_once_when_the_re_read_is_late(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from virtq.agent.events import EventPump
    from virtq.agent.hypervisor import HypervisorEvent
    from virtq.agent.registry import Registry
    from virtq.schema import default_schema
    from virtq.testing import FakeHypervisor

    registry = Registry(default_schema(), FakeHypervisor.with_running_domains(1), "agent", 1)
    registry.sync_all()
    key = next(e.key for e in registry.entries() if e.class_name == "Domain")
    told: List[str] = []
    apartments = Apartments()
    pump = EventPump(registry, _NoSampler(), lambda records: None,  # type: ignore[arg-type]
                     lambda events: told.append(threading.current_thread().name), apartments, read_wait=0.2)
    event = HypervisorEvent("Domain", key, "domainLifecycle", "suspended", "paused")
    gate = threading.Event()
    try:
        pump.handle(event)
        assert len(told) == 1 and told[0].startswith("virtq-call")  # from the apartment, behind the re-read
        read = registry.read_object
        monkeypatch.setattr(registry, "read_object", lambda *a: gate.wait(5) and read(*a))
        pump.handle(event)
        assert told[1] == threading.current_thread().name  # the re-read is late: the pump tells first
        gate.set()
        assert wait_until(lambda: not apartments.busy(), 5)
        assert len(told) == 2  # and the late re-read does not tell again
    finally:
        gate.set()
        apartments.stop()


def test_an_answer_completes_its_request_on_the_transport_thread_only_when_nothing_is_ahead_of_it() -> None:
    from virtq.console import Console
    from virtq.schema.codec import MethodRequest, MethodResponse, ObjectId, direct_address
    from virtq.testing import RecordingTransport

    from .fake_agents import heartbeat

    agent = "libvirt.org:virtq:hv01"
    console = Console(timeout=2)  # direct mode, its ingest thread not started: nothing queued is applied
    transport = RecordingTransport()
    deliver = console.ingest.deliverer("url", transport)
    request = MethodRequest(object_id=ObjectId("Domain:x", agent), method_name="getInfo")
    try:
        first = console.requests.send(transport, request, direct_address(agent))
        deliver(MethodResponse(correlation_id=first.cid, agent=agent).encode("reply"))
        assert first.done.is_set() and len(first.replies) == 1  # handed over on the delivering thread
        second = console.requests.send(transport, request, direct_address(agent))
        deliver(heartbeat(agent).encode("x"))  # queued: the ingest thread applies it
        applied: List[bool] = []
        console.ingest.inbox.put(("", None, lambda: applied.append(second.done.is_set())), wait=False)
        deliver(MethodResponse(correlation_id=second.cid, agent=agent).encode("reply"))
        assert not second.done.wait(0.1)  # behind what is queued: it waits its turn in the inbox
        console.ingest.start()
        assert second.done.wait(2) and applied == [False]  # what was queued before it went first
    finally:
        console.close()


def test_through_a_broker_an_answer_always_queues_behind_the_pushes() -> None:
    """Through a broker an agent's pushes and its replies come through two queues: no short cut there."""
    from virtq.console import Console
    from virtq.schema.codec import MethodRequest, MethodResponse, ObjectId, direct_address
    from virtq.testing import RecordingTransport

    agent = "libvirt.org:virtq:hv01"
    console = Console(timeout=2, addressing="qmf")  # its ingest thread not started
    transport = RecordingTransport()
    try:
        pending = console.requests.send(transport, MethodRequest(object_id=ObjectId("Domain:x", agent),
                                                                 method_name="getInfo"), direct_address(agent))
        console.ingest.deliverer("url", transport)(MethodResponse(correlation_id=pending.cid,
                                                                  agent=agent).encode("reply"))
        assert not pending.done.wait(0.1)  # queued for the ingest thread
        console.ingest.start()
        assert pending.done.wait(2)
    finally:
        console.close()
