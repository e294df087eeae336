"""libvirt's enum constants by name (``VIR_DOMAIN_XML_SECURE`` -> 2), read from ``constants.json``, which the
schema generator writes from libvirt-api.xml: the console names flags and enum values without importing
libvirt."""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = ["ConstantError", "constants", "enum_names", "enum_value_name", "parse_flags", "suggest"]

CONSTANTS_JSON = Path(__file__).with_name("constants.json")


class ConstantError(ValueError):
    """A name that is no libvirt constant; the message suggests the closest ones."""


@functools.lru_cache(maxsize=1)
def _document() -> Mapping[str, Mapping[str, object]]:
    data: Mapping[str, Mapping[str, object]] = json.loads(CONSTANTS_JSON.read_text(encoding="utf-8"))
    return data


def constants() -> Dict[str, int]:
    """Every constant of libvirt's enums (aliases included) by name."""
    return {name: int(str(value)) for name, value in _document()["constants"].items()}


def enum_names(enum: str) -> Tuple[str, ...]:
    """The constants of one libvirt enum type (``virDomainState``), by value; () for an unknown type."""
    names = _document()["enums"].get(enum, [])
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def enum_value_name(enum: str, value: int) -> Optional[str]:
    """The name of ``value`` in a libvirt enum (``virStoragePoolState``, 2 -> 'VIR_STORAGE_POOL_RUNNING')."""
    table = constants()
    return next((n for n in enum_names(enum) if table.get(n) == value and not n.endswith("_LAST")), None)


def suggest(word: str, choices: List[str], count: int = 3) -> str:
    """'; did you mean X or Y?' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(word, choices, n=count, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def parse_flags(text: str) -> int:
    """``VIR_A|VIR_B|4`` (names or numbers, OR-ed) as an int; ConstantError naming an unknown name."""
    table = constants()
    value = 0
    for part in (p.strip() for p in text.split("|")):
        try:
            value |= int(part, 0)
            continue
        except ValueError:
            pass
        if part.upper() not in table:
            raise ConstantError(f"{part!r} is no libvirt constant{suggest(part.upper(), list(table))}")
        value |= table[part.upper()]
    return value
