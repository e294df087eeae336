"""``virtq top``: a live table of domains across agents, like virt-top, built from what the agents push."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

from virtq.console import Console, RemoteObject
from virtq.console.events import StatsUpdated
from virtq.console.subscriptions import Subscription

from ._app import state_of
from ._errors import EXIT_UNREACHABLE, cli_error
from ._output import echo_line, host_name, object_label

CPU_STATES = frozenset({1, 2, 4})
"""virDomainState codes whose cpuTime moves: running, blocked, shutdown (being shut down)."""
SORTS = ("cpu", "mem", "name")


class _CpuMeter:
    """CPU % per domain from the last two pushed samples: the cpuTime delta (ns) over the delta of their
    sample timestamps (the agent's, ns), as a percentage of one CPU."""

    def __init__(self) -> None:
        self._samples: Dict[Tuple[str, str], List[Tuple[int, int]]] = {}

    def add(self, obj: RemoteObject) -> None:
        cpu_time = obj.stats.get("cpuTime")
        if not obj.stats_ts or not isinstance(cpu_time, int):
            return  # not a pushed sample (a query's answer carries no sample time)
        samples = self._samples.setdefault((obj.agent, obj.object_id.object_name), [])
        if not samples or obj.stats_ts > samples[-1][0]:
            samples[:] = samples[-1:] + [(obj.stats_ts, cpu_time)]

    def percent(self, obj: RemoteObject) -> Optional[float]:
        """0.0 for domains that are not running; None until two samples are known (or after a restart)."""
        if obj.stats.get("state") not in CPU_STATES:
            return 0.0
        samples = self._samples.get((obj.agent, obj.object_id.object_name), [])
        if len(samples) < 2:
            return None
        (ts0, cpu0), (ts1, cpu1) = samples
        if cpu1 < cpu0:  # cpuTime restarted with the domain
            return None
        return 100.0 * (cpu1 - cpu0) / (ts1 - ts0)


def _top_rows(console: Console, meter: _CpuMeter, sort: str) -> List[Dict[str, Any]]:
    rows = []
    for dom in console.domains:
        memory, cpu = dom.stats.get("memory"), meter.percent(dom)
        rows.append({"host": host_name(console, dom.agent), "agent": dom.agent, "name": object_label(dom),
                     "uuid": dom.values.get("uuid"), "state": dom.state_name,
                     "cpu": None if cpu is None else round(cpu, 2),
                     "memory_mib": memory / 1024 if isinstance(memory, int) else None,
                     "vcpus": dom.stats.get("nrVirtCpu"), "stale": dom.stale})
    rows.sort(key=lambda r: (r["host"], r["name"]))
    if sort == "cpu":
        rows.sort(key=lambda r: -1.0 if r["cpu"] is None else r["cpu"], reverse=True)
    elif sort == "mem":
        rows.sort(key=lambda r: -1.0 if r["memory_mib"] is None else r["memory_mib"], reverse=True)
    return rows


def _top_table(rows: List[Dict[str, Any]], now: datetime) -> List[str]:
    states: Dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    hosts = len({r["agent"] for r in rows})
    summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    lines = [f"virtq top - {now:%H:%M:%S} - {hosts} host(s), {len(rows)} domain(s)" + (f": {summary}" if summary
                                                                                       else "")]
    if not rows:
        return lines + ["(no domains)"]
    header = ("HOST", "NAME", "STATE", "CPU%", "MEM(MiB)", "VCPUS")
    cells = [(r["host"] + ("*" if r["stale"] else ""), r["name"], r["state"],
              "-" if r["cpu"] is None else f"{r['cpu']:.1f}",
              "-" if r["memory_mib"] is None else f"{r['memory_mib']:.0f}",
              "-" if r["vcpus"] is None else str(r["vcpus"])) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = (False, False, False, True, True, True)

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    lines += [fmt(header)] + [fmt(c) for c in cells]
    if any(r["stale"] for r in rows):
        lines.append("* agent lost (no heartbeat): its values may be outdated")
    return lines


@click.command(short_help="A live table of domains across agents, like virt-top.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds between tables.")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Exit after N tables (default: until Ctrl-C).")
@click.option("--sort", type=click.Choice(SORTS, case_sensitive=False), default="cpu", show_default=True,
              help="Order: CPU % or memory (highest first), or host and name.")
@click.option("--json", "json_lines", is_flag=True, help="One JSON object per table (same as virtq --json top).")
@click.pass_context
def top(ctx: click.Context, interval: float, iterations: Optional[int], sort: str, json_lines: bool) -> None:
    """A live table of domains across agents, like virt-top: host, name, state, CPU %, memory, vCPUs.

    Built from what the agents push (statistics every agent --interval, when they change), never by
    calling them. CPU % is the cpuTime delta between a domain's last two pushed samples over the time
    between them, as a percentage of one CPU ("-" until two samples arrived; 0.0 when not running).
    On a terminal the table is redrawn in place; otherwise a table is printed every --interval.
    """
    state = state_of(ctx)
    console = state.console(ctx)
    as_json = json_lines or state.as_json
    redraw = not as_json and sys.stdout.isatty()
    meter = _CpuMeter()
    subscription = console.subscribe(kinds=StatsUpdated)
    for dom in console.domains:
        meter.add(dom)
    frames = 0
    try:
        while iterations is None or frames < iterations:
            _follow_samples(subscription, meter, time.monotonic() + interval)
            frames += 1
            now = datetime.now().astimezone()
            rows = _top_rows(console, meter, sort.lower())
            if as_json:
                echo_line(json.dumps({"time": now.isoformat(timespec="milliseconds"), "domains": rows},
                                     sort_keys=True, default=str))
                continue
            if redraw:
                click.clear()
            elif frames > 1:
                echo_line("")
            for line in _top_table(rows, now):
                echo_line(line)
    except KeyboardInterrupt:
        return
    finally:
        console.unsubscribe(subscription)


def _follow_samples(subscription: Subscription, meter: _CpuMeter, until: float) -> None:
    """Take in pushed samples until ``until`` (monotonic)."""
    while (remaining := until - time.monotonic()) > 0:
        event = subscription.get(timeout=remaining)
        if isinstance(event, StatsUpdated) and event.obj.class_name == "Domain":
            meter.add(event.obj)
        elif event is None and subscription.closed:
            raise cli_error("unreachable: the console closed", EXIT_UNREACHABLE)
