"""WireMessage <-> proton: what the receiving side keeps must not change when proton decodes the next message."""

from __future__ import annotations

import uuid

from proton import Message

from virtq.schema.codec import WireMessage
from virtq.transport._convert import from_proton, to_proton


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
