"""The map form of ``_stats`` that virtq sent before the ``packed-1`` layout: the benchmark's baseline only.

``{_schema_id, _agent_epoch, _sample_ts, _keys: [16-byte binary uuid | str], <column>: [value | None, …]}``,
copied from schema/_records.py as it was; the product neither sends nor reads it any more (a console
refuses it: the layout is missing).
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Mapping

from virtq.schema.codec import UUID_KEYED, StatsBatch, schema_id_from_wire, schema_id_to_wire
from virtq.schema.errors import ProtocolError

__all__ = ["legacy_from_wire", "legacy_to_wire"]


def _key_to_wire(class_name: str, key: str) -> Any:
    """uuids travel as 16 bytes (AMQP binary), other keys as strings."""
    return uuid.UUID(key).bytes if class_name in UUID_KEYED else key


def _key_from_wire(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 16:  # proton gives memoryview
        return str(uuid.UUID(bytes=bytes(value)))
    if isinstance(value, str):
        return value
    raise ProtocolError("stats: object keys must be 16-byte uuids or strings")


def _require(mapping: Any, key: str, kind: Any) -> Any:
    if not isinstance(mapping, Mapping):
        raise ProtocolError("stats: expected a map")
    value = mapping.get(key)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise ProtocolError(f"stats: {key} missing or not {getattr(kind, '__name__', kind)}")
    return value


def legacy_to_wire(batch: StatsBatch) -> Dict[str, Any]:
    body: Dict[str, Any] = {"_schema_id": schema_id_to_wire(batch.schema_id), "_agent_epoch": batch.epoch,
                            "_sample_ts": batch.sample_ts,
                            "_keys": [_key_to_wire(batch.schema_id.class_name, k) for k in batch.keys]}
    body.update({name: list(values) for name, values in batch.columns.items()})
    return body


def legacy_from_wire(value: Any) -> StatsBatch:
    epoch = _require(value, "_agent_epoch", int)
    sample_ts = _require(value, "_sample_ts", int)
    keys = tuple(_key_from_wire(k) for k in _require(value, "_keys", (list, tuple)))
    columns = {str(k): list(v) for k, v in value.items() if not str(k).startswith("_")}
    if any(not isinstance(v, list) or len(v) != len(keys) for v in columns.values()):
        raise ProtocolError("stats: every column needs one value per key")
    return StatsBatch(schema_id_from_wire(value.get("_schema_id")), epoch, sample_ts, keys, columns)
