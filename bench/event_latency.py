"""Latency from a libvirt event to the console subscriber that receives it, in direct mode.

An agent serving ``test:///default`` (libvirt's built-in test hypervisor, one driver instance per
process) runs in a process of its own, as on a host (bench/event_host.py; ``--agent in-process``
puts it in the benchmark's process, as the runs before issue 12's last measurements did), with a
libvirt connection of its own to the same driver that suspends and resumes the domain ``test``
``--cycles`` times; a console in the benchmark's process is connected to the agent over AMQP on
loopback. For each operation it measures from just before the libvirt call to the moment a
console subscriber (``console.subscribe(kinds=LibvirtEvent)``, queue mode) receives the matching
domainLifecycle event (wall clocks of one host).

Parts of the latency: the libvirt call itself (until it returns); the call → the timestamp
the agent puts on the event (wall clock, same host; taken when libvirt's event loop hands the
event to the agent); and that timestamp → the subscriber (the agent's event pump, its push,
AMQP over loopback, the console's decode, updater and subscriber queue).

Baselines in the same run: the request/response round trip of ``getInfo`` through the same
console (``--rtt`` calls). A poller at interval T notices a change after T/2 on average
(plus a round trip), at worst after T; the report puts that beside the push latency. And a bare
proton echo (``bench.proton_echo``: two processes, each a MessagingHandler on its own reactor,
``--echo`` round trips, half before the agent starts and half after it stopped, so that a machine
whose load changes during the run moves both sides of the ratio): what the wire and proton cost
alone. The getInfo round trip and the event → subscriber latency are reported as ratios of
its p50 — what virtq's own hops (thread hand-offs, codec) add (issue 12).

    python -m bench.event_latency                  # the make bench run (500 cycles)
    python -m bench.event_latency --cycles 5000
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from virtq.console import Console
from virtq.console.events import LibvirtEvent, Overflowed

from .common import bench_main, percentile, ratio
from .event_host import DOMAIN, URI, InProcessHost, ProcessHost
from .fleetsim.tables import table
from .proton_echo import echo_rtts

TARGET_P99_MS = 20.0
TARGET_RTT_RATIO = 1.5  # issue 12: getInfo RTT p50 ≤ 1.5× the bare proton echo's p50
TARGET_EVENT_RATIO = 2.0  # issue 12: libvirt event → subscriber p50 ≤ 2× the bare proton echo's p50
POLL_INTERVALS = (3.0, 15.0)  # VDSM's engine polled every 3 s (statistics) to 15 s


@dataclass
class Series:
    """Milliseconds, one value per operation."""

    values: List[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return percentile(self.values, q)

    def summary(self) -> Dict[str, float]:
        return {"p50": self.p(50), "p99": self.p(99), "max": max(self.values) if self.values else math.nan,
                "mean": sum(self.values) / len(self.values) if self.values else math.nan,
                "samples": len(self.values)}


@dataclass
class Result:
    cycles: int
    operations: int
    received: int
    missing: int
    overflowed: int
    total: Series  # call start -> subscriber
    call: Series  # call start -> libvirt returned
    to_agent: Series  # call start -> the agent's timestamp on the event (wall clock)
    to_subscriber: Series  # the agent's timestamp -> subscriber
    rtt: Series  # getInfo request -> response, through the console
    echo: Series = field(default_factory=Series)  # a bare proton echo's round trip (two processes, no virtq)
    load: Tuple[float, float] = (math.nan, math.nan)  # 1-minute load average before and after the run
    problems: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        for name in ("total", "call", "to_agent", "to_subscriber", "rtt", "echo"):
            data[name] = getattr(self, name).summary()
        data.update(rtt_over_echo=self.over_echo(self.rtt), event_over_echo=self.over_echo(self.total))
        return data

    def over_echo(self, series: Series) -> float:
        """A series' p50 as a multiple of the bare proton echo's p50 (NaN without an echo)."""
        return ratio(series.p(50), self.echo.p(50)) if self.echo.values else math.nan

    def report(self) -> str:
        rows = [(label, s.p(50), s.p(99), max(s.values) if s.values else math.nan, len(s.values))
                for label, s in (("libvirt event → subscriber (total)", self.total),
                                 ("  the libvirt call (suspend/resume) returns", self.call),
                                 ("  call → the agent's timestamp on the event", self.to_agent),
                                 ("  the agent's timestamp → subscriber", self.to_subscriber),
                                 ("baseline: getInfo round trip (request → answer)", self.rtt),
                                 ("baseline: bare proton echo round trip (no virtq)", self.echo))]
        p50, p99 = self.total.p(50), self.total.p(99)
        polls = [(f"poller every {t:g} s: detection after (T/2 + RTT, T + RTT)",
                  t / 2 * 1000 + self.rtt.p(50), t * 1000 + self.rtt.p(99),
                  (t / 2 * 1000 + self.rtt.p(50)) / p50 if p50 else math.nan) for t in POLL_INTERVALS]
        lines = [
            f"event latency: {self.operations} lifecycle operations ({self.cycles} suspend/resume cycles) on "
            f"{URI}, direct mode over loopback",
            f"events received {self.received}, missing {self.missing}, subscriber overflows {self.overflowed}; "
            f"load average {self.load[0]:.2f} before, {self.load[1]:.2f} after ({os.cpu_count()} CPUs)",
            "",
            table(rows, ("milliseconds", "p50", "p99", "max", "samples")),
            "",
            table([(label, a, b, f"{r:,.0f}×") for label, a, b, r in polls],
                  ("polling, derived from the RTT above (ms)", "mean", "worst", "mean / push p50")),
            "",
            f"target (issue 4): p99 ≤ {TARGET_P99_MS:g} ms: {p99:.2f} ms "
            f"({'met' if p99 <= TARGET_P99_MS else 'NOT met'})",
        ] + self._hops()
        if self.problems:
            lines += ["", "FUNCTIONAL PROBLEMS:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


    def _hops(self) -> List[str]:
        """What virtq adds to the wire: p50s over the bare proton echo's p50, against issue 12's targets."""
        if not self.echo.values:
            return []
        lines = ["", f"over the bare proton echo (p50 {self.echo.p(50):.2f} ms):"]
        for label, series, target in (("getInfo round trip", self.rtt, TARGET_RTT_RATIO),
                                      ("libvirt event → subscriber", self.total, TARGET_EVENT_RATIO)):
            over = self.over_echo(series)
            lines.append(f"  {label}: p50 {series.p(50):.2f} ms = {over:.1f}× the echo "
                         f"(target, issue 12: ≤ {target:g}×: {'met' if over <= target else 'NOT met'})")
        return lines


def run(cycles: int = 500, rtt_calls: int = 200, warmup: int = 20, timeout: float = 5.0,
        workdir: Optional[Path] = None, echo_calls: int = 500, in_process: bool = False) -> Result:
    problems: List[str] = []
    total, call, to_agent, to_subscriber, rtt = Series(), Series(), Series(), Series(), Series()
    received = missing = overflowed = 0
    load_before = os.getloadavg()[0]
    echo = Series(echo_rtts(echo_calls // 2, warmup) if echo_calls else [])  # before the agent: an idle process
    host = InProcessHost(workdir) if in_process else ProcessHost()
    try:
        with Console(host.url, timeout=10.0) as console:
            remote = console.domains.get(DOMAIN)
            with console.subscribe(kinds=(LibvirtEvent,)) as events:
                def next_lifecycle(expected: str) -> Optional[LibvirtEvent]:
                    nonlocal overflowed
                    deadline = time.monotonic() + timeout
                    while True:
                        left = deadline - time.monotonic()
                        event = events.get(left) if left > 0 else None
                        if event is None:
                            return None
                        if isinstance(event, Overflowed):
                            overflowed += event.dropped
                        elif (isinstance(event, LibvirtEvent) and event.name == "domainLifecycle"
                              and event.event == expected and event.object_id.object_name.endswith(host.uuid)):
                            return event

                for i in range(warmup + cycles):
                    for operation, expected in (("suspend", "suspended"), ("resume", "resumed")):
                        wall, call_ms = host.operate(operation)
                        event = next_lifecycle(expected)
                        arrived = time.time_ns()  # the wall clock: the call may have been made in another process
                        if i < warmup:
                            continue
                        if event is None:
                            missing += 1
                            continue
                        received += 1
                        total.values.append((arrived - wall) / 1e6)
                        call.values.append(call_ms)
                        to_agent.values.append((event.timestamp - wall) / 1e6)
                        to_subscriber.values.append((arrived - event.timestamp) / 1e6)
                for _ in range(rtt_calls):
                    start = time.perf_counter_ns()
                    remote.getInfo()
                    rtt.values.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        host.stop()
    if echo_calls:
        echo.values += echo_rtts(echo_calls - echo_calls // 2, warmup)  # and after it: the same machine, later
        if len(echo.values) < echo_calls:
            problems.append(f"the bare proton echo answered {len(echo.values)} of {echo_calls} round trips")
    if missing:
        problems.append(f"{missing} of {2 * cycles} lifecycle events never reached the subscriber "
                        f"(waited {timeout:g} s each)")
    if overflowed:
        problems.append(f"the subscriber's queue overflowed ({overflowed} events dropped)")
    return Result(cycles, 2 * cycles, received, missing, overflowed, total, call, to_agent, to_subscriber, rtt,
                  echo, (load_before, os.getloadavg()[0]), problems)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=500, help="suspend/resume cycles (default 500)")
    parser.add_argument("--rtt", type=int, default=200, help="getInfo round trips for the baseline (default 200)")
    parser.add_argument("--echo", type=int, default=500,
                        help="bare proton echo round trips for the wire's baseline (default 500; 0: none)")
    parser.add_argument("--warmup", type=int, default=20, help="cycles before measuring (default 20)")
    parser.add_argument("--agent", choices=("process", "in-process"), default="process",
                        help="the agent in a process of its own, as on a host (default), or in the benchmark's")
    return bench_main(parser, argv, lambda args: run(args.cycles, args.rtt, args.warmup, echo_calls=args.echo,
                                                     in_process=args.agent == "in-process"))

if __name__ == "__main__":
    sys.exit(main())
