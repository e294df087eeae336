"""An in-memory transport for unit tests: no sockets, but every message goes through AMQP encoding.

Like oslo.messaging's fake driver, it round-trips each message through the real encoder,
so a test cannot pass with a message the wire would reject. Delivery happens on one bus
thread, as a reactor would do it.
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import List, Optional, Tuple

from virtq.schema.codec import DIRECT, TOPIC, WireMessage
from virtq.schema.errors import NotConnectedError

from ._convert import roundtrip
from .base import Deliver, StateListener, Transport, topic_matches
from .profiles import INDICATION_BINDING, QmfProfile

INDICATIONS = QmfProfile().topic_source(INDICATION_BINDING)
"""What a console transport subscribes to by default: every indication, as in direct mode."""


class MemoryBus:
    """Routes like the direct listener: direct and topic addresses to agents, reply addresses to consoles."""

    def __init__(self) -> None:
        self._agents: List["MemoryTransport"] = []
        self._consoles: List["MemoryTransport"] = []
        self._queue: "queue.Queue[Optional[Tuple[MemoryTransport, WireMessage]]]" = queue.Queue()
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._run, name="virtq-memory-bus", daemon=True)
        self._thread.start()

    def agent_transport(self) -> "MemoryTransport":
        transport = MemoryTransport(self, "")
        self._agents.append(transport)
        return transport

    def console_transport(self, subscribe_to: str = INDICATIONS) -> "MemoryTransport":
        transport = MemoryTransport(self, f"memory-reply-{next(self._ids)}", subscribe_to)
        self._consoles.append(transport)
        return transport

    def post(self, sender: "MemoryTransport", wire: WireMessage) -> None:
        self._queue.put((sender, roundtrip(wire)))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            sender, wire = item
            for target in self._route(sender, wire):
                target._deliver(wire)

    def _route(self, sender: "MemoryTransport", wire: WireMessage) -> List["MemoryTransport"]:
        if sender in self._consoles:
            if wire.address.startswith(DIRECT) or wire.address.startswith(TOPIC):
                return [a for a in self._agents if a.running]
            return []
        if wire.address.startswith(TOPIC):
            return [c for c in self._consoles
                    if c.running and topic_matches(c.subscribe_to[len(TOPIC) + 1:] or "#", wire.subject)]
        return [c for c in self._consoles if c.running and c.reply_address == wire.address]


class MemoryTransport(Transport):
    def __init__(self, bus: MemoryBus, reply_address: str, subscribe_to: str = INDICATIONS) -> None:
        self._bus = bus
        self._reply_address = reply_address
        self.subscribe_to = subscribe_to
        self._deliver_fn: Optional[Deliver] = None
        self._on_state: Optional[StateListener] = None
        self.running = False
        self.lossy = False
        """Accept sends and drop them, as a connection does in the moments before its loss is noticed."""

    @property
    def exposed(self) -> bool:
        return False  # one process: nothing outside can reach it

    def _deliver(self, wire: WireMessage) -> None:
        if self._deliver_fn is not None:
            self._deliver_fn(wire)

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        self._deliver_fn = deliver
        self._on_state = on_state
        self.running = True
        if on_state is not None:
            on_state(True)

    def reconnect(self) -> None:
        """The connection is lost (its user is told) and comes back at once; lossy no more."""
        self.running, self.lossy = False, False
        if self._on_state is not None:
            self._on_state(False)
        self.running = True
        if self._on_state is not None:
            self._on_state(True)

    def send(self, message: WireMessage) -> None:
        if not self.running:
            raise NotConnectedError("memory transport is stopped")
        if not self.lossy:
            self._bus.post(self, message)

    def stop(self, timeout: float = 5.0) -> None:
        self.running = False

    @property
    def reply_address(self) -> str:
        return self._reply_address

    @property
    def connected(self) -> bool:
        return self.running
