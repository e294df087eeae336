"""Per-object apartments for libvirt calls: a stuck object holds its own queue, never the agent.

A hung QEMU monitor or dead NFS storage makes libvirt calls on one object block for minutes.
Calls on one object (method calls, the re-read after an event, the look-up of a name the
registry does not know yet) run one at a time, in arrival order, on a thread of that object's
own while it has work (a thread that served an object waits IDLE_LINGER seconds for the next
object before it ends: starting a thread per call cost more than the call); the agent's workers
only hand calls over and go back to answering. Bounds, each refused at once with ObjectBusyError
naming the oldest call and its age rather than queued without end:

* per object: 1 running call + ``queue`` waiting (OBJECT_QUEUE);
* per agent: ``max_threads`` objects with a thread at once (MAX_THREADS), stuck ones included.

Each call has a deadline. When it passes, the call's ``on_timeout`` is told — the waiter answers
with a typed error — and a call that had not started yet is dropped. A call that started keeps
its object's thread (and so its place) until libvirt returns: it keeps counting as stuck.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Tuple

from virtq.schema.errors import ObjectBusyError

log = logging.getLogger(__name__)

OBJECT_QUEUE = 4
"""Calls that may wait behind an object's running call; the next one is refused (object busy)."""
MAX_THREADS = 64
"""Objects with a call in flight at once (a thread each, stuck or not); beyond it calls are refused."""
IDLE_LINGER = 2.0
"""Seconds a thread whose object has no more calls waits to serve another object before it ends."""


@dataclass(eq=False)
class Ticket:
    """One call handed to an apartment."""

    name: str  # the object: "Domain:<uuid>"
    label: str  # what the call is, for errors and logs: "destroy"
    job: "Job"
    on_timeout: "Job"
    submitted: float
    deadline: float
    internal: bool = False  # the agent's own (a re-read after an event), not a caller's
    started: Optional[float] = None
    thread: Optional[int] = None
    done: threading.Event = field(default_factory=threading.Event)
    _claimed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> bool:
        """True for the first of (the call's end, its deadline) to ask: that one answers the caller."""
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)


Job = Callable[[Ticket], None]


def _nothing(ticket: Ticket) -> None:
    """A finished call's job and timeout handler."""


@dataclass(eq=False)
class _Apartment:
    queue: Deque[Ticket] = field(default_factory=collections.deque)
    running: Optional[Ticket] = None

    @property
    def calls(self) -> int:
        """Callers' calls running or waiting (the agent's own re-reads do not count against them)."""
        running = self.running is not None and not self.running.internal
        return running + sum(not t.internal for t in self.queue)

    @property
    def waiting(self) -> int:
        """Calls behind the running one (the head of the queue is about to run when none is)."""
        return len(self.queue) - (self.running is None and len(self.queue) > 0)

    @property
    def rereads(self) -> int:
        """The agent's own calls waiting: one is enough, it reads the latest state when it runs."""
        return sum(t.internal for t in self.queue)


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


class Apartments:
    def __init__(self, queue: int = OBJECT_QUEUE, max_threads: int = MAX_THREADS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self.max_threads = max_threads
        self.clock = clock
        self._apartments: Dict[str, _Apartment] = {}
        self._lock = threading.Lock()
        self._deadlines: List[Tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._spare = threading.Condition(self._lock)  # idle threads wait here for an object to serve
        self._unserved: Deque[Tuple[str, _Apartment]] = collections.deque()
        self._idle = 0
        self._timer: Optional[threading.Thread] = None
        self._stopped = False
        self.refused = 0
        self.timed_out = 0

    # --- handing calls over -----------------------------------------------------------------------

    def submit(self, name: str, label: str, job: Job, timeout: float,
               on_timeout: Optional[Job] = None, internal: bool = False) -> Ticket:
        """Queue ``job`` on ``name``'s apartment; raises ObjectBusyError at once when it is full.

        ``internal`` calls (the agent's re-reads after events) never take a caller's place: they do
        not count against ``queue``, and one waiting per object is enough (another is refused)."""
        now = self.clock()
        ticket = Ticket(name, label, job, on_timeout or (lambda t: None), now, now + timeout, internal)
        with self._lock:
            apartment = self._apartments.get(name)
            if apartment is None:
                if len(self._apartments) >= self.max_threads:
                    self.refused += 1
                    raise ObjectBusyError(self._agent_busy(now))
                apartment = self._apartments[name] = _Apartment()
                self._serve(name, apartment)
            elif (apartment.rereads >= 1) if internal else (apartment.calls >= 1 + self.queue):
                self.refused += 1
                raise ObjectBusyError(self._object_busy(name, apartment, now))
            apartment.queue.append(ticket)
            heapq.heappush(self._deadlines, (ticket.deadline, next(self._seq), ticket))
            if self._timer is None:
                self._timer = threading.Thread(target=self._expire, name="virtq-deadlines", daemon=True)
                self._timer.start()
            if self._deadlines[0][2] is ticket:  # the deadline thread sleeps until the earliest: only then wake it
                self._wake.notify_all()
        return ticket

    def _serve(self, name: str, apartment: _Apartment) -> None:
        """Give a new apartment a thread: an idle one if there is one free (under the lock)."""
        if self._idle > len(self._unserved):
            self._unserved.append((name, apartment))
            self._spare.notify()
            return
        threading.Thread(target=self._thread, args=(name, apartment), name=f"virtq-call {name}"[:60],
                         daemon=True).start()

    def _thread(self, name: str, apartment: _Apartment) -> None:
        """An apartment thread: serves an object until it has no calls, then waits a while for the next one."""
        while True:
            self._run(name, apartment)
            with self._lock:
                self._idle += 1
                try:
                    if not self._spare.wait_for(lambda: self._unserved or self._stopped, IDLE_LINGER) \
                            or not self._unserved:
                        return
                    name, apartment = self._unserved.popleft()
                finally:
                    self._idle -= 1
            threading.current_thread().name = f"virtq-call {name}"[:60]

    def _object_busy(self, name: str, apartment: _Apartment, now: float) -> str:
        oldest = apartment.running or apartment.queue[0]
        age = max(0.0, now - (oldest.started if oldest.started is not None else oldest.submitted))
        return (f"object busy: {name} has 1 libvirt call stuck, the oldest {oldest.label} for {_age(age)} "
                f"({apartment.waiting} more waiting)")

    def _agent_busy(self, now: float) -> str:
        running = [a.running for a in self._apartments.values() if a.running is not None]
        text = f"agent busy: {len(self._apartments)} objects have libvirt calls in flight (the limit)"
        if running:
            oldest = min(running, key=lambda t: t.started or now)
            text += f", the oldest {oldest.name} {oldest.label} for {_age(max(0.0, now - (oldest.started or now)))}"
        return text

    # --- running them -------------------------------------------------------------------------------

    def _run(self, name: str, apartment: _Apartment) -> None:
        while True:
            with self._lock:
                apartment.running = None
                if not apartment.queue:
                    del self._apartments[name]
                    self._wake.notify_all()  # (join waits for none to be left)
                    return
                ticket = apartment.queue.popleft()
                ticket.started = self.clock()
                ticket.thread = threading.get_ident()
                apartment.running = ticket
            try:
                ticket.job(ticket)
            except Exception:  # noqa: BLE001 - the apartment must keep serving its object
                log.exception("call %s on %s failed", ticket.label, name)
            finally:
                ticket.done.set()
                # It answered (or its deadline did): what it holds need not wait in the deadline heap.
                ticket.job = ticket.on_timeout = _nothing

    def _expire(self) -> None:
        """One thread for every deadline: the earliest wakes it."""
        while True:
            with self._lock:
                while not self._stopped and (not self._deadlines or self._deadlines[0][0] > self.clock()):
                    self._wake.wait(None if not self._deadlines else max(0.0, self._deadlines[0][0] - self.clock()))
                if self._stopped:
                    return
                _, _, ticket = heapq.heappop(self._deadlines)
                if ticket.done.is_set():
                    continue
                handler = ticket.on_timeout  # (before claiming: a call that ends now claims first, or not at all)
                apartment = self._apartments.get(ticket.name)
                if ticket.started is None and apartment is not None and ticket in apartment.queue:
                    apartment.queue.remove(ticket)  # never started: dropped
                    ticket.done.set()
            if ticket.claim():
                self.timed_out += 1
                try:
                    handler(ticket)
                except Exception:  # noqa: BLE001
                    log.exception("answering the timeout of %s on %s", ticket.label, ticket.name)

    def join(self, timeout: float) -> bool:
        """Wait until no object has calls in flight, at most ``timeout`` seconds (stuck calls never end)."""
        with self._lock:
            return self._wake.wait_for(lambda: not self._apartments, timeout)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
            self._spare.notify_all()

    # --- what is going on -----------------------------------------------------------------------------

    def running(self, name: str) -> Optional[Ticket]:
        with self._lock:
            apartment = self._apartments.get(name)
            return apartment.running if apartment is not None else None

    def busy(self) -> Dict[str, int]:
        """Objects with calls in flight: running + waiting, by object name."""
        with self._lock:
            return {n: len(a.queue) + (a.running is not None) for n, a in self._apartments.items()}
