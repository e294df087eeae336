"""``virtq top``: a live table of domains across agents, like virt-top, built from what the agents push
(never by calling them).

This module follows the pushed statistics and runs the loop; the frames are ``_topview``'s (a pure
function), CPU % ``_topcpu``'s, the terminal (alternate screen, keys) ``_topscreen``'s.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any, Hashable, List, Mapping, Optional, Tuple

import click

from virtq.console import Console
from virtq.console.events import Event, StatsApplied

from ._app import state_of
from ._errors import EXIT_UNREACHABLE, cli_error
from ._output import echo_line, host_name, object_label
from ._topcpu import CpuMeter
from ._topscreen import Screen
from ._topview import CPU_STATES, SORTS, DomainRow, Fleet, View, render, sort_domains

TICK = 0.25
"""Seconds between looks at the keys, the terminal's size and the console while waiting for a frame."""


def _count(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Follower:
    """What top knows: the console's domains, and a CPU meter fed from the pushed statistics batches
    (``StatsApplied``, one event per batch, on the subscription's thread)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.meter = CpuMeter()
        self.subscription = console.subscribe(self._take, kinds=StatsApplied)
        for dom in console.domains:  # after subscribing: a sample seen twice counts once
            self.meter.add((dom.agent, dom.object_id.object_name), dom.stats_ts, _count(dom.stats.get("cpuTime")))

    @property
    def closed(self) -> bool:
        return self.subscription.closed

    def close(self) -> None:
        self.console.unsubscribe(self.subscription)

    def _take(self, event: Event) -> None:
        if not isinstance(event, StatsApplied) or event.class_name != "Domain":
            return
        cpu_times = event.columns.get("cpuTime")
        for index in range(len(event.keys)):
            key: Hashable = (event.agent, event.object_name(index))
            cpu_time = None if cpu_times is None else _count(cpu_times[index])
            if cpu_time is None and not self.meter.knows(key):  # unchanged, but the meter has none: read it
                obj = self.console.find(event.object_id(index))
                cpu_time = None if obj is None else _count(obj.stats.get("cpuTime"))
            self.meter.add(key, event.sample_ts, cpu_time)

    def fleet(self) -> Fleet:
        """The domains now, with their CPU %."""
        rows: List[DomainRow] = []
        keys: List[Hashable] = []
        for dom in self.console.repository("Domain"):
            key = (dom.agent, dom.object_id.object_name)
            keys.append(key)
            stats: Mapping[str, Any] = dom.stats
            state, vcpus = _count(stats.get("state")), _count(stats.get("nrVirtCpu"))
            uuid = dom.values.get("uuid")
            rows.append(DomainRow(host_name(self.console, dom.agent), dom.agent, object_label(dom),
                                  None if uuid is None else str(uuid), state,
                                  self.meter.percent(key, vcpus) if state in CPU_STATES else 0.0,
                                  _count(stats.get("memory")), vcpus, dom.stale))
        self.meter.retain(keys)
        agents = list(self.console.agents)
        return Fleet(rows, len(agents), sum(self.console.is_lost(a.name) for a in agents),
                     datetime.now().astimezone())


def _check(follower: Follower) -> None:
    if follower.closed:
        raise cli_error("unreachable: the console closed", EXIT_UNREACHABLE)


def _plain(follower: Follower, view: View, interval: float, iterations: Optional[int], as_json: bool) -> None:
    """Frames as plain text (blank-line separated) or JSON lines, one every ``interval``."""
    frames = 0
    while iterations is None or frames < iterations:
        until = time.monotonic() + interval
        while (remaining := until - time.monotonic()) > 0:
            _check(follower)
            time.sleep(min(remaining, TICK))
        _check(follower)
        frames += 1
        fleet = follower.fleet()
        if as_json:
            echo_line(json.dumps({"time": fleet.now.isoformat(timespec="milliseconds"),
                                  "domains": [r.record() for r in sort_domains(fleet.rows, view.sort)]},
                                 sort_keys=True, default=str))
            continue
        if frames > 1:
            echo_line("")
        for line in render(fleet, view):
            echo_line(line)


def _stdin() -> Optional[int]:
    """stdin's file descriptor, where keys come from (None: there is none)."""
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        return None


def _interactive(follower: Follower, view: View, interval: float, iterations: Optional[int]) -> None:
    """Frames redrawn in place on the alternate screen; keys change the view at once."""
    with Screen(sys.stdout, keys_from=_stdin()) as screen:
        fleet, frames, due = follower.fleet(), 1, time.monotonic() + interval
        shown: Optional[Tuple[View, Tuple[int, int]]] = None  # what the frame on the screen was drawn for
        while True:
            size = screen.size()
            if shown != (view, size):
                screen.draw(render(fleet, view, size, keys=True))
                shown = (view, size)
            remaining = due - time.monotonic()
            if remaining <= 0:
                if iterations is not None and frames >= iterations:
                    return
                fleet, frames, due = follower.fleet(), frames + 1, max(due + interval, time.monotonic())
                shown = None
                continue
            for key in screen.keys(min(remaining, TICK)):
                if key in "qQ":
                    return
                view = view.press(key)
            _check(follower)


TOP_HELP = """A live table of domains across agents, like virt-top: host, name, state,
CPU %, memory, vCPUs; above it a summary of hosts, domains by state, the CPU
of the running vCPUs and what the active domains hold.

\b
Built from what the agents push (statistics every agent --interval), never
by calling them. CPU % is a domain's cpuTime delta between its last two
pushed samples over the time between them, divided by its vCPUs (100 %:
all its vCPUs busy); 0.0 when not running. Until a running domain's second
sample arrives its CPU% is "-" and the summary says "warming up".

\b
On a terminal the table fits the screen (sorted, "+N more" for the rest)
and is redrawn in place on the alternate screen. Keys:
  c  sort by CPU      m  by memory     n  by name
  s  by state         h  by host       1  one row per host (again: per domain)
  q  quit (or Ctrl-C)
Otherwise (--batch, or output not a terminal) a plain table is printed
every --interval, tables separated by a blank line.
"""


@click.command(help=TOP_HELP, short_help="A live table of domains across agents, like virt-top.")
@click.option("--interval", "--delay", "interval", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds between tables.")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Exit after N tables (default: until q or Ctrl-C).")
@click.option("--sort", type=click.Choice(SORTS, case_sensitive=False), default="cpu", show_default=True,
              help="Order: CPU % or memory (highest first), name, state (running first) or host.")
@click.option("--per-host", is_flag=True, help="One row per host (key 1 toggles it on a terminal).")
@click.option("-b", "--batch", is_flag=True, help="Plain tables, one after the other, even on a terminal.")
@click.option("--json", "json_lines", is_flag=True, help="One JSON object per table (same as virtq --json top).")
@click.pass_context
def top(ctx: click.Context, interval: float, iterations: Optional[int], sort: str, per_host: bool, batch: bool,
        json_lines: bool) -> None:
    state = state_of(ctx)
    as_json = json_lines or state.as_json
    follower = Follower(state.console(ctx))
    view = View(sort.lower(), per_host)
    try:
        if as_json or batch or not sys.stdout.isatty():
            _plain(follower, view, interval, iterations, as_json)
        else:
            _interactive(follower, view, interval, iterations)
    except KeyboardInterrupt:
        return
    finally:
        follower.close()
