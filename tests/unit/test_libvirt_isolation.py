"""A hung libvirt never silences the agent: an Agent over the memory bus, on a fake hypervisor whose
chosen calls block on an Event until the test (or its teardown) releases them.

Each test names the scenario of issue 10 it covers: more stuck calls than workers, a stuck bulk
statistics call under method calls, a stuck look-up of a name anyone can send, an object that is
busy, a call past its timeout, and samples and events behind a stuck call.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from virtq.agent import Agent
from virtq.agent.apartments import Apartments, Ticket
from virtq.agent.health import CallTracker
from virtq.agent.hypervisor import DomainIdentity, HypervisorEvent
from virtq.agent.policy import Policy
from virtq.schema import default_schema, errors
from virtq.schema.codec import (AgentInfo, AgentLocateRequest, AgentLocateResponse, ExceptionResponse,
                                MethodRequest, MethodResponse, ObjectId, QueryRequest, QueryResponse)
from virtq.testing import PAUSED, RUNNING, CallGates, FakeHypervisor, wait_until
from virtq.testing import numbered_uuid as uuid
from virtq.transport import MemoryBus

from .qmf_client import Client
from .sampling import latest_state, make_sampler

SCHEMA = default_schema()
DOMAINS = 12


@pytest.fixture
def gates() -> Iterator[CallGates]:
    gates = CallGates()
    yield gates
    gates.open_all()


Setup = Callable[..., Tuple[Agent, FakeHypervisor, Client]]
"""Starts an agent over the bus on a fake hypervisor with the test's gates (Agent options as keywords); returns it,
its hypervisor and a client of it."""


@pytest.fixture
def setup(gates: CallGates, bus: MemoryBus, tmp_path: Path) -> Iterator[Setup]:
    made: List[Agent] = []

    def make(**kwargs: Any) -> Tuple[Agent, FakeHypervisor, Client]:
        hv = FakeHypervisor.with_running_domains(DOMAINS, gates=gates)
        options: Dict[str, Any] = dict(heartbeat=0.2, workers=2, interval=60, slow_interval=60, reconcile=600,
                                       policy=Policy.everyone(SCHEMA, "admin", "the tests"))
        options.update(kwargs)
        agent = Agent(SCHEMA, hv, bus.agent_transport(), state_dir=tmp_path / f"state{len(made)}", **options)
        agent.start()
        made.append(agent)
        return agent, hv, Client(bus.console_transport(), agent)

    yield make
    gates.open_all()
    for agent in made:
        agent.stop()


def still_serving(client: Client, free: int) -> float:
    """Locate, a full query, a query for one object and a method of a free domain all answered; the slowest."""
    slowest = 0.0
    locate, took = client.timed(AgentLocateRequest())
    assert isinstance(locate[0], AgentLocateResponse)
    slowest = max(slowest, took)
    every, took = client.timed(QueryRequest(what="OBJECT"))
    assert sum(len(r.items) for r in every if isinstance(r, QueryResponse)) == DOMAINS + 1
    slowest = max(slowest, took)
    one, took = client.timed(QueryRequest(what="OBJECT", object_id=ObjectId(f"Domain:{uuid(free)}")))
    assert isinstance(one[0], QueryResponse) and len(one[0].items) == 1
    slowest = max(slowest, took)
    started = time.monotonic()
    (info,) = client.answer(client.call(uuid(free), "getInfo"))
    assert isinstance(info, MethodResponse) and info.arguments["info"]["state"] in (RUNNING, PAUSED)
    return max(slowest, time.monotonic() - started)


def unresponsive(client: Client, at_least: int) -> AgentInfo:
    """The first heartbeat that reports at least ``at_least`` stuck calls."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = client.heartbeats.get(timeout=5)
        if info.attributes["stuck"] >= at_least:
            return info
    raise AssertionError("no heartbeat reported the stuck calls")


# --- more stuck calls than workers ----------------------------------------------------------------


def test_more_stuck_calls_than_workers_leave_the_agent_answering(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup(workers=2)
    stuck = range(8)  # 8 stuck destroys, 4 times the workers
    for i in stuck:
        gates.close("virDomainDestroy", uuid(i))
    calls = [client.call(uuid(i), "destroy") for i in stuck]
    wait_until(lambda: all(gates.entered[("virDomainDestroy", uuid(i))].is_set() for i in stuck))
    assert still_serving(client, free=10) < 1.0
    beat = unresponsive(client, 8)
    assert beat.attributes["libvirt"] == "unresponsive"
    assert beat.attributes["stuck_call"].endswith("virDomainDestroy")
    assert beat.attributes["stuck_age"] > agent.stuck_after
    gates.open_all()
    for cid in calls:
        (done,) = client.answer(cid)
        assert isinstance(done, MethodResponse)
    wait_until(lambda: agent.info().attributes["stuck"] == 0)
    health = {k: v for k, v in agent.info().attributes.items() if k.startswith(("libvirt", "stuck"))}
    assert health == {"libvirt": "ok", "libvirt_connected": True, "stuck": 0, "stuck_age": 0.0, "stuck_call": ""}


def test_a_hung_libvirtd_is_reported_by_the_probe_within_two_heartbeats(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup(heartbeat=0.2)
    client.heartbeats.get(timeout=5)
    while not client.heartbeats.empty():
        client.heartbeats.get()
    gates.close("probe")  # libvirtd stops answering: nothing but the probe asks it
    beats = 0
    while True:
        beats += 1
        info = client.heartbeats.get(timeout=5)
        if info.attributes["libvirt"] == "unresponsive":
            break
    assert beats <= 2 and info.attributes["stuck_call"].endswith("virConnectGetLibVersion")
    assert still_serving(client, free=1) < 1.0
    gates.open_all()
    wait_until(lambda: client.heartbeats.get(timeout=5).attributes["libvirt"] == "ok")


# --- a stuck bulk statistics call under suspend/resume ----------------------------------------------


def test_a_stuck_bulk_statistics_call_does_not_hold_calls_samples_or_events(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup(workers=2)
    agent.sampler.timeout = 0.2
    gate = gates.close("bulk")
    periodic = threading.Thread(target=agent.sampler.sample, args=("Domain",), daemon=True)
    periodic.start()  # the periodic pass, stuck in virConnectGetAllDomainStats
    assert gates.entered[("bulk", None)].wait(5)
    started = time.monotonic()
    for method in ("suspend", "resume"):  # 8 at once each (as many as the workers and sampler threads)
        for cid in [client.call(uuid(i), method) for i in range(8)]:
            (answer,) = client.answer(cid)
            assert isinstance(answer, MethodResponse), answer
    assert time.monotonic() - started < 3.0  # each after-call sample waited ≤ the sampler's deadline
    assert all(hv.state_of(uuid(i)) == RUNNING for i in range(8))
    # An event is handled (the pump re-reads and samples) while the bulk call is still stuck.
    handled = agent.pump.handled
    agent.pump.deliver(HypervisorEvent("Domain", uuid(3), "domainLifecycle", "suspended", "paused"))
    wait_until(lambda: agent.pump.handled > handled, timeout=3)
    assert still_serving(client, free=9) < 1.0
    assert not gate.is_set()
    gate.set()


# --- a stuck look-up of a name anyone can send ---------------------------------------------------------


def test_a_stuck_look_up_freezes_neither_queries_nor_calls(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup(workers=2, lookup_timeout=0.3)
    ghost = "99999999-9999-4999-8999-999999999999"
    gates.close("lookup", ghost)
    on_ghost = client.call(ghost, "getInfo")  # an unknown name: the method's look-up hangs
    assert gates.entered[("lookup", ghost)].wait(5)
    asked = client.send(QueryRequest(what="OBJECT", object_id=ObjectId(f"Domain:{ghost}")))
    assert still_serving(client, free=2) < 1.0  # full queries and other calls are not behind it
    (late,) = client.answer(asked)  # the query's look-up waited behind the stuck one, up to its deadline
    assert isinstance(late, ExceptionResponse) and late.error_code == errors.STATUS_BUSY, late
    assert f"Domain:{ghost}" in late.error_text and "getInfo" in late.error_text
    gates.open_all()
    (unknown,) = client.answer(on_ghost)
    assert isinstance(unknown, ExceptionResponse) and unknown.error_code == errors.STATUS_UNKNOWN_OBJECT


def test_a_registry_sync_holds_no_lock_while_libvirt_answers(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup()
    ghost = "88888888-8888-4888-8888-888888888888"
    gates.close("lookup", ghost)
    lookup = threading.Thread(target=agent.registry.sync_object, args=("Domain", ghost), daemon=True)
    lookup.start()
    assert gates.entered[("lookup", ghost)].wait(5)
    done = threading.Event()

    def sync_the_others() -> None:
        agent.registry.sync_all()
        agent.registry.sync_object("Domain", uuid(1))
        done.set()

    threading.Thread(target=sync_the_others, daemon=True).start()
    assert done.wait(2)  # other syncs apply meanwhile


# --- busy objects and timeouts --------------------------------------------------------------------------


def test_calls_beyond_an_objects_queue_are_refused_at_once_naming_the_stuck_call(setup: Setup,
                                                                                gates: CallGates) -> None:
    agent, hv, client = setup(object_queue=2)
    gates.close("virDomainDestroy", uuid(0))
    first = client.call(uuid(0), "destroy")
    assert gates.entered[("virDomainDestroy", uuid(0))].wait(5)
    queued = [client.call(uuid(0), "getInfo") for _ in range(2)]
    wait_until(lambda: agent.apartments.busy().get(f"Domain:{uuid(0)}") == 3)
    refused, took = client.timed(MethodRequest(object_id=ObjectId(f"Domain:{uuid(0)}"), method_name="suspend"))
    (busy,) = refused
    assert took < 0.5
    assert isinstance(busy, ExceptionResponse) and busy.error_code == errors.STATUS_BUSY
    assert isinstance(errors.remote_error(busy.error_code, busy.error_text), errors.ObjectBusyError)
    assert busy.error_text.startswith(f"object busy: Domain:{uuid(0)} has 1 libvirt call stuck, the oldest "
                                      "destroy for "), busy.error_text
    assert still_serving(client, free=1) < 1.0
    gates.open_all()
    for cid in [first, *queued]:
        (answer,) = client.answer(cid)
        assert isinstance(answer, MethodResponse)
    wait_until(lambda: not agent.apartments.busy())


def test_a_call_libvirt_does_not_answer_times_out_and_stays_stuck(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup(call_timeout=0.3, object_queue=1)
    gates.close("virDomainDestroy", uuid(0))
    stuck = client.call(uuid(0), "destroy")
    waiting = client.call(uuid(0), "getInfo")  # queued behind it: never started
    (timeout,) = client.answer(stuck)
    assert isinstance(timeout, ExceptionResponse) and timeout.error_code == 0x10000 + errors.VIR_ERR_OPERATION_TIMEOUT
    assert timeout.error_text == "Timed out during operation: libvirt did not answer virDomainDestroy within 0.3 s"
    assert isinstance(errors.remote_error(timeout.error_code, timeout.error_text), errors.LibvirtTimeoutError)
    (never,) = client.answer(waiting)
    assert isinstance(never, ExceptionResponse) and never.error_code == errors.STATUS_BUSY
    assert "was not started within 0.3 s" in never.error_text
    # It still holds its object (and counts as stuck) until libvirt returns.
    assert agent.apartments.busy() == {f"Domain:{uuid(0)}": 1}
    assert unresponsive(client, 1).attributes["stuck_call"] == f"Domain:{uuid(0)} virDomainDestroy"
    gates.open_all()
    wait_until(lambda: not agent.apartments.busy())
    (info,) = client.answer(client.call(uuid(0), "getInfo"))
    assert isinstance(info, MethodResponse) and info.arguments["info"]["state"] == 5  # what the late call did


def test_the_agent_wide_cap_refuses_calls_to_further_objects(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup(max_calls=3)
    for i in range(3):
        gates.close("virDomainDestroy", uuid(i))
        client.call(uuid(i), "destroy")
    wait_until(lambda: len(agent.apartments.busy()) == 3)
    (busy,) = client.request(MethodRequest(object_id=ObjectId(f"Domain:{uuid(5)}"), method_name="getInfo"))
    assert isinstance(busy, ExceptionResponse) and busy.error_code == errors.STATUS_BUSY
    assert busy.error_text.startswith("agent busy: 3 objects have libvirt calls in flight")
    assert isinstance(client.request(AgentLocateRequest())[0], AgentLocateResponse)


# --- events behind a stuck object ------------------------------------------------------------------------


def test_an_event_on_a_stuck_object_delays_the_others_by_the_read_wait_at_most(setup: Setup, gates: CallGates) -> None:
    agent, hv, client = setup()
    agent.pump.read_wait = 0.2
    gates.close("virDomainDestroy", uuid(0))
    client.call(uuid(0), "destroy")
    assert gates.entered[("virDomainDestroy", uuid(0))].wait(5)
    handled = agent.pump.handled
    started = time.monotonic()
    agent.pump.deliver(HypervisorEvent("Domain", uuid(0), "domainLifecycle", "stopped", "destroyed"))
    hv.domains[1] = DomainIdentity(uuid(1), "dom1", 77)
    agent.pump.deliver(HypervisorEvent("Domain", uuid(1), "domainLifecycle", "started", "booted"))
    wait_until(lambda: agent.pump.handled >= handled + 2, timeout=3)
    assert time.monotonic() - started < 1.5
    entry = agent.registry.get(f"Domain:{uuid(1)}")
    assert entry is not None and isinstance(entry.identity, DomainIdentity) and entry.identity.id == 77


# --- the parts on their own --------------------------------------------------------------------------------


def test_apartment_deadlines_and_health_with_a_fake_clock() -> None:
    tracker = CallTracker(clock=lambda: 100.0)
    with tracker.track("Domain:x virDomainDestroy"):
        tracker.clock = lambda: 142.0
        health = tracker.health(8.0)
        assert (health.stuck, health.stuck_age, health.stuck_call, health.libvirt) == (
            1, 42.0, "Domain:x virDomainDestroy", "unresponsive")
    assert tracker.health(8.0).attributes() == {"libvirt": "ok", "stuck": 0, "stuck_age": 0.0, "stuck_call": ""}
    apartments = Apartments(queue=0, max_threads=1)
    release = threading.Event()

    def stuck(ticket: Ticket) -> None:
        release.wait(5)

    ticket = apartments.submit("Domain:x", "destroy", stuck, timeout=5)
    wait_until(lambda: ticket.started is not None)
    with pytest.raises(errors.ObjectBusyError, match=r"object busy: Domain:x has 1 libvirt call stuck, the "
                                                     r"oldest destroy for \d"):
        apartments.submit("Domain:x", "getInfo", lambda t: None, timeout=5)
    release.set()
    assert ticket.wait(5)
    apartments.stop()


def test_a_sample_never_waits_for_a_stuck_pass_nor_is_overwritten_by_it() -> None:
    hv = FakeHypervisor.with_running_domains(2)
    gate = hv.gates.close("virDomainGetInfo", uuid(0))
    sampler, published = make_sampler(hv, timeout=5.0)  # the periodic pass may wait 5 s for domain 0
    try:
        periodic = threading.Thread(target=sampler.sample, args=("Domain",), daemon=True)
        periodic.start()  # reads domain 1 (running) at once, then waits for domain 0
        wait_until(lambda: hv.called("virDomainGetInfo").count(uuid(0)) == 1
                   and uuid(1) in hv.called("virDomainGetInfo"))
        hv.info[uuid(1)][0] = PAUSED  # a call paused it; the sample after the call:
        started = time.monotonic()
        sampler.sample("Domain", [uuid(1)])
        assert time.monotonic() - started < 1.0  # not behind the stuck pass
        assert latest_state(sampler, uuid(1)) == PAUSED
        gate.set()
        periodic.join(5)
        # The pass that began before the call ended after it: its older value for domain 1 was not applied.
        assert latest_state(sampler, uuid(1)) == PAUSED
        assert [b.columns["state"] for b in published.batches if uuid(1) in b.keys][-1] == [PAUSED]
    finally:
        gate.set()
        sampler.stop()
