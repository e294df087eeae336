"""A bare AMQP 1.0 client for tests that must put exactly what they want on the wire.

The console validates and encodes everything itself, so malformed or unusual requests
(an unknown method, a body of the wrong type, no reply-to …) are sent with this client
instead: a proton BlockingConnection to the agent's listener, a dynamic receiver for
replies and a sender to ``qmf.default.direct/<agent>``.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Dict, List, Mapping, Optional

from proton import Endpoint, Timeout
from proton import Message as ProtonMessage
from proton.utils import BlockingConnection

from virtq.agent import Agent
from virtq.schema.codec import (Message, MethodRequest, ObjectId, WireMessage, decode,
                                direct_address)
from virtq.testing import agent_url
from virtq.transport._convert import from_proton, to_proton

_NOT_GIVEN: Any = object()


class _Encoded(ProtonMessage):
    """A message whose encoding is given: raw bytes, sent as proton sends a Message."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def encode(self) -> bytes:
        return self.data


class RawClient:
    """One connection to one agent; use as a context manager."""

    def __init__(self, agent: Agent, timeout: float = 5.0) -> None:
        self.agent_name = agent.name
        self.address = direct_address(agent.name)
        self.timeout = timeout
        self.conn = BlockingConnection(agent_url(agent), timeout=timeout)
        self.receiver = self.conn.create_receiver(None, dynamic=True, credit=16)
        self.reply_to = str(self.receiver.link.remote_source.address)
        self.sender = self.conn.create_sender(self.address)
        self._ids = itertools.count(1)
        self._stash: List[ProtonMessage] = []

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close cleanly; if the agent does not answer the close (it died), give up instead of hanging."""
        connection = self.conn.conn
        assert connection is not None
        connection.close()
        try:
            self.conn.wait(lambda: not connection.state & Endpoint.REMOTE_ACTIVE, timeout=self.timeout,
                           msg="closing the connection")
        except Timeout:
            self.conn.container.stop()  # BlockingConnection.close() would wait for ever
            while self.conn.container.process():
                pass
            return
        self.conn.close()

    def next_cid(self) -> str:
        return f"raw-{next(self._ids)}"

    # --- building ------------------------------------------------------------------------------

    def wire(self, message: Message, *, with_reply: bool = True) -> WireMessage:
        """A well-formed request to this agent: a fresh correlation id and (optionally) our reply-to."""
        return dataclasses.replace(message, correlation_id=self.next_cid(),
                                   reply_to=self.reply_to if with_reply else None).encode(self.address)

    def method_wire(self, object_name: str, method_name: str, arguments: Optional[Mapping[str, Any]] = None,
                    *, agent_name: Optional[str] = None, with_reply: bool = True) -> WireMessage:
        target = ObjectId(object_name, self.agent_name if agent_name is None else agent_name)
        return self.wire(MethodRequest(object_id=target, method_name=method_name, arguments=dict(arguments or {})),
                         with_reply=with_reply)

    # --- sending and receiving ---------------------------------------------------------------------

    def send_wire(self, wire: WireMessage) -> None:
        self.sender.send(to_proton(wire))

    def send(self, body: Any, properties: Optional[Dict[str, Any]] = None, *, reply_to: Any = _NOT_GIVEN,
             correlation_id: Optional[str] = None) -> str:
        """Send anything; returns the correlation id used (reply_to defaults to ours)."""
        cid = correlation_id or self.next_cid()
        message = ProtonMessage(body=body, properties=properties, address=self.address, correlation_id=cid,
                                reply_to=self.reply_to if reply_to is _NOT_GIVEN else reply_to)
        self.sender.send(message)
        return cid

    def send_bytes(self, data: bytes) -> None:
        """Send an already encoded AMQP message (for content proton would refuse to encode)."""
        self.sender.send(_Encoded(data))

    def receive(self, timeout: Optional[float] = None) -> Optional[ProtonMessage]:
        """The next reply, or None when nothing arrives within ``timeout``."""
        if self._stash:
            return self._stash.pop(0)
        try:
            message = self.receiver.receive(timeout=self.timeout if timeout is None else timeout)
        except Timeout:
            return None
        self.receiver.accept()
        return message

    def reply_for(self, cid: Optional[str], timeout: Optional[float] = None) -> Message:
        """The decoded reply carrying ``cid`` (other replies are kept for later); AssertionError if none."""
        for i, message in enumerate(self._stash):
            if str(message.correlation_id) == cid:
                return decode(from_proton(self._stash.pop(i), self.reply_to))
        while True:
            try:
                message = self.receiver.receive(timeout=self.timeout if timeout is None else timeout)
            except Timeout:
                raise AssertionError(f"no reply for {cid} within {timeout or self.timeout}s") from None
            self.receiver.accept()
            if str(message.correlation_id) == cid:
                return decode(from_proton(message, self.reply_to))
            self._stash.append(message)

    def request(self, wire: WireMessage, timeout: Optional[float] = None) -> Message:
        """Send a request and return its decoded reply."""
        self.send_wire(wire)
        return self.reply_for(wire.correlation_id, timeout)
