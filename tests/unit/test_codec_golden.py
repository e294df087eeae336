"""Golden tests for the wire codec: every QMF message shape, byte for byte as JSON.

Each case builds one message from the codec classes with fixed values and checks that

* ``encode()`` gives exactly the WireMessage stored in ``golden/<case>.json``
  (address, subject, application properties, body, correlation id, reply-to);
* ``decode()`` of that golden gives back the original message;
* the message survives a real AMQP 1.0 encode/decode (``virtq.transport._convert.roundtrip``).

The goldens are the wire contract that docs/PROTOCOL.md shows; a change here is a protocol
change. After a deliberate change, regenerate them with::

    VIRTQ_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_codec_golden.py

and review the diff. The second half of this file checks that ``decode()`` refuses malformed
input with ProtocolError (and never with any other exception).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from virtq.schema.codec import (DIRECT, LOCATE_SUBJECT, TOPIC, AgentHeartbeat, AgentInfo,
                                AgentLocateRequest, AgentLocateResponse, DataIndication, DataRecord,
                                ExceptionResponse, Message, MethodRequest, MethodResponse, ObjectId,
                                QueryRequest, QueryResponse, WireMessage, data_subject, decode,
                                direct_address, event_subject, heartbeat_subject)
from virtq.schema.errors import ProtocolError
from virtq.schema.model import SchemaId
from virtq.transport._convert import roundtrip

GOLDEN_DIR = Path(__file__).parent / "golden"
REGEN = os.environ.get("VIRTQ_REGEN_GOLDEN") == "1"
PROTOCOL_MD = Path(__file__).parents[2] / "docs" / "PROTOCOL.md"

FIELDS = ("address", "subject", "properties", "body", "correlation_id", "reply_to")

# --- fixed values ---------------------------------------------------------------------------------

HOST_UUID = "5b1f8c3e-9a2d-4e67-b0c4-7d3e2f1a9c55"
AGENT = f"libvirt.org:virtq:{HOST_UUID}"
EPOCH = 3
REPLY = "reply-2f5d0c1e-8b3a-4c9f-a6e7-1d2b3c4d5e6f"  # a dynamic reply address the listener assigned

T_CREATE = 1_700_000_000_000_000_000  # nanoseconds since the epoch
T_UPDATE = 1_700_000_042_000_000_000
T_DELETE = 1_700_000_042_500_000_000
T_HEARTBEAT = 1_700_000_060_000_000_000

SCHEMA_HASH = "ee617fff-811b-c585-5588-a6e3d53eb3de"
NODE_ID = SchemaId("org.libvirt", "Node", "a8332a44-b520-759d-e196-9d390a3347f0")
DOMAIN_ID = SchemaId("org.libvirt", "Domain", "9f9d93bd-cd03-3a61-a619-e21dcbe7e2af")
POOL_ID = SchemaId("org.libvirt", "Pool", "62a01c94-3b3b-d510-c3b9-06830acea3e7")
VOLUME_ID = SchemaId("org.libvirt", "Volume", "32148f3f-dc6c-678f-4da9-1c7c134b914f")

NODE = ObjectId(f"Node:{HOST_UUID}", AGENT, EPOCH)
POOL = ObjectId("Pool:5e8f2a91-7c34-4d0b-9a6e-1f4b8c2d7e11", AGENT, EPOCH)
WEB1_UUID = "3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01"
WEB2_UUID = "7d2c9e54-1b6f-4a38-8e07-5c3a9f2b4d02"
NEW_UUID = "d0d5462f-518a-47ad-aaa4-61e17563145b"
WEB1 = ObjectId(f"Domain:{WEB1_UUID}", AGENT, EPOCH)
WEB2 = ObjectId(f"Domain:{WEB2_UUID}", AGENT, EPOCH)
NEW1 = ObjectId(f"Domain:{NEW_UUID}", AGENT, EPOCH)
VOL_KEY = "/var/lib/virtq-test/images/web1.img"
VOLUME = ObjectId(f"Volume:{VOL_KEY}", AGENT, EPOCH)

INFO = AgentInfo(AGENT, EPOCH, 10, T_HEARTBEAT, SCHEMA_HASH, instance=HOST_UUID,
                 attributes={"hostname": "virt1.example.org", "uri": "qemu:///system",
                             "node": NODE.object_name, "reconnects": 0})


def domain(object_id: ObjectId, uuid: str, name: str, dom_id: int, update_ts: int = T_CREATE,
           delete_ts: int = 0) -> DataRecord:
    values = {"uuid": uuid, "name": name, "id": dom_id, "node": NODE.to_wire()}
    return DataRecord(object_id, DOMAIN_ID, values, update_ts, T_CREATE, delete_ts)


VOLUME_RECORD = DataRecord(VOLUME, VOLUME_ID, {"key": VOL_KEY, "name": "web1.img", "path": VOL_KEY,
                                               "pool": POOL.to_wire()}, T_CREATE, T_CREATE)
NEW_XML = "<domain type='kvm'><name>new1</name><memory unit='MiB'>512</memory><os><type>hvm</type></os></domain>"


# name -> (message, encode()): the message as built, and how it is put on the wire.
Case = Tuple[Message, Callable[[Message], WireMessage]]


def _to(address: str, subject: str = "") -> Callable[[Message], WireMessage]:
    return lambda message: message.encode(address, subject)


def _default(message: Message) -> WireMessage:
    """The shape's own default address and subject."""
    assert isinstance(message, (AgentLocateRequest, AgentHeartbeat))
    return message.encode()


CASES: Dict[str, Case] = {
    "agent_locate_request": (
        AgentLocateRequest(correlation_id="c1", reply_to=REPLY), _default),
    "agent_locate_response": (
        AgentLocateResponse(INFO, correlation_id="c1", agent=AGENT), _to(REPLY)),
    "agent_heartbeat_indication": (
        AgentHeartbeat(INFO, agent=AGENT), _default),
    "query_request_object_by_class": (
        QueryRequest(what="OBJECT", schema_id=SchemaId("org.libvirt", "Domain"),
                     correlation_id="c2", reply_to=REPLY), _to(direct_address(AGENT))),
    "query_request_object_by_id": (
        QueryRequest(what="OBJECT", object_id=WEB1, correlation_id="c3", reply_to=REPLY),
        _to(direct_address(AGENT))),
    "query_request_schema_id": (
        QueryRequest(what="SCHEMA_ID", correlation_id="c4", reply_to=REPLY), _to(direct_address(AGENT))),
    "query_response_partial": (
        QueryResponse(content="_data", items=(domain(WEB1, WEB1_UUID, "web1", 1),
                                              domain(WEB2, WEB2_UUID, "web2", 2)),
                      partial=True, correlation_id="c2", agent=AGENT), _to(REPLY)),
    "query_response_final": (
        QueryResponse(content="_data", items=(VOLUME_RECORD,), partial=False, correlation_id="c2", agent=AGENT),
        _to(REPLY)),
    "query_response_empty": (
        QueryResponse(content="_data", items=(), correlation_id="c3", agent=AGENT), _to(REPLY)),
    "query_response_object_id": (
        QueryResponse(content="_object_id", items=(WEB1, WEB2), correlation_id="c5", agent=AGENT), _to(REPLY)),
    "query_response_schema_id": (
        QueryResponse(content="_schema_id",
                      items=tuple({"_package_name": s.package, "_class_name": s.class_name, "_type": s.type,
                                   "_hash": s.hash} for s in (NODE_ID, DOMAIN_ID, POOL_ID, VOLUME_ID)),
                      correlation_id="c4", agent=AGENT), _to(REPLY)),
    "method_request": (
        MethodRequest(object_id=NODE, method_name="domainDefineXML", arguments={"xml": NEW_XML},
                      correlation_id="c6", reply_to=REPLY), _to(direct_address(AGENT))),
    "method_response_objid": (
        MethodResponse(arguments={"domain": NEW1.to_wire()}, correlation_id="c6", agent=AGENT), _to(REPLY)),
    "method_response_map": (
        MethodResponse(arguments={"info": {"state": 1, "maxMem": 524288, "memory": 524288, "nrVirtCpu": 2,
                                           "cpuTime": 81234000000}},
                       correlation_id="c7", agent=AGENT), _to(REPLY)),
    "method_response_empty": (
        MethodResponse(arguments={}, correlation_id="c8", agent=AGENT), _to(REPLY)),
    "exception": (
        ExceptionResponse(error_code=0x10000 + 55,
                          error_text="Requested operation is not valid: domain is not running",
                          correlation_id="c9", agent=AGENT), _to(REPLY)),
    "data_indication_update": (
        DataIndication(records=(domain(NEW1, NEW_UUID, "new1", -1),), agent=AGENT),
        _to(TOPIC, data_subject("org.libvirt", "Domain"))),
    "data_indication_delete": (
        DataIndication(records=(domain(WEB2, WEB2_UUID, "web2", -1, T_DELETE, T_DELETE),), agent=AGENT),
        _to(TOPIC, data_subject("org.libvirt", "Domain"))),
}


# --- helpers ---------------------------------------------------------------------------------------

def wire_fields(wire: WireMessage) -> Dict[str, Any]:
    return {name: getattr(wire, name) for name in FIELDS}


def render(fields: Dict[str, Any]) -> str:
    """The golden file's text: the WireMessage fields as pretty JSON, in encode() order."""
    return json.dumps(fields, indent=2, ensure_ascii=False) + "\n"


def canonical(value: Any) -> str:
    """Order-insensitive for maps, strict on types (true is not 1, "1" is not 1)."""
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)


def assert_json_native(value: Any, where: str = "message") -> None:
    """Only what JSON (and the golden) can state exactly: no tuples, floats or other types."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where}: map key {key!r} is not a string"
            assert_json_native(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_json_native(item, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, bool), f"{where}: {type(value).__name__} {value!r}"


def load_golden(name: str) -> WireMessage:
    path = GOLDEN_DIR / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing; create it with VIRTQ_REGEN_GOLDEN=1")
    fields = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(fields) == sorted(FIELDS), f"{path}: fields must be exactly {FIELDS}"
    return WireMessage(**fields)


def encoded(name: str) -> Tuple[Message, WireMessage]:
    message, encode = CASES[name]
    return message, encode(message)


# --- goldens -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_encode_matches_golden(name: str) -> None:
    _, wire = encoded(name)
    fields = wire_fields(wire)
    assert_json_native(fields)
    if REGEN:
        GOLDEN_DIR.mkdir(exist_ok=True)
        (GOLDEN_DIR / f"{name}.json").write_text(render(fields), encoding="utf-8")
    golden = load_golden(name)
    assert canonical(fields) == canonical(wire_fields(golden))
    assert wire == golden


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_golden_gives_message(name: str) -> None:
    message, _ = encoded(name)
    decoded = decode(load_golden(name))
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize("name", sorted(CASES))
def test_survives_amqp(name: str) -> None:
    message, wire = encoded(name)
    received = roundtrip(wire)
    assert received == wire
    assert canonical(wire_fields(received)) == canonical(wire_fields(wire))
    assert received.size > 0
    assert decode(received) == message


def test_no_stale_goldens() -> None:
    on_disk = {p.stem for p in GOLDEN_DIR.glob("*.json")}
    assert on_disk == set(CASES), "every golden has a case and every case a golden"


def test_protocol_doc_shows_the_goldens() -> None:
    """docs/PROTOCOL.md quotes each golden verbatim, so the document cannot drift from the wire."""
    if not PROTOCOL_MD.exists():
        pytest.skip("docs/PROTOCOL.md is not in this tree")
    doc = PROTOCOL_MD.read_text(encoding="utf-8")
    missing = [name for name in sorted(CASES) if render(wire_fields(load_golden(name))).strip() not in doc]
    assert not missing, f"docs/PROTOCOL.md does not show these goldens verbatim: {missing}"


def test_subjects_and_addresses() -> None:
    assert direct_address(AGENT) == f"{DIRECT}/{AGENT}" == "qmf.default.direct/" + AGENT
    assert heartbeat_subject() == "agent.ind.heartbeat.libvirt_org.virtq"
    assert data_subject("org.libvirt", "Volume") == "agent.ind.data.org_libvirt.Volume.libvirt_org.virtq"
    assert event_subject("org.libvirt", "domainLifecycle") == \
        "agent.ind.event.org_libvirt.domainLifecycle.libvirt_org.virtq"
    assert heartbeat_subject("example.com", "a.b") == "agent.ind.heartbeat.example_com.a_b"
    assert LOCATE_SUBJECT == "console.request.agent_locate"


# --- malformed input -----------------------------------------------------------------------------

def golden_fields(name: str) -> Dict[str, Any]:
    return copy.deepcopy(wire_fields(load_golden(name)))


def mutated(name: str, change: Callable[[Dict[str, Any]], Any]) -> WireMessage:
    fields = golden_fields(name)
    change(fields)
    return WireMessage(**fields)


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    """Set (or, with value DELETE, remove) a nested key: 'body/_values/error_code', 'body/0/_values'."""
    def change(fields: Dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = fields
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    return change


DELETE = object()

MALFORMED: List[Tuple[str, str, Callable[[Dict[str, Any]], None]]] = [
    # (id, golden to start from, change)
    ("opcode-missing", "method_request", _set("properties/qmf.opcode", DELETE)),
    ("opcode-unknown", "method_request", _set("properties/qmf.opcode", "_method_call")),
    ("opcode-not-a-string", "method_request", _set("properties/qmf.opcode", 7)),
    ("properties-not-a-map", "method_request", _set("properties", None)),
    ("method-body-not-a-map", "method_request", _set("body", ["_object_id"])),
    ("method-body-none", "method_request", _set("body", None)),
    ("method-object-id-missing", "method_request", _set("body/_object_id", DELETE)),
    ("method-object-id-not-a-map", "method_request", _set("body/_object_id", "Node:x")),
    ("method-object-name-missing", "method_request", _set("body/_object_id/_object_name", DELETE)),
    ("method-object-name-not-a-string", "method_request", _set("body/_object_id/_object_name", 5)),
    ("method-agent-epoch-not-an-int", "method_request", _set("body/_object_id/_agent_epoch", "3")),
    ("method-agent-epoch-bool", "method_request", _set("body/_object_id/_agent_epoch", True)),
    ("method-agent-name-not-a-string", "method_request", _set("body/_object_id/_agent_name", 1)),
    ("method-name-missing", "method_request", _set("body/_method_name", DELETE)),
    ("method-name-not-a-string", "method_request", _set("body/_method_name", ["getInfo"])),
    ("method-arguments-not-a-map", "method_request", _set("body/_arguments", ["xml"])),
    ("method-arguments-string", "method_request", _set("body/_arguments", "xml=1")),
    ("method-response-body-not-a-map", "method_response_map", _set("body", [])),
    ("method-response-arguments-not-a-map", "method_response_map", _set("body/_arguments", 0)),
    ("query-body-not-a-map", "query_request_object_by_class", _set("body", "OBJECT")),
    ("query-what-missing", "query_request_object_by_class", _set("body/_what", DELETE)),
    ("query-what-unknown", "query_request_object_by_class", _set("body/_what", "OBJECTS")),
    ("query-what-lowercase", "query_request_object_by_class", _set("body/_what", "object")),
    ("query-what-not-a-string", "query_request_object_by_class", _set("body/_what", 1)),
    ("query-schema-id-not-a-map", "query_request_object_by_class", _set("body/_schema_id", "Domain")),
    ("query-schema-id-field-not-a-string", "query_request_object_by_class",
     _set("body/_schema_id/_class_name", 3)),
    ("query-object-id-not-a-map", "query_request_object_by_id", _set("body/_object_id", ["Domain:x"])),
    ("query-object-id-without-name", "query_request_object_by_id", _set("body/_object_id/_object_name", DELETE)),
    ("query-response-body-not-a-list", "query_response_final", _set("body", {"_values": {}})),
    ("query-response-record-not-a-map", "query_response_final", _set("body/0", "Volume:x")),
    ("query-response-values-missing", "query_response_final", _set("body/0/_values", DELETE)),
    ("query-response-values-not-a-map", "query_response_final", _set("body/0/_values", [])),
    ("query-response-object-id-missing", "query_response_final", _set("body/0/_object_id", DELETE)),
    ("query-response-schema-id-missing", "query_response_final", _set("body/0/_schema_id", DELETE)),
    ("query-response-update-ts-string", "query_response_final", _set("body/0/_update_ts", "1700000000")),
    ("query-response-create-ts-float", "query_response_final", _set("body/0/_create_ts", 1.5)),
    ("query-response-delete-ts-bool", "query_response_final", _set("body/0/_delete_ts", True)),
    ("query-response-object-id-item-not-a-map", "query_response_object_id", _set("body/0", "Domain:x")),
    ("data-indication-body-not-a-list", "data_indication_update", _set("body", {})),
    ("data-indication-delete-ts-string", "data_indication_delete", _set("body/0/_delete_ts", "now")),
    ("data-indication-object-id-not-a-map", "data_indication_delete", _set("body/0/_object_id", None)),
    ("exception-values-missing", "exception", _set("body/_values", DELETE)),
    ("exception-values-not-a-map", "exception", _set("body/_values", "error")),
    ("exception-body-not-a-map", "exception", _set("body", "error")),
    ("exception-code-missing", "exception", _set("body/_values/error_code", DELETE)),
    ("exception-code-not-an-int", "exception", _set("body/_values/error_code", "7")),
    ("exception-code-bool", "exception", _set("body/_values/error_code", False)),
    ("locate-response-values-missing", "agent_locate_response", _set("body/_values", DELETE)),
    ("locate-response-name-missing", "agent_locate_response", _set("body/_values/_name", DELETE)),
    ("heartbeat-body-not-a-map", "agent_heartbeat_indication", _set("body", [])),
    ("heartbeat-epoch-not-an-int", "agent_heartbeat_indication", _set("body/_values/_epoch", "3")),
    ("heartbeat-epoch-bool", "agent_heartbeat_indication", _set("body/_values/_epoch", True)),
    ("heartbeat-interval-float", "agent_heartbeat_indication", _set("body/_values/_heartbeat_interval", 10.0)),
    ("heartbeat-timestamp-string", "agent_heartbeat_indication", _set("body/_values/_timestamp", "1700000060")),
    ("heartbeat-timestamp-missing", "agent_heartbeat_indication", _set("body/_values/_timestamp", DELETE)),
]


@pytest.mark.parametrize("golden,change", [(g, c) for _, g, c in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_decode_rejects_malformed(golden: str, change: Callable[[Dict[str, Any]], None]) -> None:
    wire = mutated(golden, change)
    with pytest.raises(ProtocolError):
        decode(wire)


def test_malformed_cases_start_from_valid_goldens() -> None:
    """Each malformed case differs from a golden that decodes: the change alone is refused."""
    for golden in {g for _, g, _ in MALFORMED}:
        decode(load_golden(golden))


GARBAGE: List[Any] = [None, 0, True, "x", b"x", [], [None], [1, "a"], {}, {"_values": None},
                      {"_values": []}, {"_what": None}, {"_object_id": {}}, {"_arguments": None},
                      [{"_values": {}, "_object_id": {"_object_name": "x"}}],
                      [{"_values": {}, "_object_id": {"_object_name": "x"}, "_schema_id": {}}]]


@pytest.mark.parametrize("opcode", ["_agent_locate_request", "_agent_locate_response",
                                    "_agent_heartbeat_indication", "_query_request", "_query_response",
                                    "_method_request", "_method_response", "_exception", "_data_indication"])
@pytest.mark.parametrize("content", [None, "_data", "_object_id", "_schema_id"])
def test_decode_raises_only_protocol_error(opcode: str, content: Any) -> None:
    """Whatever the body, decode() gives a message or ProtocolError, never another exception."""
    properties = {"x-amqp-0-10.app-id": "qmf2", "qmf.opcode": opcode}
    if content is not None:
        properties["qmf.content"] = content
    for body in GARBAGE:
        try:
            decode(WireMessage(f"{DIRECT}/{AGENT}", properties, body))
        except ProtocolError:
            pass


def test_lenient_fields_decode() -> None:
    """What decode() accepts although a golden would state it: defaults for omitted optional fields."""
    fields = golden_fields("query_response_final")
    for key in ("_update_ts", "_create_ts", "_delete_ts"):
        del fields["body"][0][key]
    del fields["body"][0]["_object_id"]["_agent_name"]
    del fields["body"][0]["_object_id"]["_agent_epoch"]
    del fields["body"][0]["_schema_id"]["_type"]
    response = decode(WireMessage(**fields))
    assert isinstance(response, QueryResponse)
    record = response.records[0]
    assert (record.update_ts, record.create_ts, record.delete_ts) == (0, 0, 0)
    assert record.object_id == ObjectId(VOLUME.object_name)
    assert record.schema_id == VOLUME_ID
    fields = golden_fields("method_request")
    del fields["body"]["_arguments"]
    request = decode(WireMessage(**fields))
    assert isinstance(request, MethodRequest) and request.arguments == {}
