"""The values inside QMF bodies: object ids, data records, agent info, events and statistics batches.

Each is a frozen dataclass with ``to_wire()`` and ``from_wire()``; ``from_wire`` raises
:class:`ProtocolError` for anything malformed. The messages that carry them are in :mod:`.codec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ._addresses import PRODUCT, VENDOR
from ._packed import LAYOUT, pack_column, pack_keys, unpack_column, unpack_keys
from .errors import InvalidParameterError, ProtocolError
from .model import SchemaId


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

def require(mapping: Any, key: str, kind: Union[type, Tuple[type, ...]], where: str) -> Any:
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
        name = check_object_name(require(value, "_object_name", str, "_object_id"))
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
        values = require(value, "_values", Mapping, "data")
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
        values = require(body, "_values", Mapping, "agent")
        name = require(values, "_name", str, "agent")
        epoch = require(values, "_epoch", int, "agent")
        interval = require(values, "_heartbeat_interval", int, "agent")
        timestamp = require(values, "_timestamp", int, "agent")
        attributes = {k: v for k, v in values.items() if not str(k).startswith("_")}
        return cls(name, epoch, interval, timestamp, str(values.get("_schema_hash", "")),
                   str(values.get("_vendor", "")), str(values.get("_product", "")),
                   str(values.get("_instance", "")), attributes)




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
        values = require(value, "_values", Mapping, "event")
        timestamp = value.get("_timestamp", 0)
        severity = value.get("_severity", 5)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (timestamp, severity)):
            raise ProtocolError("event: _timestamp and _severity must be integers")
        return cls(schema_id_from_wire(value.get("_schema_id")), dict(values), timestamp, severity)



UUID_KEYED = ("Node", "Domain", "Pool")
"""Classes whose objects are keyed by uuid: their statistics keys travel as 16 bytes each."""


@dataclass(frozen=True)
class StatsBatch:
    """Statistics of objects of one class, columnar and sparse, to keep the wire small.

    ``keys`` name the objects (uuid or volume key); each column holds one value per key,
    None where that object's value did not change since the agent last pushed it. Only
    columns with at least one change are present. On the wire it is the ``packed-1`` layout
    (:mod:`._packed`, PROTOCOL.md section 10); query answers carry statistics in data maps instead.
    """

    schema_id: SchemaId
    epoch: int
    sample_ts: int
    keys: Tuple[str, ...]
    columns: Mapping[str, Sequence[Optional[int]]]

    def object_name(self, index: int) -> str:
        return f"{self.schema_id.class_name}:{self.keys[index]}"

    def rows(self) -> List[Tuple[str, Dict[str, Any]]]:
        """(object name, {field: value}) for each object, unchanged fields left out."""
        return [(self.object_name(i), {f: col[i] for f, col in self.columns.items() if col[i] is not None})
                for i in range(len(self.keys))]

    def to_wire(self) -> Dict[str, Any]:
        """The packed map; ValueError for what cannot be packed (a column not one value per key, a value
        beyond 64 bits, a key that is no uuid in a uuid-keyed class)."""
        if any(len(values) != len(self.keys) for values in self.columns.values()):
            raise ValueError("stats: every column needs one value per key")
        return {"_layout": LAYOUT, "_schema_id": schema_id_to_wire(self.schema_id), "_agent_epoch": self.epoch,
                "_sample_ts": self.sample_ts, "_count": len(self.keys),
                "_keys": pack_keys(self.keys, self.schema_id.class_name in UUID_KEYED),
                "_columns": {name: pack_column(values) for name, values in self.columns.items()}}

    @classmethod
    def from_wire(cls, value: Any) -> "StatsBatch":
        layout = value.get("_layout") if isinstance(value, Mapping) else None
        if layout != LAYOUT:
            shown = "(none: the map form of earlier virtq agents)" if layout is None else repr(layout)
            raise ProtocolError(f"stats layout {shown} is not supported by this console (supports {LAYOUT})")
        epoch = require(value, "_agent_epoch", int, "stats")
        sample_ts = require(value, "_sample_ts", int, "stats")
        count = require(value, "_count", int, "stats")
        if count < 0:
            raise ProtocolError(f"stats: _count {count} is negative")
        keys = unpack_keys(value.get("_keys"), count)
        columns = require(value, "_columns", Mapping, "stats")
        if not all(isinstance(name, str) for name in columns):
            raise ProtocolError("stats: column names must be strings")
        return cls(schema_id_from_wire(value.get("_schema_id")), epoch, sample_ts, keys,
                   {name: unpack_column(raw, count, name) for name, raw in columns.items()})
