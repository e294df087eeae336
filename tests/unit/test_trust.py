"""A console believes an agent's messages only from the broker user its rule maps to that agent."""

from __future__ import annotations

import dataclasses

import pytest

from virtq.console import Console
from virtq.console.trust import AgentTrust, claimed_agents, parse_users
from virtq.schema.codec import (AgentHeartbeat, AgentInfo, DataIndication, DataRecord, EventIndication, EventRecord,
                                ObjectId, QueryRequest, QueryResponse, direct_address)
from virtq.schema.model import SchemaId
from virtq.testing import RecordingTransport


HV01 = "libvirt.org:virtq:hv01"
HV02 = "libvirt.org:virtq:hv02"
DOMAIN = SchemaId("org.libvirt", "Domain")


def record(agent: str) -> DataRecord:
    return DataRecord(ObjectId("Domain:1", agent, 1), DOMAIN, {"name": "web1"})


def test_instance_rule() -> None:
    trust = AgentTrust("instance")
    assert trust.allows("hv01", HV01)
    assert not trust.allows("hv02", HV01) and not trust.allows(None, HV01) and not trust.allows("", HV01)


def test_mapping_rule() -> None:
    trust = AgentTrust("agent-a=libvirt.org:virtq:hv0*, agent-b=libvirt.org:virtq:db1")
    assert trust.allows("agent-a", HV01) and trust.allows("agent-a", HV02)
    assert not trust.allows("agent-b", HV01) and not trust.allows("stranger", HV01)
    assert AgentTrust({"x": HV01}).allows("x", HV01)


def test_without_a_rule_everything_is_believed() -> None:
    assert AgentTrust(None).allows(None, HV01)
    assert not AgentTrust(None).enabled


def test_every_agent_a_message_names_is_checked() -> None:
    info = AgentInfo(HV01, 1, 1, 0, "hash")
    assert claimed_agents(AgentHeartbeat(info, agent=HV01)) == {HV01}
    # a rogue agent (hv02) pushing records of hv01's objects under its own name
    forged = DataIndication(records=(record(HV01),), agent=HV02)
    assert claimed_agents(forged) == {HV01, HV02}
    assert AgentTrust("instance").check("hv02", forged) == HV01
    assert AgentTrust("instance").check("hv01", DataIndication(records=(record(HV01),), agent=HV01)) is None
    event = EventRecord(SchemaId("org.libvirt", "domainLifecycle", type="_event"),
                        {"domain": ObjectId("Domain:1", HV01, 1).to_wire(), "event": "started"})
    assert claimed_agents(EventIndication(events=(event,), agent=HV02)) == {HV01, HV02}
    assert claimed_agents(QueryResponse(items=(record(HV02),), agent=HV02)) == {HV02}


def test_bad_mappings_are_refused() -> None:
    with pytest.raises(ValueError, match="not USER=AGENT-NAME-GLOB"):
        parse_users("hv01")


def test_an_answer_must_come_from_the_agent_asked() -> None:
    """Correlation ids are unguessable, and an answer in another agent's name is dropped even when its id
    is right (every agent behind a broker learns a console's reply address from its locate)."""
    console = Console(timeout=1)
    transport = RecordingTransport()
    first = console.requests.send(transport, QueryRequest(what="OBJECT"), direct_address(HV01))
    second = console.requests.send(transport, QueryRequest(what="OBJECT"), direct_address(HV01))
    assert first.cid != second.cid and len(first.cid) > 16  # not c1, c2 …

    forged = QueryResponse(items=(record(HV02),), correlation_id=first.cid, agent=HV02).encode("replies")
    console.ingest.apply("url", transport, forged)
    assert not first.done.is_set() and console.untrusted == 1
    honest = QueryResponse(items=(record(HV01),), correlation_id=first.cid, agent=HV01).encode("replies")
    console.ingest.apply("url", transport, honest)
    assert first.done.is_set() and first.replies[0].agent == HV01


def test_a_console_with_a_rule_drops_what_an_agent_says_of_another() -> None:
    console = Console(timeout=1, agent_users="instance")
    transport = RecordingTransport()
    forged = dataclasses.replace(DataIndication(records=(record(HV01),), agent=HV02).encode("x"), principal="hv02")
    console.ingest.apply("url", transport, forged)
    assert console.untrusted == 1 and len(console.domains) == 0
