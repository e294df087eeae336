"""The ``packed-1`` layout of pushed statistics: object keys and columns as AMQP binaries.

A statistics batch is a column store, so it travels as one: all the keys in one binary and each
column in one binary of fixed-width little-endian integers, so that proton moves a batch in a
handful of calls and this module unpacks it with ``array`` and ``bytes`` operations on whole
columns — no Python call per value. docs/PROTOCOL.md (section 10) shows the bytes.

Keys: one byte naming their form, then the keys — ``KEYS_UUID``: 16 bytes per key (the uuid's
bytes); ``KEYS_TEXT``: the keys in UTF-8 separated by NUL (no key holds a NUL: libvirt's are C
strings).

A column: a header byte (bits 0-3 the value width in bytes, 1, 2, 4 or 8; ``PRESENCE`` when a
presence bitmap follows; ``SIGNED`` when values are two's complement; bits 6-7 zero), the bitmap
(one bit per row, row i in bit i % 8 of byte i // 8, set when the row has a value: absent rows are
values that did not change), then the values of the present rows.

Encoders raise ValueError for what cannot be packed (a value beyond 64 bits, a key that is no uuid
or holds a NUL); decoders raise ProtocolError for anything malformed, and nothing else.
"""

from __future__ import annotations

import re
import sys
import uuid
from array import array
from typing import Any, Dict, Optional, Sequence, Tuple

from .errors import ProtocolError

LAYOUT = "packed-1"

KEYS_UUID = 0x01
KEYS_TEXT = 0x02

WIDTH_MASK = 0x0F
PRESENCE = 0x10
SIGNED = 0x20
RESERVED = 0xC0

_BIG_ENDIAN_HOST = sys.byteorder == "big"
_WIDTHS = (1, 2, 4, 8)


def _typecode(width: int, signed: bool) -> str:
    """The array typecode of that width on this platform ('l'/'i' differ between platforms)."""
    codes = "bhilq" if signed else "BHILQ"
    return next(c for c in codes if array(c).itemsize == width)


_TYPECODES: Dict[Tuple[int, bool], str] = {(w, s): _typecode(w, s) for w in _WIDTHS for s in (False, True)}

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUIDS_SPACED = re.compile(f"(?:{_UUID}(?: {_UUID})*)?")
"""Keys in the 8-4-4-4-12 form, joined by spaces (which bytes.fromhex skips)."""
_UUID_TEXT = b"........-XXX....-XXX....-XXX....-XXX............,XXX"
"""A uuid's text and a comma in 13 units of 4 bytes: its 8 groups of 4 hex digits go where the dots are
(``_UUID_MOVES``: text unit <- digits unit), and the X only align the units: they are dropped."""
_UUID_MOVES = ((0, 0), (1, 1), (3, 2), (5, 3), (7, 4), (9, 5), (10, 6), (11, 7))


# --- keys -------------------------------------------------------------------------------------

def pack_keys(keys: Sequence[str], uuid_keyed: bool) -> bytes:
    if not uuid_keyed:
        text = "\0".join(keys)
        if text.count("\0") != max(len(keys) - 1, 0):
            raise ValueError("a statistics key holds a NUL")
        return bytes((KEYS_TEXT,)) + text.encode("utf-8")
    spaced = " ".join(keys)
    if _UUIDS_SPACED.fullmatch(spaced):
        return bytes((KEYS_UUID,)) + bytes.fromhex(spaced.replace("-", ""))
    return bytes((KEYS_UUID,)) + b"".join(uuid.UUID(k).bytes for k in keys)  # braces, urn: … (ValueError)


def unpack_keys(raw: Any, count: int) -> Tuple[str, ...]:
    data = _binary(raw, "_keys")
    if not data:
        raise ProtocolError("stats: _keys is empty (it starts with a byte naming the key form)")
    form, body = data[0], data[1:]
    if form == KEYS_UUID:
        if len(body) != 16 * count:
            raise ProtocolError(f"stats: _keys holds {len(body)} bytes of uuids for {count} rows (16 each)")
        return _uuid_texts(body, count)
    if form == KEYS_TEXT:
        try:
            keys = tuple(body.decode("utf-8").split("\0")) if body or count else ()
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"stats: _keys is not UTF-8: {exc}") from None
        if len(keys) != count:
            raise ProtocolError(f"stats: _keys holds {len(keys)} keys for {count} rows")
        return keys
    raise ProtocolError(f"stats: unknown key form {form:#04x} in _keys")


def _uuid_texts(body: bytes, count: int) -> Tuple[str, ...]:
    """The uuids' text forms, made by a few strided copies over the whole batch, not a call per key."""
    if not count:
        return ()
    unit = _TYPECODES[4, False]
    digits = array(unit, body.hex().encode("ascii"))
    text = array(unit, _UUID_TEXT) * count
    for to, source in _UUID_MOVES:
        text[to::13] = digits[source::8]
    return tuple(text.tobytes().translate(None, b"X").decode("ascii")[:-1].split(","))


# --- columns ----------------------------------------------------------------------------------

def _width(low: int, high: int, signed: bool) -> int:
    for width in _WIDTHS:
        bits = 8 * width - signed
        if (-(1 << bits) if signed else 0) <= low and high < (1 << bits):
            return width
    raise ValueError(f"statistics values {low}..{high} do not fit in 64 bits")


def pack_column(values: Sequence[Optional[int]]) -> bytes:
    """One column: the smallest width its present values fit, a bitmap when some rows are absent."""
    present = [v for v in values if v is not None]
    low, high = (min(present), max(present)) if present else (0, 0)
    signed = low < 0
    width = _width(low, high, signed)
    header = width | (SIGNED if signed else 0)
    bitmap = b""
    if len(present) < len(values):
        header |= PRESENCE
        bits = "".join("0" if v is None else "1" for v in reversed(values))
        bitmap = int(bits, 2).to_bytes((len(values) + 7) // 8, "little")
    packed = array(_TYPECODES[width, signed], present)
    if _BIG_ENDIAN_HOST:
        packed.byteswap()
    return bytes((header,)) + bitmap + packed.tobytes()


def unpack_column(raw: Any, count: int, name: str) -> Sequence[Optional[int]]:
    data = _binary(raw, f"column {name!r}")
    if not data:
        raise ProtocolError(f"stats: column {name!r} is empty (it starts with a header byte)")
    header, width = data[0], data[0] & WIDTH_MASK
    if header & RESERVED or width not in _WIDTHS:
        raise ProtocolError(f"stats: column {name!r} has header {header:#04x}: width must be 1, 2, 4 or 8, "
                            "bits 6-7 zero")
    start, mask, present = 1, 0, count
    if header & PRESENCE:
        start += (count + 7) // 8
        if len(data) < start:
            raise ProtocolError(f"stats: column {name!r} ends inside its presence bitmap ({count} rows)")
        mask = int.from_bytes(data[1:start], "little")
        if mask >> count:
            raise ProtocolError(f"stats: column {name!r} marks rows past the last of {count} as present")
        present = mask.bit_count()
    if len(data) - start != present * width:
        raise ProtocolError(f"stats: column {name!r} holds {len(data) - start} bytes for {present} values "
                            f"of {width} bytes")
    values = array(_TYPECODES[width, bool(header & SIGNED)], data[start:])
    if _BIG_ENDIAN_HOST:
        values.byteswap()
    if present == count:
        return values.tolist()
    following = iter(values.tolist()).__next__
    return [following() if bit == "1" else None for bit in f"{mask:0{count}b}"[::-1]]


def _binary(raw: Any, what: str) -> bytes:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"stats: {what} must be an AMQP binary, not {type(raw).__name__}")
    return bytes(raw)
