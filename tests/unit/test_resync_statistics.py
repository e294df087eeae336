"""A resync's query answer carries the agent's latest statistics, and they apply even though the record
itself is older than the sample the console holds (an object whose state alone changed while the console
could not hear the agent: its record did not move). A sample that came in after the query went out may
be newer than the answer, and stays. (Found by tests/broker/test_broker_faults.py: after a broker
restart, a console that reconnected after the agents kept the states from before the outage.)"""

from __future__ import annotations

import time

from virtq.console import Console
from virtq.console.repository import AgentView
from virtq.schema import default_schema
from virtq.schema.codec import DataRecord, ObjectId, StatsBatch

SCHEMA = default_schema()
AGENT = "libvirt.org:virtq:hv01"
UUID = "3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01"
DOM = ObjectId(f"Domain:{UUID}", AGENT, 1)
RUNNING, PAUSED = 1, 3


def _console() -> Console:
    console = Console()
    console.agents._put(AGENT, AgentView(AGENT, 1, 1))
    return console


def _record(update_ts: int, **values: int) -> DataRecord:
    return DataRecord(DOM, SCHEMA.cls("Domain").schema_id,
                      {"uuid": UUID, "name": "web1", "id": 1, "configGen": 1, **values}, update_ts, 100)


def _stats(sample_ts: int, **columns: int) -> StatsBatch:
    return StatsBatch(SCHEMA.cls("Domain").schema_id, 1, sample_ts, (UUID,), {k: [v] for k, v in columns.items()})


def test_a_query_answer_brings_the_latest_statistics_of_an_old_record() -> None:
    console = _console()
    updater = console._updater
    updater.apply_records([_record(100, state=RUNNING)])
    updater.apply_stats(AGENT, [_stats(500, state=RUNNING, cpuTime=7)])
    # the broker goes away; web1 is suspended (sampled at 600: lost); the console re-queries
    sent = time.monotonic()
    updater.apply_records([_record(100, state=PAUSED, cpuTime=8)], answered_after=sent)
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats == {"state": PAUSED, "cpuTime": 8}
    # pushed, the same record would not have brought them (older than the sample held)
    updater.apply_records([_record(100, state=RUNNING, cpuTime=7)])
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats["state"] == PAUSED


def test_a_sample_received_after_the_query_went_out_is_kept() -> None:
    console = _console()
    updater = console._updater
    updater.apply_records([_record(100, state=RUNNING)])
    sent = time.monotonic()
    updater.apply_stats(AGENT, [_stats(700, state=PAUSED)])  # overtook the answer
    updater.apply_records([_record(100, state=RUNNING)], answered_after=sent)
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats["state"] == PAUSED
