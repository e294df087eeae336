"""Stopping never waits out a deadline: a call that returns after its deadline, while the agent stops, samples
the object it changed; the stop cancels that sample's queued libvirt calls, and the sample must end at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from virtq.agent.registry import Registry
from virtq.agent.sampler import Sampler
from virtq.schema import default_schema
from virtq.testing import FakeHypervisor
from virtq.testing import numbered_uuid as uuid

from .sampling import AGENT, EPOCH, Published


def test_a_sample_whose_calls_the_stop_cancels_ends_at_once() -> None:
    hv = FakeHypervisor.with_running_domains(2)
    registry = Registry(default_schema(), hv, AGENT, EPOCH)
    registry.sync_all()
    sampler = Sampler(registry, hv, Published(), interval=60, timeout=10.0, workers=1)
    gate = hv.gates.close("virDomainGetInfo", uuid(0))
    sample = threading.Thread(target=sampler.sample, args=("Domain", [uuid(0), uuid(1)]), daemon=True)
    try:
        sample.start()  # domain 0 holds the one worker; domain 1's call waits in the queue
        assert hv.gates.entered[("virDomainGetInfo", uuid(0))].wait(5)
        sampler.stop()  # cancels domain 1's call
        gate.set()
        started = time.monotonic()
        sample.join(5)
        assert not sample.is_alive() and time.monotonic() - started < 1.0  # not the 10 s deadline
    finally:
        gate.set()
        sampler.stop()


def test_an_agent_stops_promptly_after_a_call_past_its_deadline(tmp_path: Path) -> None:
    from virtq.agent import Agent
    from virtq.agent.policy import Policy
    from virtq.schema.codec import ExceptionResponse
    from virtq.testing import CallGates
    from virtq.transport import MemoryBus

    from .qmf_client import Client

    schema = default_schema()
    for run in range(5):  # (the stop used to race the late call's sample: about 1 run in 15 took 5 s)
        gates = CallGates()
        bus = MemoryBus()
        agent = Agent(schema, FakeHypervisor.with_running_domains(3, gates=gates), bus.agent_transport(),
                      state_dir=tmp_path / str(run), heartbeat=0.2, workers=2, interval=60, slow_interval=60,
                      reconcile=600, policy=Policy.everyone(schema, "admin", "the tests"), call_timeout=0.2)
        agent.start()
        gates.close("virDomainDestroy", uuid(0))
        client = Client(bus.console_transport(), agent)
        (late,) = client.answer(client.call(uuid(0), "destroy"))
        assert isinstance(late, ExceptionResponse)
        gates.open_all()
        started = time.monotonic()
        agent.stop()
        assert time.monotonic() - started < 2.0
