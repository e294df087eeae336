"""What bench.ingest prints: records per console CPU-second and bytes per running VM, new encoding against old."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench.common import ratio
from bench.fleetsim.tables import table

from .measure import Run
from .traffic import MessageSize

__all__ = ["RATE_TARGETS", "TARGET_BYTES", "Result"]

RATE_TARGETS = {1000: 200_000.0, 30: 100_000.0}
"""Issue 12: records per console CPU-second with one subscriber, by batch rows."""
TARGET_BYTES = 30.0
"""Issue 12: bytes per changed running VM per sample at 30 VMs per message, framing share included."""


@dataclass
class Result:
    agents: int
    domains: int
    seconds: float
    load: float = math.nan  # 1-minute load average before the run
    runs: List[Run] = field(default_factory=list)
    sizes: Dict[str, List[MessageSize]] = field(default_factory=dict)  # encoding -> one per batch size
    problems: List[str] = field(default_factory=list)

    def run(self, encoding: str, rows: int, subscribers: int) -> Optional[Run]:
        return next((r for r in self.runs if (r.encoding, r.rows, r.subscribers) == (encoding, rows, subscribers)),
                    None)

    def size(self, encoding: str, rows: int) -> Optional[MessageSize]:
        return next((s for s in self.sizes.get(encoding, []) if s.rows == rows), None)

    def configurations(self) -> List[Tuple[int, int]]:
        return sorted({(r.rows, r.subscribers) for r in self.runs})

    def check(self) -> None:
        """Functional problems only (never timings): rows lost, subscribers that heard nothing."""
        for r in self.runs:
            if r.stalled:
                self.problems.append(f"{r.encoding}, {r.rows} rows, {r.subscribers} subscribers: the console stopped "
                                     f"applying what it was sent (-v shows why)")
            elif r.messages == 0:
                self.problems.append(f"{r.encoding}, {r.rows} rows, {r.subscribers} subscribers: nothing was sent")
            elif r.applied != r.records:
                self.problems.append(f"{r.encoding}, {r.rows} rows, {r.subscribers} subscribers: {r.records} rows "
                                     f"sent, {r.applied} applied")
            if r.subscribers and r.events == 0:
                self.problems.append(f"{r.encoding}, {r.rows} rows: {r.subscribers} subscribers received nothing")

    def to_json(self) -> Dict[str, Any]:
        return {"agents": self.agents, "domains": self.domains, "seconds": self.seconds, "load": self.load,
                "problems": self.problems,
                "runs": [dict(asdict(r), rate=r.rate, us_per_record=r.us_per_record) for r in self.runs],
                "sizes": {e: [dict(asdict(s), per_vm=s.per_vm, fixed_share=s.fixed_share) for s in sizes]
                          for e, sizes in self.sizes.items()}}

    def report(self) -> str:
        lines = [f"ingest: {self.agents} agents × {self.domains} running domains pushing _stats over loopback AMQP "
                 f"into one Console; {self.seconds:g} s per run; console CPU = its process's CPU time "
                 f"({os.cpu_count()} CPUs, load average {self.load:.2f} before)", ""]
        rows = []
        for batch, subscribers in self.configurations():
            new, old = self.run("new", batch, subscribers), self.run("old", batch, subscribers)
            rows.append((batch, subscribers, _rate(new), _rate(old), _ratio(new, old), _us(new), _us(old),
                         _busy(new), _busy(old), new.events if new else math.nan, old.events if old else math.nan))
        lines.append(table(rows, ("batch rows", "subscribers", "new rec/CPU-s", "old rec/CPU-s", "new/old",
                                  "new µs/rec", "old µs/rec", "new CPU/wall", "old CPU/wall", "new events/sub",
                                  "old events/sub")))
        batches = sorted({s.rows for sizes in self.sizes.values() for s in sizes})
        size_rows = []
        for batch in batches:
            new_size, old_size = self.size("new", batch), self.size("old", batch)
            size_rows.append((batch, _per_vm(new_size), _per_vm(old_size),
                              ratio(_per_vm(new_size), _per_vm(old_size)),
                              new_size.fixed_share if new_size else math.nan,
                              old_size.fixed_share if old_size else math.nan,
                              new_size.message if new_size else math.nan, old_size.message if old_size else math.nan))
        lines += ["", table(size_rows, ("batch rows", "new B/VM", "old B/VM", "new/old", "new fixed B/VM",
                                        "old fixed B/VM", "new B/message", "old B/message"))]
        lines += ["", "(B/VM: encoded message bytes / rows, the fixed part's share included; fixed: the same message "
                      "with no rows)", ""] + self._targets()
        drops = sum(r.dropped for r in self.runs)
        if drops:
            lines.append(f"subscriber queues overflowed: {drops:,} events dropped in all (counted, not delivered)")
        if self.problems:
            lines += ["", "FUNCTIONAL PROBLEMS:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def _targets(self) -> List[str]:
        lines = []
        for batch, target in sorted(RATE_TARGETS.items(), reverse=True):
            run = self.run("new", batch, 1)
            if run is not None:
                lines.append(f"target (issue 12): ≥ {target:,.0f} records per console CPU-second at {batch}-row "
                             f"batches, one subscriber: {run.rate:,.0f} ({_met(run.rate >= target)})")
        size = self.size("new", 30)
        if size is not None:
            lines.append(f"target (issue 12): ≤ {TARGET_BYTES:g} B per changed running VM at 30 VMs per message: "
                         f"{size.per_vm:.1f} B ({_met(size.per_vm <= TARGET_BYTES)})")
        return lines


def _rate(run: Optional[Run]) -> float:
    return run.rate if run is not None else math.nan


def _us(run: Optional[Run]) -> float:
    return run.us_per_record if run is not None else math.nan


def _ratio(new: Optional[Run], old: Optional[Run]) -> float:
    return ratio(new.rate, old.rate) if new is not None and old is not None else math.nan


def _busy(run: Optional[Run]) -> str:
    """The console's CPU over the run's wall time: near 100 % (or above: threads) it was the bottleneck."""
    return f"{run.cpu / run.wall:.0%}" if run is not None and run.wall > 0 else "–"


def _per_vm(size: Optional[MessageSize]) -> float:
    return size.per_vm if size is not None else math.nan


def _met(met: bool) -> str:
    return "met" if met else "NOT met"


def cells(batches: Sequence[int], subscribers: Sequence[int], encodings: Sequence[str]) -> List[Tuple[int, int, str]]:
    """The runs in the order they are made: encodings side by side for each configuration."""
    return [(b, s, e) for b in batches for s in subscribers for e in encodings]
