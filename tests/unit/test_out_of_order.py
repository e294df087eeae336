"""Messages of one agent that arrive out of order (found by virtq-fleet through RabbitMQ): a record made
before a newer statistics sample must not bring the older statistics back; and the RabbitMQ profile
sends everything over one link, so one agent's messages stay in order.

A resync's query answer, on the other hand, carries the agent's latest statistics, and they apply even
though the record itself is older than the sample the console holds (an object whose state alone changed
while the console could not hear the agent: its record did not move). A sample that came in after the
query went out may be newer than the answer, and stays. (Found by tests/broker/test_broker_faults.py:
after a broker restart, a console that reconnected after the agents kept the states from before the
outage.)"""

from __future__ import annotations

import time
from typing import Sequence

from virtq.console import Console
from virtq.console.repository import AgentView
from virtq.schema import default_schema
from virtq.schema.codec import DIRECT, TOPIC, DataRecord, ObjectId, StatsBatch, WireMessage
from virtq.transport import QmfProfile, RabbitMQProfile

SCHEMA = default_schema()
AGENT = "libvirt.org:virtq:fleet-00001"
UUID = "0b5d2bb8-1b61-4c3e-8a2e-7d3f3d6f0a01"
DOM = ObjectId(f"Domain:{UUID}", AGENT, 5)
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


def _console() -> Console:
    console = Console()
    console.agents.put(AGENT, AgentView(AGENT, 5, 1))
    return console


def _record(update_ts: int, **values: int) -> DataRecord:
    return DataRecord(DOM, SCHEMA.cls("Domain").schema_id,
                      {"uuid": UUID, "name": "vm0001", "id": -1, "configGen": 2, **values}, update_ts, 100)


def _stats(sample_ts: int, **columns: int) -> StatsBatch:
    return StatsBatch(SCHEMA.cls("Domain").schema_id, 5, sample_ts, (UUID,), {k: [v] for k, v in columns.items()})


def test_a_record_older_than_the_sample_held_keeps_the_newer_statistics() -> None:
    console = _console()
    updater = console.updater
    updater.apply_records([_record(100, state=RUNNING, cpuTime=7)])
    # destroyed: the agent pushes the record (made at 200, with the statistics it had: running) and then
    # samples (300: shut off); through a broker the sample can arrive first
    updater.apply_stats(AGENT, [_stats(300, state=SHUTOFF, cpuTime=0)])
    updater.apply_records([_record(200, state=RUNNING, cpuTime=7)])
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats == {"state": SHUTOFF, "cpuTime": 0} and obj.id == -1
    # a record newer than the sample held still brings its statistics
    updater.apply_records([_record(400, state=RUNNING, cpuTime=9)])
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats["state"] == RUNNING and obj.stats["cpuTime"] == 9


def test_a_query_answer_brings_the_latest_statistics_of_an_old_record() -> None:
    console = _console()
    updater = console.updater
    updater.apply_records([_record(100, state=RUNNING)])
    updater.apply_stats(AGENT, [_stats(500, state=RUNNING, cpuTime=7)])
    # the broker goes away; the domain is suspended (sampled at 600: lost); the console re-queries
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
    updater = console.updater
    updater.apply_records([_record(100, state=RUNNING)])
    sent = time.monotonic()
    updater.apply_stats(AGENT, [_stats(700, state=PAUSED)])  # overtook the answer
    updater.apply_records([_record(100, state=RUNNING)], answered_after=sent)
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats["state"] == PAUSED


def test_rabbitmq_sends_everything_over_one_link() -> None:
    """Indications, the locate broadcast, requests and replies: one link to amq.topic, the routing key in
    the subject (a request or reply on a link of its own could overtake what the agent pushed before it)."""
    profile = RabbitMQProfile()
    reply_to = profile.reply_source("c0ffee", "ops")
    assert reply_to == "/topic/qmf.reply.ops.c0ffee"
    logical = [WireMessage(TOPIC, {}, {}, "agent.ind.data.org_libvirt.Domain.libvirt_org.virtq"),
               WireMessage(TOPIC, {}, {}, "agent.ind.stats.org_libvirt.Domain.libvirt_org.virtq"),
               WireMessage(TOPIC, {}, {}, "agent.ind.event.org_libvirt.domainLifecycle.libvirt_org.virtq"),
               WireMessage(TOPIC, {}, {}, "console.request.agent_locate"),
               WireMessage(f"{DIRECT}/{AGENT}", {}, {}, "", "c1", reply_to),
               WireMessage(reply_to, {}, [1, 2], "", "c1")]
    sent = [profile.outgoing(wire) for wire in logical]
    assert {wire.address for wire in sent} == {"/exchange/amq.topic"}
    assert [wire.subject for wire in sent] == [wire.subject for wire in logical[:4]] + [
        f"qmf.direct.{AGENT}", "qmf.reply.ops.c0ffee"]
    assert sent[4].reply_to == reply_to and sent[5].body == {"_virtq_list": [1, 2]}
    # and back: what each receiver makes of it (by its routing key, whatever the sender put in ``to``)
    assert [profile.incoming(wire) for wire in sent] == logical
    assert profile.logical("/exchange/amq.topic") == TOPIC


# --- the rabbitmq profile's addresses: what topic permissions can confine -----------------------------

def test_rabbitmq_agents_and_consoles_bind_only_their_own_keys() -> None:
    profile = RabbitMQProfile()
    assert profile.agent_sources(AGENT) == [f"/topic/qmf.direct.{AGENT}", "/topic/console.request.agent_locate"]
    assert profile.console_sources() == ["/topic/agent.ind.#"]
    assert profile.reply_source("42", None) == "/topic/qmf.reply.anonymous.42"  # no user in the URL
    assert profile.logical(f"/topic/qmf.direct.{AGENT}") == f"{DIRECT}/{AGENT}"
    assert profile.logical("/topic/agent.ind.#") == TOPIC


def test_rabbitmq_replies_go_only_under_qmf_reply() -> None:
    """A request's reply-to may say anything; the agent publishes the reply under ``qmf.reply.`` whatever
    it says: a key its topic permissions refuse would end its session (any console could make every
    agent reconnect), and a key like ``agent.ind.…`` would pass its reply off as a push."""
    profile = RabbitMQProfile()
    for reply_to in ["/topic/agent.ind.heartbeat.libvirt_org.virtq", "/topic/console.request.agent_locate",
                     f"/topic/qmf.direct.{AGENT}", "/exchange/amq.direct/virtq-reply-1", "qmf.reply.ops.1",
                     "/topic/qmf.reply.", ""]:
        sent = profile.outgoing(WireMessage(reply_to, {}, {}, "", "c1"))
        assert (sent.address, sent.subject) == ("/exchange/amq.topic", "qmf.reply."), reply_to


def test_the_qmf_profile_is_unchanged() -> None:
    profile = QmfProfile()
    assert profile.reply_source("42", "ops") is None  # a dynamic receiver
    request = WireMessage(f"{DIRECT}/{AGENT}", {}, [1, 2], "", "c1", "reply-1")
    assert profile.outgoing(request) == request
    indication = WireMessage(TOPIC, {}, {}, "agent.ind.heartbeat.libvirt_org.virtq")
    assert profile.outgoing(indication).address == "qmf.default.topic/agent.ind.heartbeat.libvirt_org.virtq"
    assert profile.incoming(WireMessage("qmf.default.topic/agent.ind.#", {}, {}, indication.subject)) == indication


def test_a_sample_that_comes_before_the_query_answer_is_applied_when_the_object_arrives() -> None:
    """Through RabbitMQ a query answer (the console's reply queue) can come after the agent's first sample
    (its topic queue); the agent pushes only what changes, so that sample must not be lost (CI found it:
    250 domains stayed without a state until their next change)."""
    console = _console()
    updater = console.updater
    updater.apply_stats(AGENT, [_stats(300, state=RUNNING, cpuTime=7)])
    updater.apply_stats(AGENT, [_stats(200, maxMem=1024, state=SHUTOFF)])  # an older one, later: loses
    assert console.domains.by_id(DOM) is None
    updater.apply_records([_record(250)], answered_after=0.0)  # the answer, made before any sample
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats == {"state": RUNNING, "cpuTime": 7, "maxMem": 1024}
    assert obj.stats_ts == 300
    updater.apply_stats(AGENT, [_stats(400, state=SHUTOFF)])  # later samples apply as usual
    obj = console.domains.by_id(DOM)
    assert obj is not None and obj.stats["state"] == SHUTOFF


def test_held_samples_of_another_epoch_or_a_removed_object_are_not_applied() -> None:
    console = _console()
    updater = console.updater
    stale = StatsBatch(SCHEMA.cls("Domain").schema_id, 4, 300, (UUID,), {"state": [RUNNING]})
    updater.apply_stats(AGENT, [stale])  # dropped: the agent is at epoch 5
    updater.apply_records([_record(100)])
    obj = console.domains.by_id(DOM)
    assert obj is not None and "state" not in obj.stats
    # removed, then a sample from before the removal arrives, then the object is defined again
    updater.apply_records([DataRecord(DOM, SCHEMA.cls("Domain").schema_id, {"uuid": UUID}, 500, 100, 500)])
    updater.apply_stats(AGENT, [_stats(450, state=RUNNING)])
    updater.apply_records([_record(600)])
    obj = console.domains.by_id(DOM)
    assert obj is not None and "state" not in obj.stats


def test_a_resync_frees_samples_held_for_objects_the_agent_did_not_answer() -> None:
    console = _console()
    updater = console.updater
    updater.apply_stats(AGENT, [_stats(300, state=RUNNING)])
    updater.remove_missing(AGENT, set(), before=1000)
    updater.apply_records([_record(1100)])
    obj = console.domains.by_id(DOM)
    assert obj is not None and "state" not in obj.stats


def test_a_resync_removes_what_the_agent_no_longer_has_whatever_the_agents_clock_says() -> None:
    """Agents stamp records with their own clock, on another machine; which objects a resync removes is
    decided by the console's clock alone (when the query went out, when each record was applied)."""
    console = _console()
    updater = console.updater
    ahead = time.time_ns() + 3600 * 10**9  # the agent's clock an hour ahead of ours
    updater.apply_records([_record(ahead)])
    query_sent = time.monotonic()
    updater.remove_missing(AGENT, set(), before=query_sent)  # the answer did not have it
    assert console.domains.by_id(DOM) is None
    # a record applied after the query went out is newer than the answer: kept
    updater.apply_records([_record(ahead + 1)])
    updater.remove_missing(AGENT, set(), before=query_sent)
    assert console.domains.by_id(DOM) is not None


def test_statistics_observers_see_each_message_after_it_is_applied() -> None:
    """The hook benchmarks time the lag from sample to repository with: called after the apply, with every
    batch of the message, including those the updater dropped (an old epoch) or held."""
    console = _console()
    updater = console.updater
    seen = []

    def observe(agent: str, batches: Sequence[StatsBatch]) -> None:
        obj = console.domains.by_id(DOM)
        seen.append((agent, [b.sample_ts for b in batches], obj.stats.get("cpuTime") if obj else None))

    updater.stats_observers.append(observe)
    updater.apply_records([_record(100, state=RUNNING, cpuTime=7)])
    updater.apply_stats(AGENT, iter([_stats(300, cpuTime=8), _stats(310, cpuTime=9)]))
    assert seen == [(AGENT, [300, 310], 9)]
