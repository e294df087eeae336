"""libvirt events, turned into pushes: object changes, the event itself, fresh statistics.

libvirt calls back on its event-loop thread; the pump only queues there. One pump thread
handles events in order: re-reads the object (its id, or that it vanished; after a revert to a
snapshot, its snapshots and checkpoints too), moves its configuration generation when the event says
the XML may have changed, pushes the changes and the event, and for lifecycle events samples the
object's statistics once the burst of events is over (SAMPLE_QUIET; at most SAMPLE_LATEST later).

The re-read runs in the object's apartment (after that object's calls, never beside them) and
the pump waits for it at most ``read_wait``: an object whose libvirt calls are stuck delays the
events of the others by that much at most. A re-read that comes back later is applied and
pushed then (the registry applies syncs in the order they asked); one that cannot be queued
(the object is busy) is left to the next call on it or the reconcile. A re-read done in time pushes
the event itself, right behind its changes (one thread hand-off less on the way to the consoles).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Sequence, Union

from virtq.logs import RateLimited
from virtq.schema.codec import DataRecord, EventRecord, now_ns
from virtq.schema.errors import ObjectBusyError

from .apartments import Apartments, Ticket
from .children import event_changes_children
from .configgen import event_changes_config
from .hypervisor import HypervisorError, HypervisorEvent
from .registry import Reading, Registry
from .sampler import Sampler

log = logging.getLogger(__name__)
limited = RateLimited(log)

READ_WAIT = 1.0
"""Seconds the pump waits for an object's re-read before it pushes the event and goes on."""
READ_TIMEOUT = 30.0
"""Seconds a re-read may wait in its object's apartment before it is dropped (the reconcile repairs)."""

SAMPLE_QUIET = 0.002
"""Seconds without a new event before the pump samples what the last events changed. A lifecycle event's
object is sampled (its new state) once its burst of events is over, not right behind each: in a burst each
object is read once, and the event's own push has the agent to itself meanwhile (sampled right behind it, it
reached the consoles' reactors 0.26 ms later, their subscribers 0.5 ms later: docs/BENCHMARKS.md §2)."""
SAMPLE_LATEST = 0.05
"""Seconds after the first of them that they are sampled however many events keep coming."""


class _Quiet:
    """What the pump's wait gives when it is time to sample (no event came): see EventPump._next."""


QUIET = _Quiet()

MAX_QUEUED = 100_000
"""Events held while the pump is behind; beyond it the oldest are dropped (the reconcile repairs state)."""

WARNING_EVENTS = frozenset({"domainIoError", "domainIoErrorReason", "domainControlError", "domainWatchdog",
                            "domainMemoryFailure"})
RESYNC_EVENTS = frozenset({"domainLifecycle", "poolLifecycle", "poolRefresh"})
APPEARING = frozenset({"defined", "started", "created"})
"""Lifecycle events after which an object may be new to the consoles."""
STATE_EVENTS = frozenset({"domainLifecycle", "poolLifecycle", "domainPmwakeup", "domainPmsuspend",
                          "domainPmsuspendDisk", "domainBalloonChange"})


class EventPump:
    def __init__(self, registry: Registry, sampler: Sampler, push_records: Callable[[Sequence[DataRecord]], None],
                 push_events: Callable[[Sequence[EventRecord]], None], apartments: Optional[Apartments] = None,
                 read_wait: float = READ_WAIT, read_timeout: float = READ_TIMEOUT,
                 sample_quiet: float = SAMPLE_QUIET, sample_latest: float = SAMPLE_LATEST) -> None:
        self._apartments = apartments
        self.read_wait = read_wait
        self.read_timeout = read_timeout
        self._registry = registry
        self._sampler = sampler
        self._push_records = push_records
        self._push_events = push_events
        self._queue: Deque[Optional[HypervisorEvent]] = collections.deque()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="virtq-events", daemon=True)
        self.lock = threading.Lock()
        """Held from re-reading an object until its changes are pushed. An event can put a method's new
        object in the registry before the method's own look-up does; the reply waits on this lock, so
        it still follows the object's record."""
        self.dropped = 0
        self.handled = 0
        self.sample_quiet, self.sample_latest = sample_quiet, sample_latest
        self._to_sample: Dict[str, Dict[str, None]] = {}  # class -> keys (in order) whose events want a sample
        self._sample_due = 0.0  # the monotonic time by which they are sampled, events or not

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._ready:
            self._queue.append(None)
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def deliver(self, event: HypervisorEvent) -> None:
        """Called on libvirt's event-loop thread: stamp (the event's time is when libvirt told it,
        not when the pump gets to it), queue and return."""
        if not event.timestamp:
            event = dataclasses.replace(event, timestamp=now_ns())
        with self._ready:
            self._queue.append(event)
            if len(self._queue) > MAX_QUEUED:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                    log.warning("event pump behind: %d event(s) dropped", self.dropped)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            event = self._next()
            if event is None:
                return
            if self._to_sample and (event is QUIET or time.monotonic() >= self._sample_due):
                self.sample_changed()
            if isinstance(event, HypervisorEvent):
                try:
                    self.handle(event)
                except Exception:  # noqa: BLE001 - one event must not stop the pump
                    log.exception("handling %s", event)
                self.handled += 1

    def _next(self) -> Union[HypervisorEvent, None, _Quiet]:
        """The next event (None: stop); QUIET when objects wait for their sample and no event came for
        ``sample_quiet`` seconds, or the first of them has waited ``sample_latest``."""
        with self._ready:
            while not self._queue:
                if not self._to_sample:
                    self._ready.wait()
                    continue
                left = min(self.sample_quiet, self._sample_due - time.monotonic())
                if (left <= 0 or not self._ready.wait(left)) and not self._queue:
                    return QUIET
            return self._queue.popleft()

    def sample_changed(self) -> None:
        """Sample the objects the events since the last sample changed, once each, a class at a time (the pump's
        thread does, when their burst is over)."""
        waiting, self._to_sample = self._to_sample, {}
        for class_name, keys in waiting.items():
            try:
                self._sampler.sample(class_name, list(keys))
            except Exception:  # noqa: BLE001 - a failed sample must not stop the pump (the next pass repairs)
                log.exception("sampling %s after events", class_name)

    def handle(self, event: HypervisorEvent) -> None:
        name = f"{event.class_name}:{event.key}"
        known = self._registry.get(name) is not None
        reread = event.name in RESYNC_EVENTS or event_changes_children(event)
        told = threading.Lock()  # taken by whichever pushes the event: its re-read when done in time, else the pump

        def tell() -> None:
            if told.acquire(blocking=False):
                self._push_events([self.record(event)])

        def changes(ticket: Optional[Ticket], read: bool = True) -> None:
            reading: Optional[Reading] = None
            if read and reread:
                try:
                    reading = self._registry.read_object(event.class_name, event.key, event_changes_children(event))
                except HypervisorError as exc:
                    log.warning("re-reading %s after %s failed: %s", name, event.name, exc.message)
            self._apply(event, name, known, reading)
            tell()  # right behind its changes, from the apartment: the pump need not wake up first

        if self._apartments is None or not reread:
            changes(None)
        else:
            try:
                ticket = self._apartments.submit(name, f"re-read after {event.name}", changes, self.read_timeout,
                                                 internal=True)
            except ObjectBusyError as exc:  # a re-read is queued already (it reads the latest), or the cap
                log.debug("%s not re-read after %s: %s", name, event.name, exc.error_text)
                changes(None, read=False)
            else:
                if not ticket.wait(self.read_wait):
                    limited.warning(f"late {event.class_name}", "re-reading %s after %s takes longer than "
                                    "%.1f s: the event goes first", name, event.name, self.read_wait)
        tell()
        if event.name in STATE_EVENTS and self._registry.get(name) is not None:
            if not self._to_sample:
                self._sample_due = time.monotonic() + self.sample_latest
            self._to_sample.setdefault(event.class_name, {})[event.key] = None

    def _apply(self, event: HypervisorEvent, name: str, known: bool, reading: Optional[Reading]) -> None:
        """Held under ``lock`` from applying the re-read until its changes are pushed (not while asking)."""
        with self.lock:
            changes: List[DataRecord] = []
            if reading is not None:
                changes += self._registry.apply(reading)
            # An object first seen now (defined or started by someone else) got a new generation
            # with its first record: moving it again would only tell consoles of a change that wasn't.
            if known and event_changes_config(event.name, event.event, event.detail):
                changes += self._registry.bump_config(name)
            entry = self._registry.get(name)
            if event.event in APPEARING and event.name in RESYNC_EVENTS and entry is not None and \
                    not any(r.object_id.object_name == name for r in changes):
                # A method call may have put the object in the registry first and not pushed it yet:
                # its record goes out ahead of the event either way, so the event never names an
                # object the consoles do not have (a repeated record changes nothing there).
                changes.append(self._registry.record(entry))
            self._push_records(changes)

    def record(self, event: HypervisorEvent) -> EventRecord:
        schema = self._registry.schema.events.get(event.name)
        if schema is None:
            raise LookupError(f"event {event.name} is not in the schema")
        ref = self._registry.object_id(f"{event.class_name}:{event.key}").to_wire()
        values = {"domain" if event.class_name == "Domain" else "pool": ref, "event": event.event,
                  "detail": event.detail, "data": dict(event.data)}
        return EventRecord(schema.schema_id, values, event.timestamp or now_ns(),
                           4 if event.name in WARNING_EVENTS else 5)
