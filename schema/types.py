"""The schema's value types: what each accepts on the wire and how text becomes a value.

Names follow QMF (``sstr``, ``lstr``, ``uint32``, ``objId`` …). Validation is strict
(``True`` is not an ``int``; a ``uint32`` is within range) because the agent hands the
values to libvirt as they are.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping, Tuple

_INT_RANGES: Dict[str, Tuple[int, int]] = {
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "absTime": (0, 2**63 - 1),
}

TYPES = frozenset(_INT_RANGES) | {"sstr", "lstr", "bool", "float", "double", "map", "list", "objId", "uuid",
                                  "binary", "stream"}
"""``binary``: raw bytes (an AMQP binary: the peeks' results). ``stream``: the out-argument of a method that
opens a stream (docs/PROTOCOL.md §14): a map describing it; the agent, not the caller, fills the binding's
stream parameter it stands for."""

SSTR_MAX = 255
"""QMF's short string limit."""


class TypeCheckError(ValueError):
    """A value does not fit a schema type."""


def _is_object_id(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("_object_name"), str)


def check(type_name: str, value: Any) -> None:
    """Raise TypeCheckError unless ``value`` is a valid wire value of ``type_name``."""
    if type_name in _INT_RANGES:
        lo, hi = _INT_RANGES[type_name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeCheckError(f"expected {type_name}, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise TypeCheckError(f"{value} is out of range for {type_name}")
        return
    expected: Dict[str, Callable[[Any], bool]] = {
        "sstr": lambda v: isinstance(v, str) and len(v.encode()) <= SSTR_MAX,
        "lstr": lambda v: isinstance(v, str),
        "uuid": lambda v: isinstance(v, str) and len(v) == 36,
        "bool": lambda v: isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "map": lambda v: isinstance(v, Mapping),
        "list": lambda v: isinstance(v, (list, tuple)),
        "objId": _is_object_id,
        "binary": lambda v: isinstance(v, (bytes, bytearray)),
        "stream": lambda v: isinstance(v, Mapping),
    }
    test = expected.get(type_name)
    if test is None:
        raise TypeCheckError(f"unknown type {type_name}")
    if not test(value):
        raise TypeCheckError(f"expected {type_name}, got {type(value).__name__}")


_BOOL_TEXT = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}


def parse_text(type_name: str, text: str) -> Any:
    """Turn command-line text into a value of ``type_name`` (used by the CLI)."""
    try:
        if type_name in _INT_RANGES:
            value: Any = int(text, 0)
        elif type_name == "bool":
            value = _BOOL_TEXT[text.lower()]
        elif type_name in ("float", "double"):
            value = float(text)
        elif type_name in ("map", "list"):
            value = json.loads(text)
        elif type_name == "objId":
            value = {"_object_name": text}
        else:
            value = text
    except (ValueError, KeyError) as exc:
        raise TypeCheckError(f"{text!r} is not a valid {type_name}") from exc
    check(type_name, value)
    return value
