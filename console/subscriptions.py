"""Subscribers: each has a bounded queue and its own delivery thread, so a slow one never stalls ingest.

Overflow policy: when a subscriber's queue is full the OLDEST queued event is dropped
(the newest state is worth more than an old one) and the subscriber receives one
:class:`Overflowed` event with the count before its next event.

Inline: a callback subscription made with ``inline=True`` has no queue and no thread: its callback runs on the
thread that emits the event (the console's ingest thread, or a transport's reactor applying a heartbeat or
statistics), at once and in order. For callbacks that return at once (count, copy into a dict, hand over to a
queue of their own): a fleet's statistics batch then costs no thread wake-up, about 100 µs a message on small
VMs. Such a callback must not call the console — the answer would have to come through the thread it holds — so
a call made from it is refused at once (``InlineCallError``); an exception it raises is logged, and the next
event is delivered all the same.

Kinds: a subscription without ``kinds`` receives every kind but the opt-in ones (:data:`OPT_IN`:
``StatsUpdated``, one event per object per sample, where ``StatsApplied`` is one per batch; ``DomainMigrated``,
which replaces the ObjectRemoved/ObjectAdded pair of a moved domain for those that ask for it); with
``kinds`` it receives the events that are instances of them, opt-in kinds included.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Deque, Iterator, List, Optional, Tuple, Type, Union

from virtq.logs import RateLimited
from virtq.schema import errors

from .events import DomainMigrated, Event, Overflowed, StatsUpdated

__all__ = ["OPT_IN", "Kinds", "Subscribers", "Subscription", "normalize_kinds", "refuse_inline_calls"]

log = logging.getLogger(__name__)
limited = RateLimited(log)

Kinds = Optional[Tuple[Type[Event], ...]]
KindsArgument = Union[None, Type[Event], Tuple[Type[Event], ...], List[Type[Event]]]
OPT_IN: Tuple[Type[Event], ...] = (StatsUpdated, DomainMigrated)
"""Kinds delivered only to subscriptions that name them (or a base class of them) in ``kinds``."""


_inline = threading.local()


def refuse_inline_calls(what: str, *args: object) -> None:
    """InlineCallError when called from an inline subscriber's callback (see the module's docstring); ``what``
    is formatted with ``args`` only then (every request passes here)."""
    if getattr(_inline, "callback", False):
        raise errors.InlineCallError(f"{what % args} from an inline subscriber's callback: it runs on the thread "
                                     "that would deliver the answer (subscribe without inline=True to call the "
                                     "console)")


class Subscription:
    """A callback subscription (delivered on its own thread, or inline on the emitting one) or, without a callback,
    a queue to read."""

    def __init__(self, callback: Optional[Callable[[Event], None]], kinds: Kinds, maxsize: int,
                 inline: bool = False) -> None:
        if inline and callback is None:
            raise errors.InvalidParameterError("an inline subscription needs a callback")
        self.kinds = kinds
        self.inline = inline
        self.maxsize = maxsize
        self.dropped = 0
        self.delivered = 0
        self._callback = callback
        self._queue: Deque[Event] = collections.deque()
        self._pending_drops = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self.on_ready: Optional[Callable[[], None]] = None
        """Called (on the offering or closing thread, outside the lock) after an event was queued or the
        subscription closed: how virtq.console.aio wakes a reader on an event loop without a thread."""
        if callback is not None and not inline:
            self._thread = threading.Thread(target=self._run, name="virtq-subscriber", daemon=True)
            self._thread.start()

    @property
    def closed(self) -> bool:
        """True once closed (by its owner, or because the console closed): get() returns None at once."""
        return self._closed

    def wants(self, event: Event) -> bool:
        return self.wants_kind(type(event))

    def wants_kind(self, kind: Type[Event]) -> bool:
        """Whether events of this class are delivered to this subscription."""
        return not issubclass(kind, OPT_IN) if self.kinds is None else issubclass(kind, self.kinds)

    def offer(self, event: Event) -> None:
        """Called by the console's ingest thread (or a reactor applying a routine push): never blocks, but for an
        inline subscription's callback."""
        if self.inline:
            self._deliver_inline(event)
            return
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self.maxsize:
                self._queue.popleft()
                self.dropped += 1
                self._pending_drops += 1
            self._queue.append(event)
            self._cond.notify()
        if self.on_ready is not None:
            self.on_ready()

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """Next event (queue mode); None on timeout or when closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self._closed, timeout):
                return None
            if self._pending_drops:
                dropped, self._pending_drops = self._pending_drops, 0
                return Overflowed(dropped)
            if not self._queue:
                return None
            self.delivered += 1
            return self._queue.popleft()

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def _deliver_inline(self, event: Event) -> None:
        assert self._callback is not None
        if self._closed:
            return
        _inline.callback = True
        try:
            self._callback(event)
            self.delivered += 1
        except Exception as exc:  # noqa: BLE001 - a subscriber's bug is its own (and never the emitting thread's)
            if limited.log(logging.ERROR, "inline callback", "inline subscriber callback failed on %s: %r",
                           type(event).__name__, exc):
                log.debug("inline subscriber callback failed", exc_info=True)
        finally:
            _inline.callback = False

    def _run(self) -> None:
        assert self._callback is not None
        while True:
            event = self.get()
            if event is None:
                return
            try:
                self._callback(event)
            except Exception:  # noqa: BLE001 - a subscriber's bug is its own
                log.exception("subscriber callback failed on %s", type(event).__name__)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.on_ready is not None:
            self.on_ready()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def normalize_kinds(kinds: KindsArgument) -> Kinds:
    if kinds is None:
        return None
    if isinstance(kinds, type):
        return (kinds,)
    return tuple(kinds)


class Subscribers:
    """A console's subscriptions: emit() offers each event to those that want it."""

    def __init__(self) -> None:
        self._subscriptions: List[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Optional[Callable[[Event], None]], kinds: KindsArgument,
                  maxsize: int, inline: bool = False) -> Subscription:
        subscription = Subscription(callback, normalize_kinds(kinds), maxsize, inline)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
        subscription.close()

    def wanted(self, kind: Type[Event]) -> bool:
        """Whether any subscription takes events of this class (the updater makes per-object events only then)."""
        with self._lock:
            return any(subscription.wants_kind(kind) for subscription in self._subscriptions)

    def emit(self, event: Event, audience: Optional[Callable[[Subscription], bool]] = None) -> None:
        """Offer ``event`` to the subscriptions that want it (and, when given, are in ``audience``)."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            if subscription.wants(event) and (audience is None or audience(subscription)):
                subscription.offer(event)

    def close(self) -> None:
        """Close every subscription (the console closes)."""
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.close()
