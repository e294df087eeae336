"""The wire codec: QMFv2's map dialect as typed, frozen messages.

A :class:`WireMessage` is what a transport moves (address, subject, application
properties, body, correlation id, reply-to); it knows nothing of AMQP libraries.
The message classes below are the QMF shapes; ``encode()`` turns one into a
WireMessage and :func:`decode` turns a WireMessage back into one, raising
:class:`ProtocolError` for anything malformed. docs/PROTOCOL.md shows each shape.
The values inside bodies live in :mod:`._records`, addresses in :mod:`._addresses`;
this module is the public face of all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Type, TypeVar

from ._addresses import (AGENT, APP_ID, APP_ID_KEY, CONTENT, DIRECT, LOCATE_SUBJECT, METHOD, OPCODE, PARTIAL,
                         PRODUCT, TOPIC, VENDOR, data_subject, direct_address, event_subject, heartbeat_subject,
                         now_ns, stats_subject)
from ._records import (UUID_KEYED, AgentInfo, DataRecord, EventRecord, InvalidObjectNameError, ObjectId,
                       StatsBatch, WireMessage, check_object_name, require, schema_id_from_wire, schema_id_to_wire)
from .errors import ProtocolError
from .model import SchemaId

__all__ = [
    "AGENT", "APP_ID", "APP_ID_KEY", "CONTENT", "CONTENT_FOR_WHAT", "DIRECT", "LOCATE_SUBJECT", "METHOD", "OPCODE",
    "PARTIAL", "PRODUCT", "QUERY_WHATS", "TOPIC", "UUID_KEYED", "VENDOR",
    "AgentHeartbeat", "AgentInfo", "AgentLocateRequest", "AgentLocateResponse", "DataIndication", "DataRecord",
    "EventIndication", "EventRecord", "ExceptionResponse", "InvalidObjectNameError", "Message", "MethodRequest",
    "MethodResponse", "ObjectId", "QueryRequest", "QueryResponse", "STREAM", "STREAM_CHECKSUMS", "STREAM_HOLE",
    "STREAM_OPS", "STREAM_SEQ", "StatsBatch", "StatsIndication", "StreamControl", "StreamData", "WireMessage",
    "check_object_name", "data_subject", "decode", "direct_address", "event_subject", "heartbeat_subject",
    "now_ns", "schema_id_from_wire", "schema_id_to_wire", "stats_subject",
]

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
        what = require(body, "_what", str, "query")
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
    stream_checksums: str = ""  # a stream method's: the checksums the caller takes, preferred first (§14.1)

    def _body(self) -> Any:
        return {"_object_id": self.object_id.to_wire(), "_method_name": self.method_name,
                "_arguments": dict(self.arguments)}

    def _properties(self) -> Dict[str, Any]:
        return {STREAM_CHECKSUMS: self.stream_checksums} if self.stream_checksums else {}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "MethodRequest":
        name = require(body, "_method_name", str, "method request")
        arguments = body.get("_arguments", {})
        if not isinstance(arguments, Mapping):
            raise ProtocolError("method request: _arguments must be a map")
        checksums = properties.get(STREAM_CHECKSUMS, "")
        return cls(object_id=ObjectId.from_wire(body.get("_object_id")), method_name=name,
                   arguments=dict(arguments), stream_checksums=checksums if isinstance(checksums, str) else "",
                   **common)


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
        values = require(body, "_values", Mapping, "exception")
        return cls(error_code=require(values, "error_code", int, "exception"),
                   error_text=str(values.get("error_text", "")), **common)


class _Indication(Message):
    """A pushed ``_data_indication``: a list of items, their kind named by ``qmf.content``."""

    OPCODE = "_data_indication"
    KIND = "indication"
    CONTENT_TYPE = ""
    FIELD = ""  # the dataclass field that holds the items
    ITEM: Any = None  # their type, with to_wire() / from_wire()
    WHAT = ""

    def _body(self) -> Any:
        return [item.to_wire() for item in getattr(self, self.FIELD)]

    def _properties(self) -> Dict[str, Any]:
        return {CONTENT: self.CONTENT_TYPE}

    @classmethod
    def _from_body(cls: Type[I], body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> I:
        if not isinstance(body, (list, tuple)):
            raise ProtocolError(f"{cls.WHAT}: body must be a list")
        items: Dict[str, Any] = {cls.FIELD: tuple(cls.ITEM.from_wire(item) for item in body)}
        return cls(**items, **common)


I = TypeVar("I", bound=_Indication)


@dataclass(frozen=True)
class DataIndication(_Indication):
    """Pushed data (``qmf.content: _data``): a list of data maps."""

    FIELD, ITEM, WHAT = "records", DataRecord, "data indication"
    records: Sequence[DataRecord] = ()
    content: str = "_data"

    def _properties(self) -> Dict[str, Any]:
        return {CONTENT: self.content}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "DataIndication":
        return super()._from_body(body, properties, dict(common, content=str(properties.get(CONTENT, "_data"))))


@dataclass(frozen=True)
class EventIndication(_Indication):
    """Events pushed by an agent: ``_data_indication`` with ``qmf.content: _event``."""

    CONTENT_TYPE, FIELD, ITEM, WHAT = "_event", "events", EventRecord, "event indication"
    events: Sequence[EventRecord] = ()


@dataclass(frozen=True)
class StatsIndication(_Indication):
    """Pushed statistics: ``_data_indication`` with ``qmf.content: _stats`` (a virtq extension)."""

    CONTENT_TYPE, FIELD, ITEM, WHAT = "_stats", "batches", StatsBatch, "stats indication"
    batches: Sequence[StatsBatch] = ()


STREAM = "qmf.stream"
"""The application property that makes a message part of a stream (its value: the stream's id); §14."""
STREAM_SEQ = "qmf.seq"
STREAM_HOLE = "qmf.hole"
STREAM_CHECKSUMS = "qmf.stream_checksums"
"""On a stream method's request: the end's checksums the caller takes, comma-separated, preferred first."""
STREAM_OPS = ("credit", "end", "done", "cancel")


def _stream_id(properties: Mapping[str, Any], where: str) -> str:
    value = require(properties, STREAM, str, where)
    if not value or len(value) > 64:
        raise ProtocolError(f"{where}: bad {STREAM}")
    return str(value)


@dataclass(frozen=True)
class StreamData(Message):
    """One chunk of a stream (docs/PROTOCOL.md §14): ``data`` as an AMQP binary; or, in a sparse stream,
    ``hole`` bytes of zeros that are not sent (the body is then empty)."""

    OPCODE = "_stream_data"
    KIND = "indication"
    stream: str = ""
    seq: int = 0
    data: bytes = b""
    hole: int = 0

    def _body(self) -> Any:
        return bytes(self.data)

    def _properties(self) -> Dict[str, Any]:
        properties: Dict[str, Any] = {STREAM: self.stream, STREAM_SEQ: self.seq}
        if self.hole:
            properties[STREAM_HOLE] = self.hole
        return properties

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "StreamData":
        if not isinstance(body, (bytes, bytearray)):
            raise ProtocolError("stream data: body must be binary")
        seq = require(properties, STREAM_SEQ, int, "stream data")
        hole = properties.get(STREAM_HOLE, 0)
        if isinstance(hole, bool) or not isinstance(hole, int) or hole < 0 or seq < 0 or (hole and body):
            raise ProtocolError("stream data: bad sequence number or hole")
        return cls(stream=_stream_id(properties, "stream data"), seq=seq, data=bytes(body), hole=hole, **common)


@dataclass(frozen=True)
class StreamControl(Message):
    """A stream's flow and end (§14): ``credit`` (more chunks the receiver takes), ``end`` (the sender's last
    word: bytes and sha256), ``done`` (the agent finished libvirt's stream after an end), ``cancel``."""

    OPCODE = "_stream_control"
    KIND = "indication"
    stream: str = ""
    op: str = "credit"
    values: Mapping[str, Any] = field(default_factory=dict)

    def _body(self) -> Any:
        return {"_op": self.op, **self.values}

    def _properties(self) -> Dict[str, Any]:
        return {STREAM: self.stream}

    @classmethod
    def _from_body(cls, body: Any, properties: Mapping[str, Any], common: Dict[str, Any]) -> "StreamControl":
        op = require(body, "_op", str, "stream control")
        if op not in STREAM_OPS:
            raise ProtocolError(f"stream control: unknown _op {op!r}")
        values = {k: v for k, v in body.items() if k != "_op" and isinstance(k, str)}
        return cls(stream=_stream_id(properties, "stream control"), op=op, values=values, **common)


_INDICATION_BY_CONTENT: Dict[str, Type[Message]] = {"_event": EventIndication, "_stats": StatsIndication}

_BY_OPCODE: Dict[str, Type[Message]] = {
    cls.OPCODE: cls
    for cls in (AgentLocateRequest, AgentLocateResponse, AgentHeartbeat, QueryRequest, QueryResponse,
                MethodRequest, MethodResponse, ExceptionResponse, DataIndication, StreamData, StreamControl)
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
