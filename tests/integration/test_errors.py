"""Errors over real AMQP: each is checked for its QMF code and its text, and after each the agent
still answers a query and a method with its registry unchanged.

Requests the console refuses to send (unknown methods, bad arguments) or cannot express
(malformed messages) are sent with the bare proton client in rawclient.py. The parametrized
refusals share one agent (module scope), so each case also shows that the cases before it
left the agent serving.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Callable, Dict, Iterator, Optional, Set, Tuple

import libvirt
import pytest
from proton import Delivery
from proton import Message as ProtonMessage
from proton.utils import SendException
from pytest_mock import MockerFixture

from virtq.agent import Agent
from virtq.agent.agent import MAX_REQUEST_BYTES
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console
from virtq.console.objects import RemoteObject
from virtq.schema import default_schema
from virtq.schema.codec import (OPCODE, TOPIC, AgentHeartbeat, ExceptionResponse, Message, MethodResponse,
                                ObjectId, QueryRequest, QueryResponse, WireMessage)
from virtq.schema.errors import (STATUS_USER, InvalidParameterError, LibvirtError, NotConnectedError,
                                 UnknownMethodError, UnknownObjectError, UnknownRefError)
from virtq.testing import agent_url, free_port, wait_until
from virtq.transport import DirectListener

from ..helpers import DEFAULT_URI, NODE_URI
from .rawclient import RawClient

pytestmark = pytest.mark.integration

WEB1_UUID = "3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01"
WEB1 = f"Domain:{WEB1_UUID}"
RegistryState = Set[Tuple[str, str, Any]]


# --- fixtures and checks --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One node.xml agent for every refusal in this module: none of them may change it."""
    url = f"amqp://127.0.0.1:{free_port()}"
    agent = Agent(default_schema(), LibvirtHypervisor(NODE_URI), DirectListener(url), heartbeat=1.0,
                  state_dir=tmp_path_factory.mktemp("shared-agent"))
    agent.start()
    yield agent
    agent.kill()


@pytest.fixture(scope="module")
def baseline(shared_agent: Agent) -> RegistryState:
    return registry_state(shared_agent)


@pytest.fixture(scope="module")
def shared_raw(shared_agent: Agent) -> Iterator[RawClient]:
    with RawClient(shared_agent) as client:
        yield client


@pytest.fixture(scope="module")
def shared_console(shared_agent: Agent) -> Iterator[Console]:
    console = Console(agent_url(shared_agent), timeout=5.0)
    console.start()
    yield console
    console.close()


@pytest.fixture
def raw(node_agent: Agent) -> Iterator[RawClient]:
    with RawClient(node_agent) as client:
        yield client


def registry_state(agent: Agent) -> RegistryState:
    return {(e.class_name, e.key, e.identity) for e in agent.registry.entries()}


def assert_serving(raw: RawClient, agent: Agent, before: RegistryState) -> None:
    """The agent answers a query and a method, and its registry holds what it held before."""
    reply = raw.request(raw.wire(QueryRequest(what="OBJECT_ID")))
    assert isinstance(reply, QueryResponse)
    assert {o.object_name for o in reply.items} == {f"{c}:{k}" for c, k, _ in before}
    info = raw.request(raw.method_wire(WEB1, "getInfo"))
    assert isinstance(info, MethodResponse)
    assert info.arguments["info"]["state"] == libvirt.VIR_DOMAIN_RUNNING
    assert registry_state(agent) == before


def assert_exception(reply: Message, agent: Agent, cid: Optional[str], code: int, text: str) -> None:
    assert isinstance(reply, ExceptionResponse), reply
    assert (reply.error_code, reply.error_text) == (code, text)
    assert reply.correlation_id == cid
    assert reply.agent == agent.name


def libvirt_failure(uri: str, call: Callable[[libvirt.virConnect], object]) -> Tuple[int, str]:
    """What libvirt itself raises for ``call`` on a direct connection: (error number, message)."""
    conn = libvirt.open(uri)
    try:
        with pytest.raises(libvirt.libvirtError) as info:
            call(conn)
        return int(info.value.get_error_code()), str(info.value.get_error_message())
    finally:
        conn.close()


# --- unknown objects --------------------------------------------------------------------------

def test_unknown_object_through_the_console(console: Console, node_agent: Agent, mocker: MockerFixture) -> None:
    ghost_uuid = str(uuid.uuid4())
    ghost_id = ObjectId(f"Domain:{ghost_uuid}", node_agent.name, node_agent.epoch)
    ghost = RemoteObject(console, console.schema.cls("Domain"), ghost_id,
                         {"uuid": ghost_uuid, "name": "ghost", "id": -1})
    with pytest.raises(UnknownObjectError) as err:
        ghost.getInfo()
    assert (err.value.error_code, err.value.error_text) == (1, f"no such object: Domain:{ghost_uuid}")

    calls = mocker.spy(node_agent.dispatcher, "call")
    with pytest.raises(UnknownRefError, match=f"unknown object Domain:{ghost_uuid}"):
        console.call(ghost_id, "getInfo")  # an ObjectId the console does not know is never sent
    assert calls.call_count == 0
    assert console.domains.get("web1").getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    assert calls.call_count == 1


GHOST = "00000000-0000-4000-8000-00000000dead"  # fixed: parameter ids stay stable


@pytest.mark.parametrize("object_name", [
    f"Domain:{GHOST}", f"Pool:{GHOST}", "Volume:/var/lib/virtq-test/images/ghost.img", f"Node:{GHOST}",
    "Domain:", "Gadget:1", "",
])
def test_unknown_object_by_raw_request(shared_raw: RawClient, shared_agent: Agent, baseline: RegistryState,
                                       object_name: str) -> None:
    wire = shared_raw.method_wire(object_name, "getInfo")
    assert_exception(shared_raw.request(wire), shared_agent, wire.correlation_id, 1,
                     f"no such object: {object_name}")
    assert_serving(shared_raw, shared_agent, baseline)


@pytest.mark.parametrize("name", [f"Domain:{WEB1_UUID}\x00", "Domain:\x00", "Pool:x\ny", "Node:\x1b[31m", "\x7f"])
def test_an_object_name_with_a_control_character_is_an_invalid_parameter(
        shared_raw: RawClient, shared_agent: Agent, baseline: RegistryState, name: str) -> None:
    """No object has such a name (a NUL would cut the C string libvirt sees): code 4, not 7 (PROTOCOL.md 8.3)."""
    wire = shared_raw.method_wire(name, "getInfo")
    bad = next(c for c in name if ord(c) < 0x20 or ord(c) == 0x7f)
    assert_exception(shared_raw.request(wire), shared_agent, wire.correlation_id, 4,
                     f"invalid object name: it contains the control character {ord(bad):#04x}")
    assert_serving(shared_raw, shared_agent, baseline)


def test_object_of_another_agent_is_unknown(shared_raw: RawClient, shared_agent: Agent,
                                            baseline: RegistryState) -> None:
    wire = shared_raw.method_wire(WEB1, "getInfo", agent_name="libvirt.org:virtq:elsewhere")
    assert_exception(shared_raw.request(wire), shared_agent, wire.correlation_id, 1,
                     f"{WEB1} belongs to agent libvirt.org:virtq:elsewhere")
    assert_serving(shared_raw, shared_agent, baseline)


def test_a_key_libvirt_cannot_parse_gets_libvirts_error(shared_raw: RawClient, shared_agent: Agent,
                                                        baseline: RegistryState) -> None:
    code, message = libvirt_failure(NODE_URI, lambda conn: conn.lookupByUUIDString("not-a-uuid"))
    wire = shared_raw.method_wire("Domain:not-a-uuid", "getInfo")
    assert_exception(shared_raw.request(wire), shared_agent, wire.correlation_id, STATUS_USER + code, message)
    assert_serving(shared_raw, shared_agent, baseline)


def test_object_removed_behind_the_back_of_an_agent_without_events(
        connect: Callable[..., Console], start_agent: Callable[..., Agent]) -> None:
    """Without events: libvirt's no-such-domain comes back as libvirt's error, the console drops the object,
    then it is unknown."""
    console = connect(start_agent(DEFAULT_URI, events=False))
    name, dom_uuid = f"virtq-gone-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    node = next(iter(console.nodes))
    dom = node.domainDefineXML(xml=f"<domain type='test'><name>{name}</name><uuid>{dom_uuid}</uuid>"
                                   "<memory>65536</memory><os><type>hvm</type></os></domain>")
    truth = libvirt.open(DEFAULT_URI)  # shares the agent's test:///default
    try:
        truth.lookupByUUIDString(dom_uuid).undefine()
        with pytest.raises(libvirt.libvirtError) as expected:
            truth.lookupByUUIDString(dom_uuid)
    finally:
        truth.close()
    assert expected.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN

    with pytest.raises(LibvirtError) as err:
        dom.getInfo()
    assert err.value.error_code == STATUS_USER + libvirt.VIR_ERR_NO_DOMAIN
    assert err.value.libvirt_code == libvirt.VIR_ERR_NO_DOMAIN
    assert err.value.error_text == expected.value.get_error_message()
    with pytest.raises(UnknownRefError):
        console.domains.get(dom_uuid)  # the failed call re-read the object and pushed its removal

    with pytest.raises(UnknownObjectError) as again:
        dom.getInfo()
    assert again.value.error_text == f"no such object: Domain:{dom_uuid}"
    assert console.domains.get("test").getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING


def test_object_removed_behind_the_agents_back_is_pushed_by_its_event(
        connect: Callable[..., Console], default_agent: Agent) -> None:
    """With events (the default): libvirt's UNDEFINED event makes the agent push the removal at once."""
    console = connect(default_agent)
    name, dom_uuid = f"virtq-gone-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    node = next(iter(console.nodes))
    dom = node.domainDefineXML(xml=f"<domain type='test'><name>{name}</name><uuid>{dom_uuid}</uuid>"
                                   "<memory>65536</memory><os><type>hvm</type></os></domain>")
    truth = libvirt.open(DEFAULT_URI)  # shares the agent's test:///default
    try:
        truth.lookupByUUIDString(dom_uuid).undefine()
    finally:
        truth.close()
    assert console.wait_for(lambda: dom_uuid not in {d.uuid for d in console.domains}, timeout=5)
    with pytest.raises(UnknownObjectError) as gone:
        dom.getInfo()
    assert gone.value.error_text == f"no such object: Domain:{dom_uuid}"


# --- unknown methods --------------------------------------------------------------------------

def test_unknown_method_is_refused_by_the_console(console: Console, node_agent: Agent,
                                                  mocker: MockerFixture) -> None:
    calls = mocker.spy(node_agent.dispatcher, "call")
    web1 = console.repository("domain").get("web1")  # untyped: mypy would refuse web1.frobnicate()
    with pytest.raises(UnknownMethodError) as err:
        console.call(web1, "frobnicate")
    assert (err.value.error_code, err.value.error_text) == (2, "Domain has no method 'frobnicate'")
    with pytest.raises(AttributeError, match="Domain has no property, statistic or method 'frobnicate'"):
        web1.frobnicate()
    assert calls.call_count == 0
    assert web1.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    assert calls.call_count == 1


@pytest.mark.parametrize("target, method, text", [
    (WEB1, "frobnicate", "Domain has no method 'frobnicate'"),
    (WEB1, "storageVolCreateXML", "Domain has no method 'storageVolCreateXML'"),  # another class's method
    (WEB1, "XMLDesc", "Domain has no method 'XMLDesc'"),  # libvirt-python's name is not the schema's
    (WEB1, "", "Domain has no method ''"),
    ("node", "suspend", "Node has no method 'suspend'"),
    ("Volume:/var/lib/virtq-test/images/web1.img", "create", "Volume has no method 'create'"),
])
def test_unknown_method_by_raw_request(shared_raw: RawClient, shared_agent: Agent, baseline: RegistryState,
                                       target: str, method: str, text: str) -> None:
    wire = shared_raw.method_wire(shared_agent.registry.node_name if target == "node" else target, method)
    assert_exception(shared_raw.request(wire), shared_agent, wire.correlation_id, 2, text)
    assert_serving(shared_raw, shared_agent, baseline)


# --- invalid parameters -----------------------------------------------------------------------

BAD_ARGUMENTS = [
    ("domain", "reboot", {"flags": "0"}, "reboot: argument flags: expected uint32, got str"),
    ("domain", "reboot", {"flags": -1}, "reboot: argument flags: -1 is out of range for uint32"),
    ("domain", "reboot", {"flags": 2 ** 32}, "reboot: argument flags: 4294967296 is out of range for uint32"),
    ("domain", "reboot", {"flags": True}, "reboot: argument flags: expected uint32, got bool"),
    ("domain", "reboot", {"flags": 0.0}, "reboot: argument flags: expected uint32, got float"),
    ("domain", "suspend", {"force": 1}, "suspend: unknown argument(s) force"),
    ("node", "domainDefineXML", {}, "domainDefineXML: missing argument xml (lstr)"),
    ("node", "domainDefineXML", {"xml": 5}, "domainDefineXML: argument xml: expected lstr, got int"),
    ("node", "domainCreateXML", {"xml": "<domain/>"}, "domainCreateXML: unknown argument(s) xml"),
    ("node", "storagePoolCreateXML", {"xmlDesc": None},
     "storagePoolCreateXML: argument xmlDesc: expected lstr, got NoneType"),
]


def _target(console: Console, kind: str) -> RemoteObject:
    return console.repository(kind).get("web1") if kind == "domain" else next(iter(console.repository(kind)))


@pytest.mark.parametrize("kind, method, arguments, text", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_by_the_console_before_sending(shared_console: Console, shared_agent: Agent,
                                                                 mocker: MockerFixture, kind: str, method: str,
                                                                 arguments: Dict[str, Any], text: str) -> None:
    calls = mocker.spy(shared_agent.dispatcher, "call")
    target = _target(shared_console, kind)
    with pytest.raises(InvalidParameterError) as err:
        getattr(target, method)(**arguments)
    assert (err.value.error_code, err.value.error_text) == (4, text)
    with pytest.raises(InvalidParameterError):
        shared_console.call(target, method, arguments)
    assert calls.call_count == 0


def test_too_many_positional_arguments_are_refused_by_the_console(console: Console) -> None:
    web1 = console.repository("domain").get("web1")  # untyped: mypy would refuse these calls
    with pytest.raises(InvalidParameterError) as err:
        web1.suspend(0)
    assert (err.value.error_code, err.value.error_text) == (4, "suspend takes 0 argument(s)")
    with pytest.raises(InvalidParameterError) as err:
        web1.getXMLDesc(0, 1)
    assert err.value.error_text == "getXMLDesc takes 1 argument(s)"
    assert "<name>web1</name>" in web1.getXMLDesc(0)


@pytest.mark.parametrize("kind, method, arguments, text", BAD_ARGUMENTS + [
    ("domain", "reboot", {1: 2, "a": 3}, "reboot: unknown argument(s) 1, a"),  # keys need not be strings
])
def test_bad_arguments_are_refused_by_the_agent(shared_raw: RawClient, shared_agent: Agent, baseline: RegistryState,
                                                kind: str, method: str, arguments: Dict[Any, Any],
                                                text: str) -> None:
    target = WEB1 if kind == "domain" else shared_agent.registry.node_name
    wire = shared_raw.method_wire(target, method, arguments)
    assert_exception(shared_raw.request(wire), shared_agent, wire.correlation_id, 4, text)
    assert_serving(shared_raw, shared_agent, baseline)


# --- libvirt's own errors ---------------------------------------------------------------------

def _domain(name: str) -> Callable[[Console], RemoteObject]:
    return lambda console: console.repository("domain").get(name)


ANOTHER_WEB1 = ("<domain type='test'><name>web1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>"
                "<memory>65536</memory><os><type>hvm</type></os></domain>")
WEB1_IMG = "<volume><name>web1.img</name><capacity>1</capacity></volume>"

LIBVIRT_FAILURES = [
    ("resume a running domain", _domain("web1"), "resume", {}, lambda c: c.lookupByName("web1").resume()),
    ("create a running domain", _domain("web1"), "create", {}, lambda c: c.lookupByName("web1").create()),
    ("suspend a paused domain", _domain("db1"), "suspend", {}, lambda c: c.lookupByName("db1").suspend()),
    ("destroy an inactive domain", _domain("build"), "destroy", {}, lambda c: c.lookupByName("build").destroy()),
    ("reboot an inactive domain", _domain("build"), "reboot", {"flags": 0},
     lambda c: c.lookupByName("build").reboot(0)),
    ("shut down an inactive domain", _domain("build"), "shutdown", {},
     lambda c: c.lookupByName("build").shutdown()),
    ("define unparsable XML", lambda console: next(iter(console.nodes)), "domainDefineXML", {"xml": "<domain"},
     lambda c: c.defineXML("<domain")),
    ("define a duplicate name", lambda console: next(iter(console.nodes)), "domainDefineXML",
     {"xml": ANOTHER_WEB1}, lambda c: c.defineXML(ANOTHER_WEB1)),
    ("undefine an active pool", lambda console: console.pools.get("images"), "undefine", {},
     lambda c: c.storagePoolLookupByName("images").undefine()),
    ("start an active pool", lambda console: console.pools.get("images"), "create", {},
     lambda c: c.storagePoolLookupByName("images").create(0)),
    ("create an existing volume", lambda console: console.pools.get("images"), "storageVolCreateXML",
     {"xmlDesc": WEB1_IMG}, lambda c: c.storagePoolLookupByName("images").createXML(WEB1_IMG, 0)),
]


@pytest.mark.parametrize("what, target, method, arguments, direct", LIBVIRT_FAILURES,
                         ids=[case[0] for case in LIBVIRT_FAILURES])
def test_libvirt_errors_carry_libvirts_code_and_message(shared_console: Console, shared_raw: RawClient,
                                                        shared_agent: Agent, baseline: RegistryState, what: str,
                                                        target: Callable[[Console], RemoteObject], method: str,
                                                        arguments: Dict[str, Any],
                                                        direct: Callable[[libvirt.virConnect], object]) -> None:
    code, message = libvirt_failure(NODE_URI, direct)  # the same call on a fresh copy of node.xml
    states = {d.name: d.getInfo()["state"] for d in shared_console.domains}
    with pytest.raises(LibvirtError) as err:
        shared_console.call(target(shared_console), method, arguments)
    assert err.value.error_code == STATUS_USER + code
    assert err.value.libvirt_code == code
    assert err.value.error_text == message
    assert {d.name: d.getInfo()["state"] for d in shared_console.domains} == states
    assert_serving(shared_raw, shared_agent, baseline)


def test_operation_invalid_is_0x10000_plus_libvirts_number(shared_console: Console) -> None:
    with pytest.raises(LibvirtError) as err:
        shared_console.domains.get("build").destroy()
    assert err.value.error_code == 0x10000 + libvirt.VIR_ERR_OPERATION_INVALID
    assert str(err.value).startswith(f"[{0x10000 + libvirt.VIR_ERR_OPERATION_INVALID:#x}] ")


# --- malformed messages -----------------------------------------------------------------------

def _method_parts(raw: RawClient) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Body and application properties of a well-formed request: web1.getInfo()."""
    wire = raw.method_wire(WEB1, "getInfo")
    return dict(wire.body), dict(wire.properties)


def _query_parts(raw: RawClient) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Body and application properties of a well-formed query for every object."""
    wire = raw.wire(QueryRequest(what="OBJECT"))
    return dict(wire.body), dict(wire.properties)


def _without(mapping: Dict[str, Any], key: str) -> Dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


Edit = Callable[[Dict[str, Any], Dict[str, Any]], Tuple[Any, Any]]
"""Turns a well-formed (body, properties) into the case's."""

MALFORMED: Dict[str, Tuple[str, Edit, int, str]] = {
    # case: (request it starts from, edit, error_code, error_text)
    "no qmf.opcode": ("method", lambda b, p: (b, _without(p, OPCODE)),
                      7, "malformed message: unknown or missing qmf.opcode None"),
    "no properties": ("method", lambda b, p: (b, None),
                      7, "malformed message: unknown or missing qmf.opcode None"),
    "unknown opcode": ("method", lambda b, p: (b, {**p, OPCODE: "_frobnicate_request"}),
                       7, "malformed message: unknown or missing qmf.opcode '_frobnicate_request'"),
    "opcode not a string": ("method", lambda b, p: (b, {**p, OPCODE: 5}),
                            7, "malformed message: unknown or missing qmf.opcode 5"),
    "method body is a list": ("method", lambda b, p: ([b], p),
                              7, "malformed message: method request: expected a map"),
    "method body is a string": ("method", lambda b, p: ("getInfo", p),
                                7, "malformed message: method request: expected a map"),
    "method body is empty": ("method", lambda b, p: (None, p),
                             7, "malformed message: method request: expected a map"),
    "no _object_id": ("method", lambda b, p: (_without(b, "_object_id"), p),
                      7, "malformed message: _object_id: expected a map"),
    "_object_id is a string": ("method", lambda b, p: ({**b, "_object_id": WEB1}, p),
                               7, "malformed message: _object_id: expected a map"),
    "_object_id without _object_name": ("method", lambda b, p: ({**b, "_object_id": {"_agent_epoch": 1}}, p),
                                        7, "malformed message: _object_id: _object_name missing or not str"),
    "no _method_name": ("method", lambda b, p: (_without(b, "_method_name"), p),
                        7, "malformed message: method request: _method_name missing or not str"),
    "_arguments is a list": ("method", lambda b, p: ({**b, "_arguments": [0]}, p),
                             7, "malformed message: method request: _arguments must be a map"),
    "query without _what": ("query", lambda b, p: (_without(b, "_what"), p),
                            7, "malformed message: query: _what missing or not str"),
    "query of an unknown _what": ("query", lambda b, p: ({**b, "_what": "EVERYTHING"}, p),
                                  7, "malformed message: query: unknown _what 'EVERYTHING'"),
    "query _schema_id is a list": ("query", lambda b, p: ({**b, "_schema_id": []}, p),
                                   7, "malformed message: _schema_id: expected a map"),
    # well-formed, but not requests: opcodes the agent does not serve
    "a method response": ("method", lambda b, p: ({"_arguments": {}}, {**p, OPCODE: "_method_response"}),
                          3, "_method_response is not a request this agent serves"),
    "an exception": ("method", lambda b, p: ({"_values": {"error_code": 7, "error_text": "x"}},
                                             {**p, OPCODE: "_exception"}),
                     3, "_exception is not a request this agent serves"),
    "a query response": ("method", lambda b, p: ([], {**p, OPCODE: "_query_response"}),
                         3, "_query_response is not a request this agent serves"),
    "a data indication": ("method", lambda b, p: ([], {**p, OPCODE: "_data_indication"}),
                          3, "_data_indication is not a request this agent serves"),
}


def malformed(raw: RawClient, case: str) -> Tuple[Any, Any]:
    """(body, properties) of a MALFORMED case."""
    start, edit, _, _ = MALFORMED[case]
    return edit(*(_method_parts(raw) if start == "method" else _query_parts(raw)))


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_an_exception_reply(shared_raw: RawClient, shared_agent: Agent,
                                                   baseline: RegistryState, case: str) -> None:
    _, _, code, text = MALFORMED[case]
    cid = shared_raw.send(*malformed(shared_raw, case))
    assert_exception(shared_raw.reply_for(cid), shared_agent, cid, code, text)
    assert_serving(shared_raw, shared_agent, baseline)


def test_a_heartbeat_sent_to_the_agent_is_not_served(shared_raw: RawClient, shared_agent: Agent,
                                                     baseline: RegistryState) -> None:
    wire = shared_raw.wire(AgentHeartbeat(shared_agent.info()))
    wire = WireMessage(shared_raw.address, wire.properties, wire.body, "", wire.correlation_id, wire.reply_to)
    assert_exception(shared_raw.request(wire), shared_agent, wire.correlation_id, 3,
                     "_agent_heartbeat_indication is not a request this agent serves")
    assert_serving(shared_raw, shared_agent, baseline)


def test_all_malformed_requests_at_once(shared_raw: RawClient, shared_agent: Agent, baseline: RegistryState) -> None:
    """Sent back to back, so the agent's workers handle them concurrently; each still gets its answer."""
    sent = {}
    for case, (_, _, code, text) in MALFORMED.items():
        sent[shared_raw.send(*malformed(shared_raw, case))] = (code, text)
    for cid, (code, text) in sent.items():
        assert_exception(shared_raw.reply_for(cid), shared_agent, cid, code, text)
    assert_serving(shared_raw, shared_agent, baseline)


def _undecodable(raw: RawClient, *, reply_to: Optional[str], cid: str = "undecodable") -> bytes:
    """A method request whose body is valid AMQP with no Python value (a map keyed by a list)."""
    body, properties = _method_parts(raw)
    body["PLACEHOLDER"] = 1
    encoded = ProtonMessage(body=body, properties=properties, address=raw.address, reply_to=reply_to,
                            correlation_id=cid).encode()
    key = b"\xa1\x0bPLACEHOLDER"  # str8 "PLACEHOLDER" -> a list8 holding one str8, the same 13 bytes
    assert encoded.count(key) == 1
    return encoded.replace(key, b"\xc0\x0b\x01\xa1\x08AAAAAAAA")


def test_an_undecodable_message_with_reply_to_is_answered_and_the_agent_keeps_serving(
        shared_raw: RawClient, shared_agent: Agent, baseline: RegistryState) -> None:
    """Valid AMQP with no Python value (a map keyed by a list) must not stop the agent's AMQP thread, and,
    carrying a reply-to, gets its _exception 7 like any malformed message (PROTOCOL.md 8.3)."""
    shared_raw.send_bytes(_undecodable(shared_raw, reply_to=shared_raw.reply_to))
    reply = shared_raw.reply_for("undecodable")
    assert isinstance(reply, ExceptionResponse) and reply.error_code == 7, reply
    assert reply.error_text.startswith("malformed message")
    assert_serving(shared_raw, shared_agent, baseline)


def test_an_undecodable_message_without_reply_to_is_rejected(shared_raw: RawClient, shared_agent: Agent,
                                                             baseline: RegistryState) -> None:
    with pytest.raises(SendException) as err:
        shared_raw.send_bytes(_undecodable(shared_raw, reply_to=None))
    assert err.value.state == Delivery.REJECTED
    assert_serving(shared_raw, shared_agent, baseline)


# --- size limit -------------------------------------------------------------------------------

def _padded_domain(name: str, size: int) -> str:
    pad = "<!-- " + "x" * size + " -->"
    return (f"<domain type='test'>{pad}<name>{name}</name><uuid>{uuid.uuid4()}</uuid>"
            "<memory>65536</memory><os><type>hvm</type></os></domain>")


def test_a_request_over_the_size_limit_is_refused(raw: RawClient, node_agent: Agent) -> None:
    before = registry_state(node_agent)
    wire = raw.method_wire(node_agent.registry.node_name, "domainDefineXML",
                           {"xml": _padded_domain("huge", MAX_REQUEST_BYTES + 1024)})
    reply = raw.request(wire)
    assert isinstance(reply, ExceptionResponse)
    assert reply.error_code == 4
    match = re.fullmatch(r"request of (\d+) bytes exceeds the limit of (\d+)", reply.error_text)
    assert match is not None, reply.error_text
    assert int(match.group(1)) > MAX_REQUEST_BYTES == int(match.group(2)) == 4 * 1024 * 1024
    assert reply.correlation_id == wire.correlation_id
    assert_serving(raw, node_agent, before)  # nothing was defined


def test_a_large_request_under_the_limit_is_served(raw: RawClient, node_agent: Agent) -> None:
    wire = raw.method_wire(node_agent.registry.node_name, "domainDefineXML",
                           {"xml": _padded_domain("large", 3 * 1024 * 1024)})
    reply = raw.request(wire)
    assert isinstance(reply, MethodResponse), reply
    defined = ObjectId.from_wire(reply.arguments["domain"])
    entry = node_agent.registry.get(defined.object_name)
    assert entry is not None and node_agent.registry.record(entry).values["name"] == "large"


# --- without reply-to: dropped ---------------------------------------------------------------------

def test_requests_without_reply_to_are_dropped(raw: RawClient, node_agent: Agent, mocker: MockerFixture) -> None:
    before = registry_state(node_agent)
    refused = mocker.spy(node_agent, "_refuse")
    answered = mocker.spy(node_agent, "_reply")
    sent = mocker.spy(node_agent.transport, "send")
    refusals = ["no qmf.opcode", "unknown opcode", "method body is a list", "no _object_id"]
    for case in refusals:
        raw.send(*malformed(raw, case), reply_to=None)
    huge = raw.method_wire(node_agent.registry.node_name, "domainDefineXML",
                           {"xml": _padded_domain("huge", MAX_REQUEST_BYTES)}, with_reply=False)
    raw.send_wire(huge)
    raw.send(*malformed(raw, "a method response"), reply_to=None)  # not served: answer 3, dropped
    raw.send_wire(raw.method_wire(f"Domain:{uuid.uuid4()}", "getInfo", with_reply=False))  # answer 1, dropped

    wait_until(lambda: refused.call_count == len(refusals) + 1 and answered.call_count == 2)
    assert all(call.args[0].reply_to is None for call in refused.call_args_list)
    assert [call.args[0].address for call in sent.call_args_list if call.args[0].address != TOPIC] == []
    assert raw.receive(timeout=0.2) is None
    assert_serving(raw, node_agent, before)


# --- the agent going away ------------------------------------------------------------------------

def test_console_calls_fail_at_once_when_the_agent_stops(console: Console, node_agent: Agent) -> None:
    """A stopping agent closes its consoles' connections: calls fail now instead of timing out."""
    web1 = console.domains.get("web1")
    assert web1.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    node_agent.stop()
    with pytest.raises(NotConnectedError):  # not CallTimeoutError after the console's 5 s
        web1.getInfo()
