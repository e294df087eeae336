"""Transports for tests that need no sockets: the in-memory bus, and a transport that only records.

``MemoryBus`` (from :mod:`virtq.transport`) connects agents and consoles of one process; every
message goes through proton's AMQP codec, so what passes there is what the wire accepts.
``RecordingTransport`` carries nothing: a test hands a console its input and reads what it sent.
"""

from __future__ import annotations

import threading
from typing import List, Optional, Type, TypeVar

from virtq.schema.codec import Message, WireMessage, decode
from virtq.transport import Deliver, MemoryBus, MemoryTransport, StateListener, Transport

__all__ = ["MemoryBus", "MemoryTransport", "RecordingTransport"]

M = TypeVar("M", bound=Message)


class RecordingTransport(Transport):
    """Records what is sent through it and never delivers anything; always connected.

    ``sent`` holds the messages in order; read it under ``lock`` while another thread may send."""

    def __init__(self, reply_address: str = "replies") -> None:
        self.sent: List[WireMessage] = []
        self.lock = threading.Lock()
        self._reply_address = reply_address

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        pass

    def send(self, message: WireMessage) -> None:
        with self.lock:
            self.sent.append(message)

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def messages(self, kind: Type[M]) -> List[M]:
        """The sent messages that decode to ``kind`` (e.g. QueryRequest), in order."""
        with self.lock:
            wires = list(self.sent)
        return [m for m in (decode(w) for w in wires) if isinstance(m, kind)]

    @property
    def reply_address(self) -> str:
        return self._reply_address

    @property
    def connected(self) -> bool:
        return True
