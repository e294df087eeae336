"""WireMessage <-> proton.Message, the only place the two meet."""

from __future__ import annotations

from typing import Any, Optional

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


def encode(wire: WireMessage, user_id: Optional[str] = None) -> bytes:
    """The message's AMQP encoding. proton's ``Message.encode`` tries a 16-byte buffer first and doubles it until
    the message fits: eight tries for a 1 KB message, eighteen and 4 MiB of zeroed buffers for a 1 MiB one. Here
    the first try is sized to hold it (ENCODE_START, plus a binary body's length), doubled only if it does not."""
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
    message = Message()
    message.decode(data)
    return from_proton(message, wire.address, len(data))
