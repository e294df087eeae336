"""An in-memory transport for unit tests: no sockets, but every message goes through AMQP encoding.

Like oslo.messaging's fake driver, it round-trips each message through the real encoder,
so a test cannot pass with a message the wire would reject. Delivery happens on one bus
thread, as a reactor would do it.

Consoles reach the agents on the bus as a direct connection reaches an agent's listener: a console
transport starts only while an agent transport runs (NotConnectedError otherwise); when the last
agent transport stops, every console is told ``False`` and refuses to send, and when an agent
transport starts again they are told ``True`` (proton's connection, reconnecting to a restarted
listener). Those state changes travel on the bus thread after the messages sent before them.
"""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

from virtq.schema.codec import DIRECT, TOPIC, WireMessage
from virtq.schema.errors import NotConnectedError

from ._convert import roundtrip
from .base import Deliver, StateListener, Transport, topic_matches
from .profiles import INDICATION_BINDING, QmfProfile

INDICATIONS = QmfProfile().topic_source(INDICATION_BINDING)
"""What a console transport subscribes to by default: every indication, as in direct mode."""


@dataclass(frozen=True)
class _Reach:
    """A change of whether consoles reach an agent: ``up`` from the ``generation``-th change on."""

    up: bool
    generation: int


_Item = Union[Tuple["MemoryTransport", WireMessage], _Reach, None]
"""What the bus thread handles, in order: a message to route, a change of reach, or None (the bus closes)."""


class MemoryBus:
    """Routes like the direct listener: direct and topic addresses to agents, reply addresses to consoles."""

    def __init__(self) -> None:
        self._agents: List["MemoryTransport"] = []
        self._consoles: List["MemoryTransport"] = []
        self._queue: "queue.Queue[_Item]" = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._generation = 0
        """How many times consoles gained or lost their agents; a console linked at generation g ignores
        the changes up to g (it started after them)."""
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

    # What transports report, on their user's thread --------------------------------------------------

    def started(self, transport: "MemoryTransport") -> None:
        """An agent transport starts (consoles are told if it is the only one); a console's links to the
        agents, or raises NotConnectedError when none runs."""
        with self._lock:
            if transport.is_agent:
                self._change_running(transport, True)
            elif not self._listening():
                raise NotConnectedError("no agent transport runs on the memory bus")
            else:
                transport.linked_at = self._generation
                transport.running = True

    def stopped(self, transport: "MemoryTransport") -> None:
        """A transport stops; when it is the last agent transport, consoles are told."""
        with self._lock:
            self._change_running(transport, False)

    def _change_running(self, transport: "MemoryTransport", running: bool) -> None:
        listening = self._listening()
        transport.running = running
        if listening != self._listening():
            self._generation += 1
            self._queue.put(_Reach(running, self._generation))

    def _listening(self) -> bool:
        return any(agent.running for agent in self._agents)

    # The bus thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Reach):
                self._tell_consoles(item)
                continue
            sender, wire = item
            for target in self._route(sender, wire):
                target.deliver(wire)

    def _tell_consoles(self, change: _Reach) -> None:
        for console in list(self._consoles):
            if console.running and console.linked_at < change.generation:
                console.linked_at = change.generation
                console.link(change.up)

    def _route(self, sender: "MemoryTransport", wire: WireMessage) -> List["MemoryTransport"]:
        if sender in self._consoles:
            if wire.address.startswith(DIRECT) or wire.address.startswith(TOPIC):
                return [a for a in self._agents if a.running]
            return []
        if wire.address.startswith(TOPIC):
            return [c for c in self._consoles
                    if c.connected and topic_matches(c.subscribe_to[len(TOPIC) + 1:] or "#", wire.subject)]
        return [c for c in self._consoles if c.connected and c.reply_address == wire.address]


class MemoryTransport(Transport):
    """One agent's or console's end of a :class:`MemoryBus` (an agent's has no reply address)."""

    def __init__(self, bus: MemoryBus, reply_address: str, subscribe_to: str = INDICATIONS) -> None:
        self._bus = bus
        self._reply_address = reply_address
        self.subscribe_to = subscribe_to
        self._on_state: Optional[StateListener] = None
        self.running = False
        self.linked = True
        """A console's: whether an agent transport runs for it to reach (an agent's is always)."""
        self.linked_at = 0
        self.lossy = False
        """Accept sends and drop them, as a connection does in the moments before its loss is noticed."""

    @property
    def is_agent(self) -> bool:
        return not self._reply_address

    @property
    def exposed(self) -> bool:
        return False  # one process: nothing outside can reach it

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        self._consumer = deliver
        self._on_state = on_state
        self.linked = True
        self._bus.started(self)
        if on_state is not None:
            on_state(True)

    def link(self, up: bool) -> None:
        """A console's agents went away (False) or one is back (True): told as proton's connection tells it."""
        if up != self.linked:
            self.linked = up
            if self._on_state is not None:
                self._on_state(up)

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
        if not self.linked:
            raise NotConnectedError("no agent transport runs on the memory bus (the last one stopped)")
        if not self.lossy:
            self._bus.post(self, message)

    def stop(self, timeout: float = 5.0) -> None:
        if self.running:
            self._bus.stopped(self)

    @property
    def reply_address(self) -> str:
        return self._reply_address

    @property
    def connected(self) -> bool:
        return self.running and self.linked
