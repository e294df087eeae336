"""The console side of bench.ingest: one Console following the sender's agents, and what a run costs it.

This process runs the console and nothing else of weight (the agents and the pushes are in the sender's
process), so its CPU time over a run — ``time.process_time()``, every thread: the reactor's receive and
proton decode, the ingest thread's decode and apply, the subscribers' threads — is the console's cost of
what it received. A run ends when the console has applied every message sent and its subscribers have
stopped receiving (they are drained: their work counts too).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, List, Sequence

from virtq.console import Console
from virtq.console.events import Event, Overflowed
from virtq.schema.codec import StatsBatch

from .decoding import decoding
from .sender import STALLED

__all__ = ["CountingSubscriber", "IngestConsole", "Run"]

QUIET = 0.1
"""Seconds without a new event after which subscribers count as drained."""


class CountingSubscriber:
    """A callback subscriber that only counts what it receives (events, and events dropped on overflow)."""

    def __init__(self) -> None:
        self.events = 0
        self.dropped = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Overflowed):
            self.dropped += event.dropped
        else:
            self.events += 1


@dataclass
class Run:
    """One measured run: an encoding, a batch size, a number of subscribers."""

    encoding: str
    rows: int
    subscribers: int
    messages: int
    records: int  # rows sent
    applied: int  # rows the console applied (its updater's count)
    cpu: float  # console process CPU seconds, until the subscribers were drained
    wall: float  # seconds from the first message sent to the last applied
    events: float  # events per subscriber
    dropped: int  # events dropped by subscribers' queues, all subscribers
    stalled: bool = False  # the console stopped applying what it was sent (it refused the encoding?)

    @property
    def rate(self) -> float:
        """Records applied per console CPU-second."""
        return self.applied / self.cpu if self.cpu > 0 else float("nan")

    @property
    def us_per_record(self) -> float:
        return self.cpu / self.applied * 1e6 if self.applied else float("nan")


class IngestConsole:
    """A Console on the sender's agents, with a message counter the sender reads (``applied``, shared)."""

    def __init__(self, urls: Sequence[str], applied: Any, timeout: float = 60.0) -> None:
        self.console = Console(list(urls), timeout=timeout)
        self.applied = applied
        self._applied_event = threading.Event()
        self._expected = -1
        self.console.updater.stats_observers.append(self._observe)

    def _observe(self, agent: str, batches: Sequence[StatsBatch]) -> None:
        self.applied.value += 1
        if self.applied.value == self._expected:
            self._applied_event.set()

    def expect(self, messages: int, timeout: float = 0.0) -> None:
        """``-1``: count statistics messages applied from zero again; else wait (``timeout`` at most) until
        ``messages`` of them were applied since."""
        if messages < 0:
            self._expected, self.applied.value = -1, 0
            self._applied_event.clear()
            return
        self._expected = messages
        if self.applied.value < messages:
            self._applied_event.wait(timeout)

    def start(self) -> None:
        self.console.start()

    def close(self) -> None:
        self.console.close()

    def run(self, sender: Any, encoding: str, rows: int, subscribers: int, seconds: float, max_records: int,
            window: int, timeout: float = 30.0) -> Run:
        """One run: the sender pushes, this process applies; CPU from the command to the drained subscribers."""
        counters = [CountingSubscriber() for _ in range(subscribers)]
        subscriptions = [self.console.subscribe(c) for c in counters]
        try:
            with decoding(encoding):
                self.console.settle()
                samples = self.console.updater.samples_applied
                self.expect(-1)
                cpu, wall = time.process_time(), time.perf_counter()
                sender.send({"type": "run", "encoding": encoding, "rows": rows, "seconds": seconds,
                             "max_records": max_records, "window": window})
                if not sender.conn.poll(seconds + STALLED + timeout):
                    raise RuntimeError("the agents' process did not finish a run")
                sent = sender.conn.recv()
                self.expect(int(sent["messages"]), 0.0 if sent["stalled"] else timeout)
                wall = time.perf_counter() - wall
                self._drained(counters, timeout)
                cpu = time.process_time() - cpu
                applied = self.console.updater.samples_applied - samples
        finally:
            for subscription in subscriptions:
                self.console.unsubscribe(subscription)
        events = sum(c.events for c in counters) / subscribers if subscribers else 0.0
        return Run(encoding, rows, subscribers, int(sent["messages"]), int(sent["records"]), applied, cpu, wall,
                   events, sum(c.dropped for c in counters), bool(sent["stalled"]))

    @staticmethod
    def _drained(counters: List[CountingSubscriber], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            now = sum(c.events + c.dropped for c in counters)
            if now == last:
                return
            last = now
            time.sleep(QUIET)
