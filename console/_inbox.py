"""The console's inbox: what transports received, waiting for the ingest thread — bounded in bytes.

A peer that sends faster than the console applies would otherwise grow it without bound. When it is
full, a transport's delivery waits (its reactor stops reading, so the peer meets TCP back-pressure) until
the ingest thread has caught up; the console's own items (markers, the end of a resync, the stop) never
wait.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Deque, Generic, Optional, Tuple, TypeVar, Union

from virtq.schema.codec import WireMessage
from virtq.transport import Transport

__all__ = ["MIN_COST", "Delivery", "Inbox", "Step"]

T = TypeVar("T")

Step = Callable[[], None]
"""Console work the ingest thread runs in arrival order with what was received (the end of a resync,
a marker that says everything before it was applied)."""
Delivery = Optional[Tuple[str, Optional[Transport], Union[WireMessage, Step]]]
"""What the console's inbox holds: (URL, connection, a received message or a step); None stops ingest."""

MIN_COST = 512
"""Bytes a message counts for at least (a transport that does not know its size says 0)."""


class Inbox(Generic[T]):
    """A FIFO bounded in bytes: put() waits for room, the ingest thread's get() makes it. Items are applied one
    at a time, in order, by the consumer or, in a turn when nothing waits, by a transport's thread."""

    def __init__(self, limit: int, on_full: Callable[[int], None] = lambda held: None) -> None:
        self.limit = limit
        self._on_full = on_full  # told (with the bytes held) each time a delivery has to wait
        self._items: Deque[Tuple[T, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._putters = 0  # deliveries waiting for room
        self._in_hand = False  # the consumer is applying the item it got
        self._turn = False  # a transport's thread is applying an item itself (take_turn)
        self.waits = 0
        """Deliveries that had to wait for room."""

    def put(self, item: T, size: int = 0, wait: bool = True) -> None:
        """Queue ``item``; with ``wait``, first wait while the inbox holds ``limit`` bytes or more."""
        cost = max(size, MIN_COST) if wait else 0
        with self._cond:
            full = wait and self._bytes >= self.limit and not self._closed
            if not full:  # the common case: one lock, and a wake-up only for a consumer that waits
                self._append(item, cost)
                return
            held = self._bytes
        self.waits += 1
        self._on_full(held)  # outside the lock: it tells subscribers
        with self._cond:
            self._putters += 1
            try:
                self._cond.wait_for(lambda: self._bytes < self.limit or self._closed)
            finally:
                self._putters -= 1
            self._append(item, cost)

    def _append(self, item: T, cost: int) -> None:
        """(Under the lock.) The one consumer waits only on an empty inbox, or for a turn to end: it is woken only
        for the first item, and not while a transport's thread has a turn (:meth:`end_turn` wakes it then)."""
        self._items.append((item, cost))
        self._bytes += cost
        if len(self._items) == 1 and not self._turn:
            self._cond.notify_all()

    def get(self) -> T:
        """The next item (the consumer is done with the one before), once no transport's thread has a turn."""
        with self._cond:
            self._in_hand = False
            self._cond.wait_for(lambda: bool(self._items) and not self._turn)
            item, cost = self._items.popleft()
            self._bytes -= cost
            self._in_hand = True
            if self._putters:  # deliveries waiting for room
                self._cond.notify_all()
            return item

    def done(self) -> None:
        """The consumer applied the item it got: a transport's thread may take a turn before the next get()."""
        with self._cond:
            self._in_hand = False

    def take_turn(self) -> bool:
        """Whether a transport's thread may apply an item itself, now, instead of queueing it: only when nothing
        is queued nor being applied, so it comes after everything received before it. Until :meth:`end_turn`
        the consumer waits."""
        with self._cond:
            if self._items or self._in_hand or self._turn or self._closed:
                return False
            self._turn = True
            return True

    def end_turn(self) -> None:
        with self._cond:
            self._turn = False
            if self._items:  # (queued meanwhile: the consumer may be waiting for the turn to end)
                self._cond.notify_all()

    @property
    def held(self) -> int:
        """Bytes of received messages waiting."""
        return self._bytes

    def close(self, last: Optional[T] = None) -> None:
        """No delivery waits any more; ``last`` (the ingest thread's stop) is queued."""
        with self._cond:
            self._closed = True
            self._items.append((last, 0))  # type: ignore[arg-type]
            self._cond.notify_all()
