"""WireMessage <-> proton.Message, the only place the two meet."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

from cproton import PN_OVERFLOW, pn_message_encode
from proton import Message, ulong

from virtq.schema.codec import WireMessage


INT64_MAX = 2**63 - 1


def _amqp(value: Any) -> Any:
    """Python ints are sent as AMQP long (int64); larger ones (uint64 values) as ulong."""
    if isinstance(value, int) and not isinstance(value, bool) and value > INT64_MAX:
        return ulong(value)
    if isinstance(value, dict):
        return {k: _amqp(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_amqp(v) for v in value]
    return value


def owned(value: Any) -> Any:
    """Binary values as bytes: proton hands out memoryviews of a buffer it reuses for the next message."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {owned(k): owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [owned(v) for v in value]
    if isinstance(value, tuple):
        return tuple(owned(v) for v in value)
    return value


def to_proton(wire: WireMessage, user_id: Optional[str] = None) -> Message:
    """``user_id``: the user this connection authenticated as; a broker that validates it (RabbitMQ
    does) lets the receiver trust it as the sender's identity."""
    message = Message(body=_amqp(wire.body), address=wire.address, subject=wire.subject or None,
                      properties=dict(wire.properties), correlation_id=wire.correlation_id,
                      reply_to=wire.reply_to)
    if user_id:
        message.user_id = user_id.encode()
    return message



def encoded_size(wire: WireMessage) -> int:
    """A message's AMQP-encoded size (header, properties, application properties, body), as it goes on the wire
    without transfer framing: what the benchmarks count as message bytes."""
    return len(encode(wire))


ENCODE_START = 4096
"""The first buffer size a message is encoded into (a binary body's length is added)."""
SPLICE_BYTES = 64 * 1024
"""A binary body at least this large is spliced onto the encoding of the rest (``encode``)."""
EMPTY_BINARY_BODY = b"\x00\x53\x77\xa0\x00"
"""The end of a message whose body is an empty binary: an amqp-value section (descriptor 0x77), vbin8 of length 0."""


def encode(wire: WireMessage, user_id: Optional[str] = None) -> bytes:
    """The message's AMQP encoding. A large binary body (a stream's chunk) is not given to proton: the message is
    encoded with an empty one, whose vbin8 is then replaced by the body as a vbin32 — one copy of the body where
    proton makes three (into its data tree, into the encoding buffer, out of it): 1.4 -> 0.4 ms per MiB."""
    body = wire.body
    if isinstance(body, (bytes, bytearray, memoryview)) and len(body) >= SPLICE_BYTES:
        rest = _encoded(dataclasses.replace(wire, body=b""), user_id)
        if rest.endswith(EMPTY_BINARY_BODY):  # the body section is the last one (virtq sends no footer)
            return b"".join((rest[:-2], b"\xb0", len(body).to_bytes(4, "big"), body))
    return _encoded(wire, user_id)


def _encoded(wire: WireMessage, user_id: Optional[str]) -> bytes:
    """proton's ``Message.encode``, which tries a 16-byte buffer first and doubles it until the message fits (eight
    tries for a 1 KB message): here the first try is sized to hold it, doubled only if it does not."""
    message = to_proton(wire, user_id)
    message._pre_encode()
    size = ENCODE_START + (len(wire.body) if isinstance(wire.body, (bytes, bytearray, memoryview)) else 0)
    while True:
        err, data = pn_message_encode(message._msg, size)
        if err != PN_OVERFLOW:
            break
        size *= 2
    if err < 0:
        message._check(err)  # raises proton's MessageException, as Message.encode would
    return bytes(data)


_SIZE_WIDTHS = {0x45: 0, 0xc0: 1, 0xc1: 1, 0xd0: 4, 0xd1: 4}
"""A section value's constructor -> the width of its size field: the list0, list8/map8 and list32/map32 encodings
that the sections before a body use (the size counts the bytes after it)."""
AMQP_VALUE, VBIN32 = 0x77, 0xb0


def decode(data: Union[bytes, bytearray], message: Optional[Message] = None) -> Message:
    """A received message's AMQP encoding, into ``message`` (what proton could read of it stays there when it
    raises). The inverse of ``encode``'s splice: a large binary body that ends the message is cut out and only
    the sections before it go through proton, which would copy the body three times (into its data tree, out as
    a memoryview, and ``owned``'s copy)."""
    message = Message() if message is None else message
    start = _binary_body_at(data) if len(data) >= SPLICE_BYTES else None
    if start is None:
        message.decode(data)  # type: ignore[arg-type]  # proton takes any buffer (ffi.from_buffer)
    else:
        view = memoryview(data)
        message.decode(bytes(view[:start]) + EMPTY_BINARY_BODY)
        message.body = bytes(view[start + 8:])
    return message


def _binary_body_at(data: Union[bytes, bytearray]) -> Optional[int]:
    """Where the body section starts when it is an amqp-value vbin32 that runs to the end; None otherwise (proton
    decodes such a message whole)."""
    at = 0
    while at + 4 <= len(data) and data[at] == 0x00 and data[at + 1] == 0x53:
        code, constructor = data[at + 2], data[at + 3]
        if code == AMQP_VALUE:
            if constructor == VBIN32 and at + 8 <= len(data) \
                    and at + 8 + int.from_bytes(data[at + 4:at + 8], "big") == len(data):
                return at
            return None
        if code > 0x74 or constructor not in _SIZE_WIDTHS:  # another body kind or an encoding not skipped here
            return None
        width = _SIZE_WIDTHS[constructor]
        size = int.from_bytes(data[at + 4:at + 4 + width], "big") if width else 0
        at += 4 + width + size
    return None


def user_id_of(message: Message) -> Optional[str]:
    """The message's user-id as text; None when absent (anonymous) or not UTF-8."""
    raw = message.user_id
    if not raw:
        return None
    try:
        return bytes(raw).decode() if not isinstance(raw, str) else raw
    except UnicodeDecodeError:
        return None


def from_proton(message: Message, link_address: Optional[str], size: int = 0,
                principal: Optional[str] = None) -> WireMessage:
    """A received message; its address is the message's own or, failing that, the link's target.
    ``principal`` is who the transport says sent it (never taken from the message here)."""
    properties: Any = message.properties or {}
    cid = message.correlation_id
    return WireMessage(
        address=message.address or link_address or "",
        properties=owned(properties) if isinstance(properties, dict) else {},
        body=owned(message.body),
        subject=message.subject or "",
        correlation_id=None if cid is None else str(cid),
        reply_to=message.reply_to or None,
        size=size,
        principal=principal,
    )


def roundtrip(wire: WireMessage) -> WireMessage:
    """Encode and decode through AMQP, as the wire would (the memory transport uses this)."""
    data = encode(wire)
    return from_proton(decode(data), wire.address, len(data))
