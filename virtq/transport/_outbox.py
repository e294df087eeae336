"""Messages waiting for credit on one sending link, bounded in messages and in encoded bytes.

A peer that attaches a receiver and grants no credit made every reply and push for it pile up (2.24 GB
on one link, more with more links, never given back). Here what a link holds is bounded per link and per
connection; past a bound the listener closes the link with ``amqp:resource-limit-exceeded`` and drops what
it held, and a console's connection drops the oldest (its peer is the agent or broker it chose).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
from typing import Any, Callable, Deque, Optional, Tuple

from proton import Condition, Endpoint, Link

from virtq.logs import RateLimited, shown
from virtq.schema.codec import WireMessage

from ._convert import encode
from ._limits import RESOURCE_LIMIT, Limits

log = logging.getLogger(__name__)
_limited = RateLimited(log)


TRIM_BYTES = 1024 * 1024
"""Freed bytes worth asking the C allocator to give back to the system (glibc keeps freed memory otherwise:
a closed credit-less link left its 16 MiB in the process's RSS)."""


def _load_trim() -> Optional[Callable[[int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_trim()


def give_back_memory() -> None:
    """Return freed heap memory to the system, where the C library can (glibc's malloc_trim)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class Budget:
    """Bytes held by all the outboxes of one connection."""

    def __init__(self) -> None:
        self.bytes = 0


def encoded(wire: WireMessage, user_id: Optional[str] = None) -> bytes:
    """A message's AMQP encoding, made once however many links carry it."""
    return encode(wire, user_id)


class Outbox:
    """One sending link's queue (``principal``: who the peer is). ``close_on_overflow``: close the link when
    a bound is passed (a listener's peer) rather than drop the oldest message (a connection's peer)."""

    def __init__(self, link: Any, name: str, principal: Optional[str] = None, user_id: Optional[str] = None,
                 *, limits: Optional[Limits] = None, budget: Optional[Budget] = None,
                 close_on_overflow: bool = False, on_closed: Optional[Callable[["Outbox"], None]] = None) -> None:
        self.link = link
        self.name = name
        self.principal = principal
        self.user_id = user_id  # set on what it sends
        self.limits = limits or Limits()
        self.budget = budget or Budget()
        self.close_on_overflow = close_on_overflow
        self.on_closed = on_closed
        self.pending: Deque[bytes] = collections.deque()
        self.bytes = 0
        self.dropped = 0
        self.overflowed = False

    def push(self, wire: WireMessage, data: Optional[bytes] = None) -> None:
        if self.overflowed:
            return
        data = encoded(wire, self.user_id) if data is None else data
        self.pending.append(data)
        self._grow(len(data))
        self.flush()
        if self.overflowed or not self._over():
            return
        if self.close_on_overflow:
            self.overflow()
            return
        while self.pending and self._over():
            self._grow(-len(self.pending.popleft()))
            self.dropped += 1
        _limited.warning(f"dropped-{self.name}", "link %s: peer grants no credit, %d message(s) dropped",
                         shown(self.name), self.dropped)

    def _grow(self, n: int) -> None:
        self.bytes += n
        self.budget.bytes += n

    def _over(self) -> bool:
        limits = self.limits
        return (len(self.pending) > limits.max_link_messages or self.bytes > limits.max_link_bytes
                or self.budget.bytes > limits.max_connection_bytes)

    def overflow(self) -> None:
        """Close the link with an error condition and give back everything it held."""
        held, self.overflowed = (len(self.pending), self.bytes), True
        self.clear()
        if held[1] >= TRIM_BYTES:
            give_back_memory()
        _limited.warning("outbox-overflow", "closing link %s: its peer grants no credit (%d message(s), %d bytes "
                         "held)", shown(self.name), *held)
        if not self.link.state & Endpoint.LOCAL_CLOSED:
            self.link.condition = Condition(RESOURCE_LIMIT, "the link's peer grants no credit: held messages "
                                                            f"passed the limit ({held[0]} messages, {held[1]} bytes)")
            self.link.close()
        if self.on_closed is not None:
            self.on_closed(self)

    def clear(self) -> None:
        """Drop everything held (the link closed)."""
        self.budget.bytes -= self.bytes
        self.bytes = 0
        self.pending.clear()

    def flush(self) -> None:
        link = self.link
        while self.pending and link.credit > 0 and not link.state & Endpoint.LOCAL_CLOSED:
            data = self.pending.popleft()
            self._grow(-len(data))
            delivery = link.delivery(link.delivery_tag())
            link.stream(data)
            link.advance()
            if link.snd_settle_mode == Link.SND_SETTLED:
                delivery.settle()

    @property
    def held(self) -> Tuple[int, int]:
        return len(self.pending), self.bytes

