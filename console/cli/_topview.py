"""``virtq top``'s frames: a pure function from what top knows (a row per domain, the view the keys chose,
the time, the terminal's size) to the lines to show. No terminal and no console here: frames are
unit-tested as they are.

A frame: a summary that always stays (hosts and domains by state; CPU % of the running vCPUs or why it is
not known yet; what the active domains hold), the keys on a terminal, then the table, sorted, cut to the
terminal's height with a "+N more" line. Without a size (not a terminal) every row is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from virtq.schema.states import DOMAIN_STATES

from ._output import printable

__all__ = ["ACTIVE_STATES", "CPU_STATES", "SORTS", "SORT_KEYS", "DomainRow", "Fleet", "HostRow", "View",
           "host_rows", "render", "sort_domains"]

CPU_STATES = frozenset({1, 2, 4})
"""virDomainState codes whose cpuTime moves: running, blocked, shutdown (being shut down)."""
ACTIVE_STATES = frozenset({1, 2, 3, 4, 7})
"""virDomainState codes of domains that hold their memory and vCPUs: those above, paused, pmsuspended."""
SORTS = ("cpu", "mem", "name", "state", "host")
SORT_KEYS = {"c": "cpu", "m": "mem", "n": "name", "s": "state", "h": "host"}
"""Keys that sort, and by what."""
KEYS_HELP = "keys: c cpu, m mem, n name, s state, h host, 1 per host, q quit"
NAME_WIDTH, HOST_WIDTH = 40, 24
"""Longer names and hosts are cut (with "…") in the table; JSON has them whole."""
STALE_NOTE = "* agent lost (no heartbeat): its values may be outdated"


@dataclass(frozen=True)
class DomainRow:
    """One domain as top shows it. ``cpu``: % of its vCPUs, 0.0 when not running, None until known."""

    host: str
    agent: str
    name: str
    uuid: Optional[str]
    state_code: Optional[int]
    cpu: Optional[float]
    memory_kib: Optional[int]
    vcpus: Optional[int]
    stale: bool = False

    @property
    def state(self) -> str:
        return DOMAIN_STATES.get(self.state_code, "unknown") if self.state_code is not None else "unknown"

    @property
    def running(self) -> bool:
        return self.state_code in CPU_STATES

    @property
    def active(self) -> bool:
        return self.state_code in ACTIVE_STATES

    @property
    def warming_up(self) -> bool:
        """Running, but no two samples seen yet: its CPU % is not known."""
        return self.running and self.cpu is None

    def record(self) -> Dict[str, Any]:
        """The row as ``virtq --json top`` prints it."""
        return {"host": self.host, "agent": self.agent, "name": self.name, "uuid": self.uuid, "state": self.state,
                "cpu": None if self.cpu is None else round(self.cpu, 2),
                "memory_mib": None if self.memory_kib is None else self.memory_kib / 1024,
                "vcpus": self.vcpus, "stale": self.stale}


@dataclass(frozen=True)
class HostRow:
    """One host's domains together (the per-host view)."""

    host: str
    stale: bool
    domains: int
    running: int
    vcpus: int
    memory_kib: int
    cpu: Optional[float]


@dataclass(frozen=True)
class Fleet:
    """What top knows at one moment: the domains, how many hosts (agents) it follows and how many are lost."""

    rows: Sequence[DomainRow]
    hosts: int
    lost: int
    now: datetime


@dataclass(frozen=True)
class View:
    """What the keys chose: the sort and whether a row is a domain or a host."""

    sort: str = "cpu"
    per_host: bool = False

    def press(self, key: str) -> "View":
        """The view after a key (keys that mean nothing leave it as it is)."""
        if key == "1":
            return replace(self, per_host=not self.per_host)
        sort = SORT_KEYS.get(key.lower())
        return replace(self, sort=sort) if sort else self


def pooled_cpu(rows: Iterable[DomainRow]) -> Tuple[Optional[float], int]:
    """(CPU % of the running domains' vCPUs together, those vCPUs); the % over the domains whose CPU is known,
    None when none is yet, 0.0 when none runs."""
    running = [r for r in rows if r.running]
    known = [r for r in running if r.cpu is not None]
    vcpus = sum(r.vcpus or 1 for r in running)
    if not running:
        return 0.0, 0
    if not known:
        return None, vcpus
    busy = sum((r.cpu or 0.0) * (r.vcpus or 1) for r in known)
    return busy / sum(r.vcpus or 1 for r in known), vcpus


def host_rows(rows: Sequence[DomainRow]) -> List[HostRow]:
    by_host: Dict[str, List[DomainRow]] = {}
    for row in rows:
        by_host.setdefault(row.host, []).append(row)
    found = []
    for host, domains in by_host.items():
        active = [d for d in domains if d.active]
        found.append(HostRow(host, any(d.stale for d in domains), len(domains), sum(d.running for d in domains),
                             sum(d.vcpus or 0 for d in active), sum(d.memory_kib or 0 for d in active),
                             pooled_cpu(domains)[0]))
    return found


def _descending(value: Optional[float]) -> float:
    return 1.0 if value is None else -value  # not known (None) after every known value


DOMAIN_ORDER: Dict[str, Callable[[DomainRow], Tuple[Any, ...]]] = {
    "cpu": lambda r: (_descending(r.cpu), r.host, r.name),
    "mem": lambda r: (_descending(r.memory_kib), r.host, r.name),
    "name": lambda r: (r.name, r.host),
    "state": lambda r: (99 if r.state_code is None else r.state_code, r.host, r.name),
    "host": lambda r: (r.host, r.name),
}
HOST_ORDER: Dict[str, Callable[[HostRow], Tuple[Any, ...]]] = {
    "cpu": lambda h: (_descending(h.cpu), h.host),
    "mem": lambda h: (-h.memory_kib, h.host),
    "state": lambda h: (-h.running, h.host),
    "host": lambda h: (h.host,),
}


def sort_domains(rows: Iterable[DomainRow], sort: str) -> List[DomainRow]:
    """CPU and memory highest first, state in virDomainState order (running first), else by name or host."""
    return sorted(rows, key=DOMAIN_ORDER[sort])


def _number(value: Optional[float], digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _columns(header: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[bool]) -> List[str]:
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return [line(header)] + [line(c) for c in cells]


def _host_cell(host: str, stale: bool) -> str:
    return _clip(printable(host), HOST_WIDTH) + ("*" if stale else "")


def _domain_table(rows: Sequence[DomainRow]) -> List[str]:
    cells = [(_host_cell(r.host, r.stale), _clip(printable(r.name), NAME_WIDTH), r.state, _number(r.cpu, 1),
              _number(None if r.memory_kib is None else r.memory_kib / 1024), _number(r.vcpus)) for r in rows]
    return _columns(("HOST", "NAME", "STATE", "CPU%", "MEM(MiB)", "VCPUS"), cells,
                    (False, False, False, True, True, True))


def _host_table(rows: Sequence[HostRow]) -> List[str]:
    cells = [(_host_cell(h.host, h.stale), str(h.domains), str(h.running), str(h.vcpus), _number(h.cpu, 1),
              _number(h.memory_kib / 1024)) for h in rows]
    return _columns(("HOST", "DOMAINS", "RUNNING", "VCPUS", "CPU%", "MEM(MiB)"), cells,
                    (False, True, True, True, True, True))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _memory(kib: int) -> str:
    mib = kib / 1024
    return f"{mib / 1024:.1f} GiB" if mib >= 10 * 1024 else f"{mib:.0f} MiB"


def summary(fleet: Fleet) -> List[str]:
    """The lines that always stay: hosts and domains by state; CPU (or why not yet); what active domains hold."""
    states: Dict[Tuple[int, str], int] = {}
    for row in fleet.rows:
        order = (99 if row.state_code is None else row.state_code, row.state)
        states[order] = states.get(order, 0) + 1
    by_state = ", ".join(f"{n} {state}" for (_, state), n in sorted(states.items()))
    lost = f" ({fleet.lost} lost)" if fleet.lost else ""
    first = (f"virtq top - {fleet.now:%H:%M:%S} - {_plural(fleet.hosts, 'host')}{lost}, "
             f"{_plural(len(fleet.rows), 'domain')}" + (f": {by_state}" if by_state else ""))
    running = [r for r in fleet.rows if r.running]
    warming = sum(r.warming_up for r in running)
    percent, vcpus = pooled_cpu(running)
    if warming:
        cpu = (f"CPU warming up: {warming} of {_plural(len(running), 'running domain')} without a second pushed "
               f"sample yet (CPU% -)")
    else:
        cpu = f"CPU {_number(percent, 1)}% of {_plural(vcpus, 'running vCPU')}"
    active = [r for r in fleet.rows if r.active]
    held = (f"active: {_plural(len(active), 'domain')}, {_plural(sum(r.vcpus or 0 for r in active), 'vCPU')}, "
            f"{_memory(sum(r.memory_kib or 0 for r in active))}")
    return [first, f"{cpu} - {held}"]


def _fit(body: List[str], room: int) -> List[str]:
    """At most ``room`` lines: the first rows and a "+N more" line when they do not all fit."""
    if len(body) <= room:
        return body
    shown = max(0, room - 1)
    return body[:shown] + [f"+{len(body) - shown} more"] if room > 0 else []


def render(fleet: Fleet, view: View, size: Optional[Tuple[int, int]] = None, keys: bool = False) -> List[str]:
    """The frame's lines. ``size`` (columns, lines): cut to fit it, summary and header kept; None: every row,
    lines as long as they are. ``keys``: say which keys do what (on a terminal)."""
    head = summary(fleet)
    if keys:
        head.append(f"sort: {view.sort}{' (per host)' if view.per_host else ''} - {KEYS_HELP}")
    if not fleet.rows:
        table = ["(no domains)"]
    elif view.per_host:
        table = _host_table(sorted(host_rows(fleet.rows), key=HOST_ORDER.get(view.sort, HOST_ORDER["host"])))
    else:
        table = _domain_table(sort_domains(fleet.rows, view.sort))
    foot = [STALE_NOTE] if any(r.stale for r in fleet.rows) else []
    if size is None:
        return head + table + foot
    columns, lines = size
    room = lines - len(head) - len(foot) - 1  # the table's header stays too
    frame = head + table[:1] + _fit(table[1:], room) + foot
    return [line[:columns] for line in frame[:lines]]
