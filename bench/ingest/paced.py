"""The console's side of paced runs (``python -m bench.ingest --rate R``): its CPU per wall second and per
message of each kind when messages come one at a time, as from a fleet (:mod:`.pacing` sends them).

A run's cost is the console process's CPU time (``getrusage``: every thread, user and kernel) from the command
to the last message applied. An ``idle`` run of the same length, first, gives what the console spends with nothing
arriving; a kind's CPU per message is its run's CPU less that, over the messages sent.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from bench.fleetsim.tables import table

from .measure import CountingSubscriber, IngestConsole
from .sender import STALLED

__all__ = ["PacedResult", "PacedRun", "paced_run"]

SETTLE = 0.05
"""Seconds waited after the last message is sent before asking the console to settle (each agent has a
connection of its own, so the last message of one may still be on its way after another's)."""


@dataclass
class PacedRun:
    kind: str
    rate: float  # messages per second asked
    heartbeats: int
    stats: int
    records: int  # rows sent in statistics messages
    applied: int  # rows the console applied
    heard: int  # agents whose heartbeat the console recorded during the run
    cpu: float  # console process CPU seconds
    system: float  # ... of which in the kernel
    switches: int  # the console's threads' voluntary context switches (each a sleep and a wake-up)
    wall: float
    late: float  # the sender's worst lateness against its schedule, seconds

    @property
    def messages(self) -> int:
        return self.heartbeats + self.stats

    @property
    def core(self) -> float:
        """The console's CPU over wall time: the share of one core it took."""
        return self.cpu / self.wall if self.wall > 0 else math.nan

    def us_per_message(self, idle: Optional["PacedRun"]) -> float:
        """CPU per message, less what the console spends idle over as long a time."""
        return self._per_message(self.cpu, idle.cpu / idle.wall if idle is not None else 0.0) * 1e6

    def system_us_per_message(self, idle: Optional["PacedRun"]) -> float:
        return self._per_message(self.system, idle.system / idle.wall if idle is not None else 0.0) * 1e6

    def switches_per_message(self, idle: Optional["PacedRun"]) -> float:
        return self._per_message(self.switches, idle.switches / idle.wall if idle is not None else 0.0)

    def _per_message(self, spent: float, idle_rate: float) -> float:
        """What the run spent less what idling as long costs, per message."""
        return (spent - idle_rate * self.wall) / self.messages if self.messages else math.nan


def paced_run(console: IngestConsole, sender: Any, kind: str, rate: float, seconds: float, rows: int,
              subscribers: int, timeout: float = 30.0) -> PacedRun:
    counters = [CountingSubscriber() for _ in range(subscribers)]
    subscriptions = [console.console.subscribe(c) for c in counters]
    try:
        console.console.settle()
        samples = console.console.updater.samples_applied
        heard_before = {v.name: v.last_seen for v in console.console.agents}
        console.expect(-1)
        before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        sender.send({"type": "pace", "kind": kind, "rate": rate, "seconds": seconds, "rows": rows})
        if not sender.conn.poll(seconds + STALLED + timeout):
            raise RuntimeError("the agents' process did not finish a paced run")
        sent = sender.conn.recv()
        console.expect(int(sent["sent"]["stats"]), timeout)
        time.sleep(SETTLE)
        console.console.settle()
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_SELF)
        applied = console.console.updater.samples_applied - samples
        heard = sum(1 for v in console.console.agents if v.last_seen > heard_before.get(v.name, math.inf))
    finally:
        for subscription in subscriptions:
            console.console.unsubscribe(subscription)
    return PacedRun(kind, rate, int(sent["sent"]["heartbeat"]), int(sent["sent"]["stats"]), int(sent["records"]),
                    applied, heard, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                    after.ru_stime - before.ru_stime, after.ru_nvcsw - before.ru_nvcsw, wall, float(sent["late"]))


@dataclass
class PacedResult:
    agents: int
    domains: int
    rows: int
    subscribers: int
    seconds: float
    load: float = math.nan
    runs: List[PacedRun] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    def idle(self) -> Optional[PacedRun]:
        return next((r for r in self.runs if r.kind == "idle"), None)

    def check(self) -> None:
        """Functional problems only: rows not applied, heartbeats the console did not record."""
        for r in self.runs:
            if r.applied != r.records:
                self.problems.append(f"{r.kind}: {r.records} rows sent, {r.applied} applied")
            if r.heartbeats >= self.agents and r.heard < self.agents:
                self.problems.append(f"{r.kind}: heartbeats of only {r.heard} agents of {self.agents} recorded")

    def to_json(self) -> Dict[str, Any]:
        idle = self.idle()
        return {"agents": self.agents, "domains": self.domains, "rows": self.rows, "subscribers": self.subscribers,
                "seconds": self.seconds, "load": self.load, "problems": self.problems,
                "paced": [dict(asdict(r), core=r.core, us_per_message=r.us_per_message(idle),
                               system_us_per_message=r.system_us_per_message(idle),
                               switches_per_message=r.switches_per_message(idle)) for r in self.runs]}

    def report(self) -> str:
        idle = self.idle()
        lines = [f"paced ingest: {self.agents} agents × {self.domains} running domains, messages spread evenly over "
                 f"{self.seconds:g} s per run, statistics {self.rows} rows each, {self.subscribers} counting "
                 f"subscriber(s); console CPU = its process's CPU time ({os.cpu_count()} CPUs, load average "
                 f"{self.load:.2f} before)", ""]
        rows = [(r.kind, r.messages / r.wall if r.wall else math.nan, r.heartbeats, r.stats, f"{r.core:.2%}",
                 r.us_per_message(idle), r.system_us_per_message(idle), r.switches_per_message(idle), r.late * 1e3)
                for r in self.runs]
        lines.append(table(rows, ("kind", "messages/s", "heartbeats", "stats", "console CPU / wall",
                                  "µs CPU / message", "of which kernel", "sleeps / message", "sender late, ms")))
        lines += ["", "(per message: the run's CPU (or voluntary context switches: a thread slept, then was woken) "
                      "less the idle run's per second over as long, over the messages sent)"]
        if self.problems:
            lines += ["", "FUNCTIONAL PROBLEMS:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def paced(console: IngestConsole, sender: Any, result: PacedResult, kinds: Sequence[str], rate: float) -> None:
    """The runs, idle first (the others are measured against it)."""
    for kind in sorted(kinds, key=lambda k: k != "idle"):
        result.runs.append(paced_run(console, sender, kind, rate, result.seconds, result.rows, result.subscribers))
