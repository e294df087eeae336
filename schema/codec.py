"""The wire codec: QMFv2's map dialect as typed, frozen messages.

A :class:`WireMessage` is what a transport moves (address, subject, application
properties, body, correlation id, reply-to); it knows nothing of AMQP libraries.
The message classes below are the QMF shapes; ``encode()`` turns one into a
WireMessage and :func:`decode` turns a WireMessage back into one, raising
:class:`ProtocolError` for anything malformed. docs/PROTOCOL.md shows each shape.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

from .errors import InvalidParameterError, ProtocolError
from .model import SchemaId

APP_ID_KEY = "x-amqp-0-10.app-id"
APP_ID = "qmf2"
OPCODE = "qmf.opcode"
METHOD = "method"
AGENT = "qmf.agent"
CONTENT = "qmf.content"
PARTIAL = "partial"

DIRECT = "qmf.default.direct"
TOPIC = "qmf.default.topic"
LOCATE_SUBJECT = "console.request.agent_locate"

VENDOR = "libvirt.org"
PRODUCT = "virtq"


def direct_address(agent_name: str) -> str:
    """Where requests for one agent go."""
    return f"{DIRECT}/{agent_name}"


def _subject_word(text: str) -> str:
    """Topic words are dot-separated, so dots inside a word become underscores (as QMF does)."""
    return text.replace(".", "_")


def heartbeat_subject(vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.heartbeat.{_subject_word(vendor)}.{_subject_word(product)}"


def data_subject(package: str, class_name: str, vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.data.{_subject_word(package)}.{class_name}.{_subject_word(vendor)}.{_subject_word(product)}"


def event_subject(package: str, event: str, vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.event.{_subject_word(package)}.{event}.{_subject_word(vendor)}.{_subject_word(product)}"


def stats_subject(package: str, class_name: str, vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.stats.{_subject_word(package)}.{class_name}.{_subject_word(vendor)}.{_subject_word(product)}"


def now_ns() -> int:
    """QMF timestamps are nanoseconds since the epoch."""
    return time.time_ns()


@dataclass(frozen=True)
class WireMessage:
    """One message as a transport carries it."""

    address: str
    properties: Mapping[str, Any]
    body: Any
    subject: str = ""
    correlation_id: Optional[str] = None
    reply_to: Optional[str] = None
    size: int = field(default=0, compare=False)  # encoded bytes, when the transport knows
    principal: Optional[str] = field(default=None, compare=False)
    """Who sent it, as the transport authenticated them: the client certificate's CN (direct mode
    over TLS) or the broker-validated user-id (brokered); None when anonymous. Never read from
    the message itself in direct mode."""


# --- values inside bodies -------------------------------------------------------------------

def _require(mapping: Any, key: str, kind: Union[type, Tuple[type, ...]], where: str) -> Any:
    if not isinstance(mapping, Mapping):
        raise ProtocolError(f"{where}: expected a map")
    value = mapping.get(key)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise ProtocolError(f"{where}: {key} missing or not {getattr(kind, '__name__', kind)}")
    return value


_CONTROL_CHARACTERS = frozenset(chr(c) for c in (*range(0x00, 0x20), 0x7f))


class InvalidObjectNameError(ProtocolError, InvalidParameterError):
    """An object name no object can have (NUL or another control character): the request is malformed
    (ProtocolError, for whoever decodes) and answered as an invalid parameter, code 4 (PROTOCOL.md 8.3)."""

    def __init__(self, error_text: str) -> None:
        InvalidParameterError.__init__(self, error_text)


def check_object_name(name: str) -> str:
    """``name`` unless it holds a control character (libvirt names and UUIDs never do; a NUL cut C strings)."""
    if not _CONTROL_CHARACTERS.isdisjoint(name):
        bad = next(c for c in name if c in _CONTROL_CHARACTERS)
        raise InvalidObjectNameError(f"invalid object name: it contains the control character {ord(bad):#04x}")
    return name


@dataclass(frozen=True)
class ObjectId:
    """QMF's ``_object_id``: a deterministic object name scoped by agent (and its epoch)."""

    object_name: str
    agent_name: str = ""
    agent_epoch: int = 0

    def to_wire(self) -> Dict[str, Any]:
        return {"_object_name": self.object_name, "_agent_name": self.agent_name,
                "_agent_epoch": self.agent_epoch}

    @classmethod
    def from_wire(cls, value: Any) -> "ObjectId":
        name = check_object_name(_require(value, "_object_name", str, "_object_id"))
        agent = value.get("_agent_name", "")
        epoch = value.get("_agent_epoch", 0)
        if not isinstance(agent, str) or isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ProtocolError("_object_id: bad _agent_name or _agent_epoch")
        return cls(name, agent, epoch)


def schema_id_to_wire(schema_id: SchemaId) -> Dict[str, Any]:
    return {"_package_name": schema_id.package, "_class_name": schema_id.class_name,
            "_type": schema_id.type, "_hash": schema_id.hash}


def schema_id_from_wire(value: Any) -> SchemaId:
    if not isinstance(value, Mapping):
        raise ProtocolError("_schema_id: expected a map")
    fields = [value.get(k, "") for k in ("_package_name", "_class_name", "_hash", "_type")]
    if not all(isinstance(f, str) for f in fields):
        raise ProtocolError("_schema_id: fields must be strings")
    return SchemaId(fields[0], fields[1], fields[2], fields[3] or "_data")


@dataclass(frozen=True)
class DataRecord:
    """One object (or event) as QMF's data map."""

    object_id: ObjectId
    schema_id: SchemaId
    values: Mapping[str, Any]
    update_ts: int = 0
    create_ts: int = 0
    delete_ts: int = 0

    @property
    def deleted(self) -> bool:
        return self.delete_ts != 0

    def to_wire(self) -> Dict[str, Any]:
        return {"_values": dict(self.values), "_object_id": self.object_id.to_wire(),
                "_schema_id": schema_id_to_wire(self.schema_id), "_update_ts": self.update_ts,
                "_create_ts": self.create_ts, "_delete_ts": self.delete_ts}

    @classmethod
    def from_wire(cls, value: Any) -> "DataRecord":
        values = _require(value, "_values", Mapping, "data")
        stamps = [value.get(k, 0) for k in ("_update_ts", "_create_ts", "_delete_ts")]
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in stamps):
            raise ProtocolError("data: timestamps must be integers")
        return cls(ObjectId.from_wire(value.get("_object_id")), schema_id_from_wire(value.get("_schema_id")),
                   dict(values), *stamps)


@dataclass(frozen=True)
class AgentInfo:
    """What an agent says of itself in locate responses and heartbeats."""

    name: str
    epoch: int
    heartbeat_interval: int
    timestamp: int
    schema_hash: str = ""
    vendor: str = VENDOR
    product: str = PRODUCT
    instance: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)  # hostname, libvirt URI, versions …

    def to_wire(self) -> Dict[str, Any]:
        values = dict(self.attributes)
        values.update({"_vendor": self.vendor, "_product": self.product, "_instance": self.instance,
                       "_name": self.name, "_epoch": self.epoch,
                       "_heartbeat_interval": self.heartbeat_interval, "_timestamp": self.timestamp,
                       "_schema_hash": self.schema_hash})
        return {"_values": values}

    @classmethod
    def from_wire(cls, body: Any) -> "AgentInfo":
        values = _require(body, "_values", Mapping, "agent")
        name = _require(values, "_name", str, "agent")
        epoch = _require(values, "_epoch", int, "agent")
        interval = _require(values, "_heartbeat_interval", int, "agent")
        timestamp = _require(values, "_timestamp", int, "agent")
        attributes = {k: v for k, v in values.items() if not str(k).startswith("_")}
        return cls(name, epoch, interval, timestamp, str(values.get("_schema_hash", "")),
                   str(values.get("_vendor", "")), str(values.get("_product", "")),
                   str(values.get("_instance", "")), attributes)


# --- messages -----------------------------------------------------------------------------------

M = TypeVar("M", bound="Message")


@dataclass(frozen=True)
class Message:
    """Base of the QMF messages; subclasses set OPCODE/KIND and their body."""

    OPCODE = ""
    KIND = ""  # QMF's "method" property: request, response or indication

    correlation_id: Optional[str] = field(default=None, kw_only=True)
    reply_to: Optional[str] = field(default=None, kw_only=True)
    agent: str = field(default="", kw_only=True)  # qmf.agent: the agent that sent it

    def _body(self) -> Any:
        return {}

    def _properties(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def _from_body(cls: Type[M], body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> M:
        raise NotImplementedError

    def encode(self, address: str, subject: str = "") -> WireMessage:
        properties: Dict[str, Any] = {APP_ID_KEY: APP_ID, OPCODE: self.OPCODE, METHOD: self.KIND}
        if self.agent:
            properties[AGENT] = self.agent
        properties.update(self._properties())
        return WireMessage(address, properties, self._body(), subject, self.correlation_id, self.reply_to)


@dataclass(frozen=True)
class AgentLocateRequest(Message):
    OPCODE = "_agent_locate_request"
    KIND = "request"

    def encode(self, address: str = TOPIC, subject: str = LOCATE_SUBJECT) -> WireMessage:
        return super().encode(address, subject)

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "AgentLocateRequest":
        return cls(**common)


@dataclass(frozen=True)
class AgentLocateResponse(Message):
    OPCODE = "_agent_locate_response"
    KIND = "response"
    info: AgentInfo

    def _body(self) -> Any:
        return self.info.to_wire()

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "AgentLocateResponse":
        return cls(AgentInfo.from_wire(body), **common)


@dataclass(frozen=True)
class AgentHeartbeat(Message):
    OPCODE = "_agent_heartbeat_indication"
    KIND = "indication"
    info: AgentInfo

    def encode(self, address: str = TOPIC, subject: str = "") -> WireMessage:
        return super().encode(address, subject or heartbeat_subject(self.info.vendor, self.info.product))

    def _body(self) -> Any:
        return self.info.to_wire()

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "AgentHeartbeat":
        return cls(AgentInfo.from_wire(body), **common)


QUERY_WHATS = ("OBJECT", "OBJECT_ID", "SCHEMA_ID", "SCHEMA")
CONTENT_FOR_WHAT = {"OBJECT": "_data", "OBJECT_ID": "_object_id", "SCHEMA_ID": "_schema_id",
                    "SCHEMA": "_schema"}


@dataclass(frozen=True)
class QueryRequest(Message):
    OPCODE = "_query_request"
    KIND = "request"
    what: str = "OBJECT"
    schema_id: Optional[SchemaId] = None
    object_id: Optional[ObjectId] = None

    def _body(self) -> Any:
        body: Dict[str, Any] = {"_what": self.what}
        if self.schema_id is not None:
            body["_schema_id"] = schema_id_to_wire(self.schema_id)
        if self.object_id is not None:
            body["_object_id"] = self.object_id.to_wire()
        return body

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "QueryRequest":
        what = _require(body, "_what", str, "query")
        if what not in QUERY_WHATS:
            raise ProtocolError(f"query: unknown _what {what!r}")
        schema_id = schema_id_from_wire(body["_schema_id"]) if "_schema_id" in body else None
        object_id = ObjectId.from_wire(body["_object_id"]) if "_object_id" in body else None
        return cls(what=what, schema_id=schema_id, object_id=object_id, **common)


@dataclass(frozen=True)
class QueryResponse(Message):
    """One batch of a query's answer; every batch but the last is ``partial``."""

    OPCODE = "_query_response"
    KIND = "response"
    content: str = "_data"
    items: Sequence[Any] = ()
    partial: bool = False

    def _body(self) -> Any:
        return [i.to_wire() if isinstance(i, (DataRecord, ObjectId)) else i for i in self.items]

    def _properties(self) -> Dict[str, Any]:
        properties: Dict[str, Any] = {CONTENT: self.content}
        if self.partial:
            properties[PARTIAL] = True
        return properties

    @property
    def records(self) -> List[DataRecord]:
        return [i if isinstance(i, DataRecord) else DataRecord.from_wire(i) for i in self.items]

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "QueryResponse":
        if not isinstance(body, (list, tuple)):
            raise ProtocolError("query response: body must be a list")
        content = properties.get(CONTENT, "_data")
        items: List[Any] = list(body)
        if content == "_data":
            items = [DataRecord.from_wire(i) for i in items]
        elif content == "_object_id":
            items = [ObjectId.from_wire(i) for i in items]
        return cls(content=str(content), items=tuple(items), partial=bool(properties.get(PARTIAL)), **common)


@dataclass(frozen=True)
class MethodRequest(Message):
    OPCODE = "_method_request"
    KIND = "request"
    object_id: ObjectId = ObjectId("")
    method_name: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def _body(self) -> Any:
        return {"_object_id": self.object_id.to_wire(), "_method_name": self.method_name,
                "_arguments": dict(self.arguments)}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "MethodRequest":
        name = _require(body, "_method_name", str, "method request")
        arguments = body.get("_arguments", {})
        if not isinstance(arguments, Mapping):
            raise ProtocolError("method request: _arguments must be a map")
        return cls(object_id=ObjectId.from_wire(body.get("_object_id")), method_name=name,
                   arguments=dict(arguments), **common)


@dataclass(frozen=True)
class MethodResponse(Message):
    OPCODE = "_method_response"
    KIND = "response"
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def _body(self) -> Any:
        return {"_arguments": dict(self.arguments)}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "MethodResponse":
        arguments = body.get("_arguments", {}) if isinstance(body, Mapping) else None
        if not isinstance(arguments, Mapping):
            raise ProtocolError("method response: _arguments must be a map")
        return cls(arguments=dict(arguments), **common)


@dataclass(frozen=True)
class ExceptionResponse(Message):
    """QMF's ``_exception``: ``{_values: {error_code, error_text}}``."""

    OPCODE = "_exception"
    KIND = "response"
    error_code: int = 7
    error_text: str = ""

    def _body(self) -> Any:
        return {"_values": {"error_code": self.error_code, "error_text": self.error_text}}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "ExceptionResponse":
        values = _require(body, "_values", Mapping, "exception")
        return cls(error_code=_require(values, "error_code", int, "exception"),
                   error_text=str(values.get("error_text", "")), **common)


@dataclass(frozen=True)
class DataIndication(Message):
    """Pushed data (``qmf.content: _data``) or events (``_event``): a list of data maps."""

    OPCODE = "_data_indication"
    KIND = "indication"
    records: Sequence[DataRecord] = ()
    content: str = "_data"

    def _body(self) -> Any:
        return [r.to_wire() for r in self.records]

    def _properties(self) -> Dict[str, Any]:
        return {CONTENT: self.content}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "DataIndication":
        if not isinstance(body, (list, tuple)):
            raise ProtocolError("data indication: body must be a list")
        return cls(records=tuple(DataRecord.from_wire(r) for r in body),
                   content=str(properties.get(CONTENT, "_data")), **common)


@dataclass(frozen=True)
class EventRecord:
    """One QMF event: ``{_schema_id (type _event), _values, _timestamp, _severity}``."""

    schema_id: SchemaId
    values: Mapping[str, Any]
    timestamp: int = 0
    severity: int = 5  # QMF/syslog: 3 error, 4 warning, 5 notice

    def to_wire(self) -> Dict[str, Any]:
        return {"_schema_id": schema_id_to_wire(self.schema_id), "_values": dict(self.values),
                "_timestamp": self.timestamp, "_severity": self.severity}

    @classmethod
    def from_wire(cls, value: Any) -> "EventRecord":
        values = _require(value, "_values", Mapping, "event")
        timestamp = value.get("_timestamp", 0)
        severity = value.get("_severity", 5)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (timestamp, severity)):
            raise ProtocolError("event: _timestamp and _severity must be integers")
        return cls(schema_id_from_wire(value.get("_schema_id")), dict(values), timestamp, severity)


@dataclass(frozen=True)
class EventIndication(Message):
    """Events pushed by an agent: ``_data_indication`` with ``qmf.content: _event``."""

    OPCODE = "_data_indication"
    KIND = "indication"
    events: Sequence[EventRecord] = ()

    def _body(self) -> Any:
        return [e.to_wire() for e in self.events]

    def _properties(self) -> Dict[str, Any]:
        return {CONTENT: "_event"}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "EventIndication":
        if not isinstance(body, (list, tuple)):
            raise ProtocolError("event indication: body must be a list")
        return cls(events=tuple(EventRecord.from_wire(e) for e in body), **common)


UUID_KEYED = ("Node", "Domain", "Pool")


def _key_to_wire(class_name: str, key: str) -> Any:
    """uuids travel as 16 bytes (AMQP binary), other keys as strings."""
    return uuid.UUID(key).bytes if class_name in UUID_KEYED else key


def _key_from_wire(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 16:  # proton gives memoryview
        return str(uuid.UUID(bytes=bytes(value)))
    if isinstance(value, str):
        return value
    raise ProtocolError("stats: object keys must be 16-byte uuids or strings")


@dataclass(frozen=True)
class StatsBatch:
    """Statistics of objects of one class, columnar and sparse, to keep the wire small.

    ``keys`` name the objects (uuid or volume key); each column holds one value per key,
    None where that object's value did not change since the agent last pushed it. Only
    columns with at least one change are present.
    """

    schema_id: SchemaId
    epoch: int
    sample_ts: int
    keys: Tuple[str, ...]
    columns: Mapping[str, Sequence[Any]]

    def object_name(self, index: int) -> str:
        return f"{self.schema_id.class_name}:{self.keys[index]}"

    def rows(self) -> List[Tuple[str, Dict[str, Any]]]:
        """(object name, {field: value}) for each object, unchanged fields left out."""
        return [(self.object_name(i), {f: col[i] for f, col in self.columns.items() if col[i] is not None})
                for i in range(len(self.keys))]

    def to_wire(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"_schema_id": schema_id_to_wire(self.schema_id), "_agent_epoch": self.epoch,
                                "_sample_ts": self.sample_ts,
                                "_keys": [_key_to_wire(self.schema_id.class_name, k) for k in self.keys]}
        body.update({name: list(values) for name, values in self.columns.items()})
        return body

    @classmethod
    def from_wire(cls, value: Any) -> "StatsBatch":
        epoch = _require(value, "_agent_epoch", int, "stats")
        sample_ts = _require(value, "_sample_ts", int, "stats")
        keys = tuple(_key_from_wire(k) for k in _require(value, "_keys", (list, tuple), "stats"))
        columns = {str(k): list(v) for k, v in value.items() if not str(k).startswith("_")}
        if any(not isinstance(v, list) or len(v) != len(keys) for v in columns.values()):
            raise ProtocolError("stats: every column needs one value per key")
        return cls(schema_id_from_wire(value.get("_schema_id")), epoch, sample_ts, keys, columns)


@dataclass(frozen=True)
class StatsIndication(Message):
    """Pushed statistics: ``_data_indication`` with ``qmf.content: _stats`` (a virtq extension)."""

    OPCODE = "_data_indication"
    KIND = "indication"
    batches: Sequence[StatsBatch] = ()

    def _body(self) -> Any:
        return [b.to_wire() for b in self.batches]

    def _properties(self) -> Dict[str, Any]:
        return {CONTENT: "_stats"}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "StatsIndication":
        if not isinstance(body, (list, tuple)):
            raise ProtocolError("stats indication: body must be a list")
        return cls(batches=tuple(StatsBatch.from_wire(b) for b in body), **common)


_INDICATION_BY_CONTENT: Dict[str, Type[Message]] = {"_event": EventIndication, "_stats": StatsIndication}

_BY_OPCODE: Dict[str, Type[Message]] = {
    cls.OPCODE: cls
    for cls in (AgentLocateRequest, AgentLocateResponse, AgentHeartbeat, QueryRequest, QueryResponse,
                MethodRequest, MethodResponse, ExceptionResponse, DataIndication)
}


def decode(wire: WireMessage) -> Message:
    """Turn a received WireMessage into its typed message, or raise ProtocolError."""
    properties = wire.properties if isinstance(wire.properties, Mapping) else {}
    opcode = properties.get(OPCODE)
    cls = _BY_OPCODE.get(opcode) if isinstance(opcode, str) else None
    if cls is DataIndication:
        cls = _INDICATION_BY_CONTENT.get(str(properties.get(CONTENT, "_data")), DataIndication)
    if cls is None:
        raise ProtocolError(f"unknown or missing qmf.opcode {opcode!r}")
    agent = properties.get(AGENT, "")
    common: Dict[str, Any] = {"correlation_id": None if wire.correlation_id is None else str(wire.correlation_id),
                              "reply_to": wire.reply_to, "agent": agent if isinstance(agent, str) else ""}
    try:
        return cls._from_body(wire.body, properties, common)
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ProtocolError(f"{opcode}: malformed body: {exc}") from exc
