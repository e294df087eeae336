"""WireMessage <-> proton: what the receiving side keeps must not change when proton decodes the next message."""

from __future__ import annotations

import os
import uuid

import pytest
from proton import Message

from virtq.schema.codec import WireMessage
from virtq.transport._convert import SPLICE_BYTES, decode, encode, from_proton, roundtrip, to_proton


def _received(message: Message, wire: WireMessage) -> WireMessage:
    message.decode(to_proton(wire).encode())
    return from_proton(message, wire.address)


def test_binary_values_are_copied_out_of_protons_buffer() -> None:
    first, second = uuid.uuid4().bytes, uuid.uuid4().bytes
    receiver = Message()  # proton reuses its decode buffer: memoryviews into it go stale
    kept = _received(receiver, WireMessage(address="a", body={"_keys": [first]}, properties={"p": first}))
    _received(receiver, WireMessage(address="a", body={"_keys": [second]}, properties={"p": second}))
    assert kept.body == {"_keys": [first]}
    assert kept.properties == {"p": first}
    assert isinstance(kept.body["_keys"][0], bytes)


@pytest.mark.parametrize("body", [
    {"_what": "OBJECT", "n": 1},  # fits the first buffer
    {"text": "x" * 20_000, "list": list(range(3_000))},  # a map past ENCODE_START: the buffer doubles
    os.urandom(3 * 1024 * 1024 + 7),  # a binary body: spliced onto the rest's encoding
    os.urandom(SPLICE_BYTES), os.urandom(SPLICE_BYTES - 1), bytearray(SPLICE_BYTES + 1),  # either side of it
    b"", b"x" * 255, b"x" * 256,  # proton's vbin8 and vbin32
])
def test_the_sized_encoding_is_protons_own(body: object) -> None:
    wire = WireMessage(address="agent", properties={"qmf.opcode": "_x", "n": 2**40}, body=body,
                       subject="s", correlation_id="c1", reply_to="r")
    assert encode(wire) == bytes(to_proton(wire).encode())
    assert encode(wire, "ops") == bytes(to_proton(wire, "ops").encode())
    assert roundtrip(wire) == wire
    protons = to_proton(wire, "ops")
    protons.durable, protons.annotations = True, {"x-opt-route": "r"}  # a header and message annotations first
    encoded = bytes(protons.encode())
    whole = Message()
    whole.decode(encoded)
    assert from_proton(decode(encoded), "a", 1) == from_proton(whole, "a", 1)
    assert decode(encoded).annotations == {"x-opt-route": "r"} and decode(encoded).durable


@pytest.mark.parametrize("cut", [1, 100, SPLICE_BYTES // 2])
def test_a_truncated_large_message_is_read_as_proton_reads_it(cut: int) -> None:
    """The body's length no longer matches: the splice is not taken (proton reads no body then)."""
    encoded = encode(WireMessage(address="agent", properties={"n": 1}, body=os.urandom(SPLICE_BYTES * 2)))[:-cut]
    whole = Message()
    whole.decode(encoded)
    assert from_proton(decode(encoded), "a") == from_proton(whole, "a")
    assert whole.body is None
