"""A real Agent (libvirt's test:///default) and a real Console over the in-memory bus.

The bus round-trips every message through proton's AMQP encoder, so what passes here is
what the wire accepts; a message the encoder refuses fails in ``send``.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Iterator, List, Tuple

import libvirt
import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console, LibvirtError, RemoteObject
from virtq.schema import default_schema
from virtq.schema.codec import (DIRECT, TOPIC, AgentLocateRequest, WireMessage, direct_address,
                                heartbeat_subject)
from virtq.schema.errors import NotConnectedError
from virtq.transport import MemoryBus, MemoryTransport

from ..helpers import DEFAULT_URI


@pytest.fixture
def agent(bus: MemoryBus, tmp_path: Path) -> Iterator[Agent]:
    agent = Agent(default_schema(), LibvirtHypervisor(DEFAULT_URI), bus.agent_transport(), heartbeat=60,
                  workers=2, state_dir=tmp_path / "state")
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def console(bus: MemoryBus, agent: Agent) -> Iterator[Console]:
    console = Console(transports=[bus.console_transport()], timeout=5)
    console.start()
    yield console
    console.close()


# --- agent and console over the bus --------------------------------------------------------------


def test_discovery_fills_the_repositories(console: Console, agent: Agent) -> None:
    assert [a.name for a in console.agents] == [agent.name]
    view = console.agents.get(agent.name)
    assert view.epoch == agent.epoch == 1  # a fresh state directory
    assert view.uri == DEFAULT_URI and view.hostname == agent.registry.node.hostname
    (node,) = console.nodes
    assert node.object_id.object_name == agent.registry.node_name and node.uri == DEFAULT_URI
    truth = libvirt.open(DEFAULT_URI)
    try:
        domains = {(d.UUIDString(), d.name(), d.ID()) for d in truth.listAllDomains()}
        pools = {(p.UUIDString(), p.name()) for p in truth.listAllStoragePools()}
    finally:
        truth.close()
    assert {(d.uuid, d.name, d.id) for d in console.domains} == domains
    assert {(p.uuid, p.name) for p in console.pools} == pools
    dom = console.domains.get("test")
    assert console.lookup(dom.node) == node  # parent references resolve


def test_method_calls(console: Console) -> None:
    dom = console.domains.get("test")
    assert dom.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    assert "<name>test</name>" in dom.getXMLDesc()
    dom.suspend()
    try:
        assert dom.getInfo()["state"] == libvirt.VIR_DOMAIN_PAUSED
    finally:
        dom.resume()
    assert dom.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    (node,) = console.nodes
    assert node.getHostname() == node.hostname
    assert node.getLibVersion() == libvirt.getVersion()


def test_libvirt_errors_arrive_typed(console: Console) -> None:
    truth = libvirt.open(DEFAULT_URI)
    try:
        with pytest.raises(libvirt.libvirtError) as direct:
            truth.lookupByName("test").create()  # already running
    finally:
        truth.close()
    dom = console.domains.get("test")
    with pytest.raises(LibvirtError) as info:
        dom.create()
    assert info.value.libvirt_code == direct.value.get_error_code()
    assert info.value.error_code == 0x10000 + direct.value.get_error_code()
    assert info.value.error_text == direct.value.get_error_message()


def test_created_objects_are_pushed_before_the_reply(console: Console) -> None:
    (node,) = console.nodes
    xml = "<domain type='test'><name>virtq-mem</name><memory>1024</memory><os><type>hvm</type></os></domain>"
    created = node.domainDefineXML(xml)
    assert isinstance(created, RemoteObject)  # the console already had it when the reply came
    try:
        assert created.name == "virtq-mem" and created.id == -1
        assert console.domains.get("virtq-mem") == created
    finally:
        created.undefine()
    assert console.wait_for(lambda: "virtq-mem" not in {d.name for d in console.domains}, timeout=5)


# --- the bus itself ---------------------------------------------------------------------------------


def collect(transport: MemoryTransport) -> "queue.Queue[WireMessage]":
    inbox: "queue.Queue[WireMessage]" = queue.Queue()
    transport.start(inbox.put)
    return inbox


def endpoints(bus: MemoryBus) -> Tuple[MemoryTransport, "queue.Queue[WireMessage]", MemoryTransport,
                                       "queue.Queue[WireMessage]"]:
    agent_side = bus.agent_transport()
    console_side = bus.console_transport()
    return agent_side, collect(agent_side), console_side, collect(console_side)


def test_message_the_encoder_rejects_fails_at_send(bus: MemoryBus) -> None:
    agent_side, agent_inbox, console_side, _ = endpoints(bus)
    bad = WireMessage(direct_address("a"), {"qmf.opcode": "_method_request"}, {"x": object()})
    with pytest.raises(Exception) as info:
        console_side.send(bad)
    assert not isinstance(info.value, NotConnectedError)
    good = WireMessage(direct_address("a"), {"qmf.opcode": "_method_request"}, {"x": [1, "two"]}, "", "c9")
    console_side.send(good)  # the bus is unharmed
    received = agent_inbox.get(timeout=5)
    assert received.correlation_id == "c9"  # the bad one never arrived
    assert agent_inbox.empty()


def test_messages_are_round_tripped(bus: MemoryBus) -> None:
    _, agent_inbox, console_side, _ = endpoints(bus)
    body = {"_arguments": {"flags": 0, "xml": "<d/>", "nested": {"list": [1, 2.5, True, None]}}}
    wire = WireMessage(direct_address("a"), {"qmf.opcode": "_method_request"}, body, "subj", "c1", "back")
    console_side.send(wire)
    received = agent_inbox.get(timeout=5)
    assert received == wire
    assert received.body is not body and received.size > 0  # decoded from encoded bytes


def test_routing(bus: MemoryBus) -> None:
    agent_side, agent_inbox, console_side, console_inbox = endpoints(bus)
    other = bus.console_transport()
    other_inbox = collect(other)
    narrow = bus.console_transport(subscribe_to=f"{TOPIC}/agent.ind.data.#")
    narrow_inbox = collect(narrow)
    # console -> agents: direct and topic addresses
    console_side.send(AgentLocateRequest().encode())
    console_side.send(WireMessage(DIRECT, {}, {}, "libvirt.org:virtq:x"))
    assert agent_inbox.get(timeout=5).address == TOPIC
    assert agent_inbox.get(timeout=5).address == DIRECT
    # agent -> consoles: a reply reaches only its console; indications reach matching subscriptions
    agent_side.send(WireMessage(console_side.reply_address, {}, "reply"))
    agent_side.send(WireMessage(TOPIC, {}, "heartbeat", heartbeat_subject()))
    got: List[str] = [console_inbox.get(timeout=5).body, console_inbox.get(timeout=5).body]
    assert got == ["reply", "heartbeat"]
    assert other_inbox.get(timeout=5).body == "heartbeat"
    agent_side.send(WireMessage(TOPIC, {}, "data", "agent.ind.data.org_libvirt.Domain.libvirt_org.virtq"))
    assert narrow_inbox.get(timeout=5).body == "data"  # it never saw the heartbeat
    assert other_inbox.get(timeout=5).body == "data"
    assert console_inbox.get(timeout=5).body == "data"
    assert agent_inbox.empty() and narrow_inbox.empty() and other_inbox.empty()


def test_stopped_transport_neither_sends_nor_receives(bus: MemoryBus) -> None:
    agent_side, agent_inbox, console_side, console_inbox = endpoints(bus)
    witness_inbox = collect(bus.console_transport())
    assert console_side.connected
    console_side.stop()
    assert not console_side.connected
    with pytest.raises(NotConnectedError):
        console_side.send(WireMessage(direct_address("a"), {}, {}))
    agent_side.send(WireMessage(console_side.reply_address, {}, "lost"))
    agent_side.send(WireMessage(TOPIC, {}, "lost too", heartbeat_subject()))
    assert witness_inbox.get(timeout=5).body == "lost too"  # the bus has handled both by now
    assert console_inbox.empty() and agent_inbox.empty()


def test_consoles_reach_the_bus_while_an_agent_transport_runs(bus: MemoryBus) -> None:
    """As a direct connection to an agent's listener: no start without one, told False when the last one
    stops and True when one starts again (the transport contract checks the stop on every transport)."""
    with pytest.raises(NotConnectedError):
        bus.console_transport().start(lambda wire: None)
    first, second = bus.agent_transport(), bus.agent_transport()
    collect(first)
    collect(second)
    console_side = bus.console_transport()
    states: "queue.Queue[bool]" = queue.Queue()
    console_side.start(lambda wire: None, states.put)
    assert states.get(timeout=5) is True
    first.stop()
    console_side.send(WireMessage(direct_address("a"), {}, {}))  # the second one still listens
    second.stop()
    assert states.get(timeout=5) is False and not console_side.connected
    with pytest.raises(NotConnectedError):
        console_side.send(WireMessage(direct_address("a"), {}, {}))
    collect(bus.agent_transport())
    assert states.get(timeout=5) is True and console_side.connected
    assert states.empty()
