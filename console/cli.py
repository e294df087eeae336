"""``virtq``: ad-hoc calls on the console library. Parse, call the console, format.

Exit codes: 0 ok; 1 other errors; 2 usage; 3 agent unreachable / not connected;
4 unknown or ambiguous reference; 5 error reported by the agent (libvirt's included);
6 timeout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, TypeVar

import click

from virtq.logs import shown
from virtq.schema import errors, types
from virtq.schema.codec import ObjectId
from virtq.transport import TlsError

from ._console import LOST_AFTER, Console
from .events import (AgentAdded, AgentDegraded, AgentLost, AgentRecovered, AgentRestarted, ConfigChanged,
                     DomainStateChanged, Event, LibvirtEvent, LimitReached, ObjectAdded, ObjectEvent, ObjectRemoved,
                     Overflowed, StatsUpdated)
from .objects import RemoteObject, describe
from .repository import AgentView
from .subscriptions import Subscription
from .trust import parse_users

EXIT_UNREACHABLE = 3
EXIT_BAD_REF = 4
EXIT_REMOTE = 5
EXIT_TIMEOUT = 6

CLASSES = ("node", "domain", "pool", "volume")
COLUMNS: Dict[str, Sequence[str]] = {
    "Node": ("hostname", "uuid", "uri"),
    "Domain": ("name", "uuid", "id"),
    "Pool": ("name", "uuid"),
    "Volume": ("name", "key", "path", "pool"),
}

F = TypeVar("F", bound=Callable[..., Any])

SHOWN = 4_000
"""Characters of one agent-supplied value printed (names, hostnames, results, error texts)."""
_XML_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0d, 0x20), 0x7f,
                                               *range(0x80, 0xa0))}


def printable(value: Any, limit: int = SHOWN) -> str:
    """What an agent supplied, printable: control characters (terminal escape sequences, carriage returns,
    newlines that forge lines) escaped, the length bounded. JSON output needs none of this (json.dumps
    escapes them)."""
    return shown(value if isinstance(value, str) else str(value), limit)


def xml_text(document: str) -> str:
    """An XML document as printed by ``virtq xml``: as is but for control characters other than newline and
    tab (XML 1.0 allows no other C0 control; ESC and C1 controls would drive the terminal)."""
    return document.translate(_XML_CONTROLS)


def cli_error(message: str, exit_code: int = 1) -> click.ClickException:
    error = click.ClickException(printable(message))
    error.exit_code = exit_code  # type: ignore[misc]  # ClickException declares it per class
    return error


def _translate(exc: errors.VirtqError) -> click.ClickException:
    if isinstance(exc, errors.NotConnectedError):
        return cli_error(f"unreachable: {exc}", EXIT_UNREACHABLE)
    if isinstance(exc, (errors.UnknownRefError, errors.AmbiguousRefError)):
        return cli_error(str(exc), EXIT_BAD_REF)
    if isinstance(exc, errors.CallTimeoutError):
        return cli_error(f"timeout: {exc}", EXIT_TIMEOUT)
    if isinstance(exc, errors.RemoteError):
        kind = "libvirt error" if isinstance(exc, errors.LibvirtError) else "agent error"
        return cli_error(f"{kind} {exc.error_code:#x}: {exc.error_text}" if exc.error_code >= errors.STATUS_USER
                         else f"{kind} {exc.error_code}: {exc.error_text}", EXIT_REMOTE)
    return cli_error(str(exc))


class _Group(click.Group):
    """Turns virtq errors raised by any command into messages with their exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.VirtqError as exc:
            raise _translate(exc) from exc


class State:
    def __init__(self, urls: Sequence[str], timeout: float, as_json: bool, console: Optional[Console],
                 addressing: str = "direct", security: Optional[Dict[str, Any]] = None) -> None:
        self.urls = urls
        self.timeout = timeout
        self.as_json = as_json
        self.addressing = addressing
        self.security = security or {}
        """Console arguments: tls_cert, tls_key, tls_ca, agent_users."""
        self._console = console

    def console(self, ctx: click.Context) -> Console:
        if self._console is None:
            urls = [u for url in self.urls for u in url.split()]  # VIRTQ_URL may hold several
            try:
                console = Console(urls, timeout=self.timeout, addressing=self.addressing, **self.security)
            except TlsError as exc:
                raise cli_error(str(exc), 2) from exc
            self._console = ctx.with_resource(console)
            for url, why in console.unreachable.items():
                click.echo(f"warning: {printable(why)}", err=True)
        return self._console


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-u", "--url", "urls", multiple=True, envvar="VIRTQ_URL", default=("amqp://127.0.0.1:5672",),
              show_default=True, help="An agent's URL (direct mode; repeat for several) or, with --addressing, "
                                      "the broker's (repeat for a failover list). Env: VIRTQ_URL.")
@click.option("--addressing", type=click.Choice(["direct", "qmf", "rabbitmq"]), envvar="VIRTQ_ADDRESSING",
              default="direct", show_default=True,
              help="direct: -u names agents; qmf or rabbitmq: -u names a broker using that address profile. "
                   "Env: VIRTQ_ADDRESSING.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds to wait for connections and answers.")
@click.option("--json", "as_json", is_flag=True, help="JSON output for scripts.")
@click.option("--tls-cert", envvar="VIRTQ_TLS_CERT", type=click.Path(dir_okay=False),
              help="Client certificate (PEM) for amqps:// URLs; its CN is who the agents see. Env: VIRTQ_TLS_CERT.")
@click.option("--tls-key", envvar="VIRTQ_TLS_KEY", type=click.Path(dir_okay=False),
              help="The certificate's private key (PEM). Env: VIRTQ_TLS_KEY.")
@click.option("--tls-ca", envvar="VIRTQ_TLS_CA", type=click.Path(dir_okay=False),
              help="CA that signed the agents' (or broker's) certificates; default: the system's. Env: VIRTQ_TLS_CA.")
@click.option("--agent-users", envvar="VIRTQ_AGENT_USERS", default=None,
              help="Through a broker: accept an agent's messages only from its own broker user — 'instance' "
                   "(the user is the agent's instance name) or USER=AGENT-GLOB,... Env: VIRTQ_AGENT_USERS.")
@click.option("-v", "--verbose", count=True, help="Log warnings (-v) or everything (-vv) to stderr.")
@click.pass_context
def cli(ctx: click.Context, urls: Sequence[str], addressing: str, timeout: float, as_json: bool,
        tls_cert: Optional[str], tls_key: Optional[str], tls_ca: Optional[str], agent_users: Optional[str],
        verbose: int) -> None:
    """Manage libvirt hosts served by virtq agents."""
    level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    given = ctx.obj if isinstance(ctx.obj, Console) else None
    if agent_users and agent_users != "instance":
        try:
            parse_users(agent_users)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--agent-users") from exc
    security = {"tls_cert": tls_cert, "tls_key": tls_key, "tls_ca": tls_ca, "agent_users": agent_users}
    ctx.obj = State(urls, timeout, as_json, given, addressing, security)


def _state(ctx: click.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None
    return state


def _plain(value: Any) -> Any:
    if isinstance(value, RemoteObject):
        return describe(value)
    if isinstance(value, ObjectId):
        return value.object_name
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(_plain(data), indent=2, sort_keys=True, default=str))


def _table(rows: List[Dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[printable(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _host(console: Console, obj: RemoteObject) -> str:
    agent = console.agents.by_name(obj.agent)
    return agent.hostname if agent is not None and agent.hostname else obj.agent


def _objects(console: Console, items: Iterable[RemoteObject]) -> List[RemoteObject]:
    return sorted(items, key=lambda o: (_host(console, o), str(o.values.get("name", o.values.get("uuid", "")))))


def _find(console: Console, class_name: str, ref: str) -> RemoteObject:
    return console.repository(class_name).get(ref)


class_arg = click.argument("class_name", metavar="CLASS", type=click.Choice(CLASSES, case_sensitive=False))


def agent_state(console: Console, agent: AgentView) -> str:
    """'lost' (no heartbeat for 3 intervals), 'ok', or 'degraded: <why>' as its last heartbeat said."""
    return "lost" if console.is_lost(agent.name) else agent.health.state


@cli.command()
@click.pass_context
def agents(ctx: click.Context) -> None:
    """The agents this console reached, and their state: ok, degraded (libvirt unresponsive, calls stuck in
    libvirt — as the agent's heartbeats say) or lost (no heartbeat for 3 intervals)."""
    state = _state(ctx)
    console = state.console(ctx)
    rows = [{"name": a.name, "hostname": a.hostname, "uri": a.uri, "epoch": a.epoch, "url": a.url,
             "heartbeat": a.heartbeat_interval, "state": agent_state(console, a),
             "health": dataclasses.asdict(a.health)} for a in sorted(console.agents, key=lambda a: a.name)]
    if state.as_json:
        _emit_json(rows)
    else:
        _table(rows, ("name", "hostname", "uri", "epoch", "url", "state"))


@cli.command("list")
@click.argument("kind", type=click.Choice(["nodes", "domains", "pools", "volumes"], case_sensitive=False))
@click.pass_context
def list_(ctx: click.Context, kind: str) -> None:
    """List nodes, domains, pools or volumes across agents."""
    state = _state(ctx)
    console = state.console(ctx)
    repo = console.repository(kind)
    objs = _objects(console, repo)
    if state.as_json:
        _emit_json(objs)
        return
    rows = [{"host": _host(console, o), **describe(o)} for o in objs]
    _table(rows, ("host", *COLUMNS[repo.class_name]))


# --- push: watch and top (seed 002: follow what the agents push; nothing here polls them) ---------------

KINDS: Dict[str, Type[Event]] = {
    "agent-added": AgentAdded, "agent-lost": AgentLost, "agent-restarted": AgentRestarted,
    "agent-degraded": AgentDegraded, "agent-recovered": AgentRecovered, "limit": LimitReached,
    "added": ObjectAdded, "removed": ObjectRemoved, "state": DomainStateChanged, "config": ConfigChanged,
    "stats": StatsUpdated, "libvirt": LibvirtEvent,
}
"""``virtq watch --kind`` names and the console events they select."""
CHATTY_KINDS = frozenset({"stats"})
"""Left out unless asked for with --kind."""
AGENT_KINDS = (AgentAdded, AgentLost, AgentRestarted, AgentDegraded, AgentRecovered)
CPU_STATES = frozenset({1, 2, 4})
"""virDomainState codes whose cpuTime moves: running, blocked, shutdown (being shut down)."""
SORTS = ("cpu", "mem", "name")


def _agent_host(console: Console, agent_name: str) -> str:
    view = console.agents.by_name(agent_name)
    return view.hostname if view is not None and view.hostname else agent_name


def _label(obj: RemoteObject) -> str:
    """What people call an object: its name (a node's hostname), else its key."""
    return str(obj.values.get("name") or obj.values.get("hostname") or obj.object_id.object_name.partition(":")[2])


def _kind_of(event: Event) -> str:
    for name, cls in KINDS.items():
        if isinstance(event, cls):
            return name
    return "overflow" if isinstance(event, Overflowed) else type(event).__name__


def _echo_line(line: str) -> None:
    """One line, flushed at once; a reader that went away (``virtq watch | head``) ends the output quietly.
    Control characters in it (from what agents supplied) are escaped."""
    try:
        click.echo(shown(line, 100_000))
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise KeyboardInterrupt from None  # leave the loop like Ctrl-C: exit 0


class _Watcher:
    """Formats console events as lines or JSON objects; remembers object names for events that outlive them."""

    def __init__(self, console: Console, classes: Sequence[str]) -> None:
        self.console = console
        self.classes = frozenset(c.capitalize() for c in classes)
        self.names: Dict[Tuple[str, str], str] = {}
        for class_name in ("Node", "Domain", "Pool", "Volume"):
            for obj in console.repository(class_name):
                self._remember(obj)

    def _remember(self, obj: Optional[RemoteObject]) -> None:
        if obj is not None:
            self.names[(obj.agent, obj.object_id.object_name)] = _label(obj)

    def subject(self, event: Event) -> Tuple[str, str, str, str]:
        """(agent, class, object name, label) of what the event is about; class "agent" for agent events."""
        if isinstance(event, AGENT_KINDS):
            return event.agent.name, "agent", "", event.agent.name
        if isinstance(event, ObjectEvent):
            self._remember(event.obj)
            return event.obj.agent, event.obj.class_name, event.obj.object_id.object_name, _label(event.obj)
        if isinstance(event, LibvirtEvent):
            self._remember(event.obj or self.console.find(event.object_id))
            name = event.object_id.object_name
            label = self.names.get((event.agent, name), name.partition(":")[2])
            return event.agent, name.partition(":")[0], name, label
        return "", "", "", ""

    def wants(self, event: Event) -> bool:
        """--class keeps the events of objects of those classes; agent events always pass."""
        if not self.classes or isinstance(event, AGENT_KINDS + (Overflowed, LimitReached)):
            return True
        return self.subject(event)[1] in self.classes

    @staticmethod
    def what(event: Event) -> str:
        if isinstance(event, AgentAdded):
            return f"added (epoch {event.agent.epoch})"
        if isinstance(event, AgentLost):
            return f"lost (no heartbeat for {LOST_AFTER} intervals; its objects are kept, marked stale)"
        if isinstance(event, AgentRestarted):
            return f"restarted (epoch {event.old_epoch} -> {event.agent.epoch})"
        if isinstance(event, AgentDegraded):
            return f"degraded: {event.reason}"
        if isinstance(event, AgentRecovered):
            return "recovered (libvirt ok, no call stuck)"
        if isinstance(event, ObjectAdded):
            return "added"
        if isinstance(event, ObjectRemoved):
            return "removed"
        if isinstance(event, DomainStateChanged):
            return f"state {event.old} -> {event.new}" + (f" ({event.reason})" if event.reason else "")
        if isinstance(event, ConfigChanged):
            return f"config gen {event.old_gen} -> {event.new_gen}"
        if isinstance(event, StatsUpdated):
            return "stats " + " ".join(f"{k}={_plain(v)}" for k, v in event.changed.items())
        if isinstance(event, LibvirtEvent):
            parts = [event.name, "/".join(p for p in (event.event, event.detail) if p)]
            parts += [f"{k}={json.dumps(_plain(v), default=str)}" for k, v in event.data.items()]
            return " ".join(p for p in parts if p)
        return type(event).__name__

    def line(self, event: Event, now: datetime) -> str:
        stamp = now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
        if isinstance(event, Overflowed):
            return f"{stamp} -- {event.dropped} event(s) dropped: this watch fell behind"
        if isinstance(event, LimitReached):
            return f"{stamp} -- limit {event.limit} ({event.value}) reached: {event.detail}"
        agent, class_name, _, label = self.subject(event)
        job = getattr(event, "job", None)
        return (f"{stamp} {_agent_host(self.console, agent)} {class_name.lower()} {label} {self.what(event)}"
                + (f" [job {job}]" if job is not None else ""))

    def record(self, event: Event, now: datetime) -> Dict[str, Any]:
        """The event as plain JSON data: "type" is its --kind name."""
        data: Dict[str, Any] = {"type": _kind_of(event), "time": now.isoformat(timespec="milliseconds")}
        if isinstance(event, Overflowed):
            return {**data, "dropped": event.dropped}
        if isinstance(event, LimitReached):
            return {**data, "limit": event.limit, "value": event.value, "detail": event.detail}
        agent, class_name, object_name, label = self.subject(event)
        data.update(agent=agent, host=_agent_host(self.console, agent), text=self.what(event))
        if isinstance(event, AGENT_KINDS):
            data["epoch"] = event.agent.epoch
            if isinstance(event, AgentRestarted):
                data["old_epoch"] = event.old_epoch
            if isinstance(event, (AgentDegraded, AgentRecovered)):
                data["health"] = dataclasses.asdict(event.agent.health)
            return data
        data.update({"class": class_name, "object": object_name, "name": label, "job": getattr(event, "job", None)})
        if isinstance(event, (ObjectAdded, ObjectRemoved)):
            data["properties"] = _plain(dict(event.obj.values))
        elif isinstance(event, DomainStateChanged):
            data.update(old=event.old, new=event.new, reason=event.reason)
        elif isinstance(event, ConfigChanged):
            data.update(old_gen=_plain(event.old_gen), new_gen=_plain(event.new_gen))
        elif isinstance(event, StatsUpdated):
            data.update(changed=_plain(dict(event.changed)), sample_ts=event.obj.stats_ts)
        elif isinstance(event, LibvirtEvent):
            data.update(libvirt=event.name, event=event.event, detail=event.detail, data=_plain(dict(event.data)),
                        timestamp=event.timestamp, severity=event.severity)
        return data


WATCH_HELP = """Follow the console's event stream: one line per event, as the agents push it.

\b
Each line: time, host (agent), object class and name, what happened, e.g.
  12:00:01.234 hv01 domain web1 state running -> paused (suspended/paused)
  12:00:01.235 hv01 domain web1 domainLifecycle suspended/paused
With --json (here or before the command): one JSON object per line, with
"type" (the kind below), "time", "agent", "host", "class", "name", "text"
and the event's own fields.

\b
Kinds (--kind, repeat for several; default: every kind but stats):
  agent-added      an agent answered (or came back after being lost)
  agent-lost       no heartbeat for 3 intervals; its objects are kept, stale
  agent-restarted  the agent's epoch changed; the console re-reads it all
  agent-degraded   its heartbeat says libvirt is unresponsive or calls are stuck
  agent-recovered  its heartbeat says libvirt is ok again, no call stuck
  limit            a console bound was hit (agents, objects, tombstones …)
  added            an object appeared (defined, created, found)
  removed          an object went away
  state            a domain's state changed: old -> new (libvirt's reason)
  config           configGen moved: the object's XML may have changed
  stats            pushed statistics that changed (chatty: ask for it)
  libvirt          the agent's libvirt events: lifecycle, reboot, I/O error …

--class keeps the events of objects of those classes; agent events are
shown whatever --class says (leave them out with --kind). A line
"-- N event(s) dropped" (JSON type "overflow") says this watch fell behind
and the console dropped the oldest events it held for it. Runs until
Ctrl-C, --count events or --timeout seconds.
"""


@cli.command(help=WATCH_HELP, short_help="Follow pushed events, one line per event.")
@click.option("--class", "classes", multiple=True, type=click.Choice(CLASSES, case_sensitive=False),
              help="Only events of objects of this class (repeatable).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(list(KINDS), case_sensitive=False),
              metavar="NAME", help="Only events of this kind (repeatable; the kinds are listed above).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Exit after N events.")
@click.option("--timeout", "duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after S seconds (exit 6 if --count events did not arrive by then).")
@click.option("--json", "json_lines", is_flag=True, help="JSON lines (same as virtq --json watch).")
@click.pass_context
def watch(ctx: click.Context, classes: Sequence[str], kinds: Sequence[str], count: Optional[int],
          duration: Optional[float], json_lines: bool) -> None:
    state = _state(ctx)
    console = state.console(ctx)
    as_json = json_lines or state.as_json
    selected = {k.lower() for k in kinds} or set(KINDS) - CHATTY_KINDS
    watcher = _Watcher(console, classes)
    subscription = console.subscribe(kinds=tuple(cls for name, cls in KINDS.items() if name in selected))
    deadline = None if duration is None else time.monotonic() + duration
    seen = 0
    try:
        while count is None or seen < count:
            remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if remaining <= 0:
                break
            event = subscription.get(timeout=remaining)
            if event is None:
                if subscription.closed:
                    raise cli_error("unreachable: the console closed", EXIT_UNREACHABLE)
                continue
            if not watcher.wants(event):
                continue
            now = datetime.now().astimezone()
            _echo_line(json.dumps(watcher.record(event, now), sort_keys=True, default=str) if as_json
                       else watcher.line(event, now))
            if not isinstance(event, Overflowed):
                seen += 1
    except KeyboardInterrupt:
        return
    finally:
        console.unsubscribe(subscription)
    if count is not None and seen < count:
        raise cli_error(f"timeout: {seen} of {count} event(s) within {duration:g}s", EXIT_TIMEOUT)


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
        rows.append({"host": _agent_host(console, dom.agent), "agent": dom.agent, "name": _label(dom),
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


@cli.command(short_help="A live table of domains across agents, like virt-top.")
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
    state = _state(ctx)
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
                _echo_line(json.dumps({"time": now.isoformat(timespec="milliseconds"), "domains": rows},
                                      sort_keys=True, default=str))
                continue
            if redraw:
                click.clear()
            elif frames > 1:
                _echo_line("")
            for line in _top_table(rows, now):
                _echo_line(line)
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


@cli.command()
@class_arg
@click.argument("ref")
@click.pass_context
def show(ctx: click.Context, class_name: str, ref: str) -> None:
    """Show one object's identity (REF: uuid, name, key, path or AGENT/NAME)."""
    state = _state(ctx)
    console = state.console(ctx)
    obj = _find(console, class_name, ref)
    if state.as_json:
        _emit_json(obj)
        return
    for key, value in describe(obj).items():
        click.echo(f"{key + ':':<9} {printable(value)}")


def _parse_arguments(obj: RemoteObject, method_name: str, pairs: Sequence[str],
                     console: Optional[Console] = None) -> Dict[str, Any]:
    method = obj.schema.method(method_name)
    if method is None:
        names = ", ".join(sorted(obj.schema.methods))
        raise click.UsageError(f"{obj.class_name} has no method {method_name!r}; methods: {names}")
    declared = {a.name: a for a in method.inputs}
    arguments: Dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise click.UsageError(f"argument {pair!r} is not NAME=VALUE")
        arg = declared.get(name)
        if arg is None:
            raise click.UsageError(f"{method_name} has no argument {name!r}; it takes: "
                                   f"{', '.join(declared) or 'none'}")
        if arg.references and console is not None:  # objects by REF; a list of them: REF,REF,…
            refs = text.split(",") if arg.type == "list" else [text]
            wire = [_find(console, arg.references, r).object_id.to_wire() for r in refs if r]
            arguments[name] = wire if arg.type == "list" else wire[0]
            continue
        try:
            arguments[name] = types.parse_text(arg.type, text)
        except types.TypeCheckError as exc:
            raise click.UsageError(f"{name}: {exc}") from exc
    return arguments


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        _emit_json({"result": result})
    elif result is None:
        click.echo("ok")
    elif isinstance(result, dict):
        for key, value in result.items():
            click.echo(f"{printable(key)}: {printable(_plain(value))}")
    elif isinstance(result, RemoteObject):
        click.echo(printable(" ".join(f"{k}={v}" for k, v in describe(result).items())))
    else:
        click.echo(printable(_plain(result)))


@cli.command()
@class_arg
@click.argument("ref")
@click.argument("method_name", metavar="METHOD")
@click.argument("arguments", nargs=-1, metavar="[NAME=VALUE]...")
@click.pass_context
def call(ctx: click.Context, class_name: str, ref: str, method_name: str, arguments: Sequence[str]) -> None:
    """Call METHOD on an object; argument values are typed by the schema."""
    state = _state(ctx)
    console = state.console(ctx)
    obj = _find(console, class_name, ref)
    parsed = _parse_arguments(obj, method_name, arguments, console)
    _print_result(console.call(obj, method_name, parsed), state.as_json)


@cli.command()
@class_arg
@click.argument("ref")
@click.option("--flags", type=int, default=0, show_default=True, help="getXMLDesc flags.")
@click.pass_context
def xml(ctx: click.Context, class_name: str, ref: str, flags: int) -> None:
    """Print an object's XML description (getXMLDesc)."""
    state = _state(ctx)
    console = state.console(ctx)
    obj = _find(console, class_name, ref)
    if obj.schema.method("getXMLDesc") is None:
        raise click.UsageError(f"{obj.class_name} has no XML description")
    document = console.call(obj, "getXMLDesc", {"flags": flags} if flags else {})
    if state.as_json:
        _emit_json({"xml": document})
    else:
        click.echo(xml_text(str(document).rstrip("\n")))


def _argument_details(arg: Any) -> Dict[str, Any]:
    details: Dict[str, Any] = {"name": arg.name, "dir": arg.direction, "type": arg.type}
    if not arg.required and arg.is_input:
        details["default"] = arg.default
    for key in ("nullable", "references", "fields", "desc"):
        if getattr(arg, key):
            details[key] = list(arg.fields) if key == "fields" else getattr(arg, key)
    if arg.flags:
        details["constants"] = dict(arg.flags)
    return details


def _method_details(ctx: click.Context, cls: Any, method_name: str) -> None:
    method = cls.method(method_name)
    if method is None:
        raise click.UsageError(f"{cls.name} has no method {method_name!r}; `virtq methods {cls.name.lower()}` "
                               "lists them")
    args = [_argument_details(a) for a in method.arguments]
    permissions = [p.annotation for p in method.permissions]
    if _state(ctx).as_json:
        _emit_json({"method": method.name, "libvirt": method.libvirt, "desc": method.desc, "arguments": args,
                    "permissions": permissions})
        return
    click.echo(f"{cls.name}.{method.name}  ({method.libvirt})")
    if method.desc:
        click.echo(f"  {method.desc}")
    click.echo(f"permissions: {', '.join(permissions)}")
    for kind, direction in (("in", "I"), ("out", "O")):
        chosen = [a for a in args if direction in a["dir"]]
        click.echo(f"{kind}:" + ("" if chosen else " -"))
        for a in chosen:
            extra = [f"= {a['default']}" if "default" in a else "", "(may be null)" if a.get("nullable") else "",
                     f"-> {a['references']}" if "references" in a else "",
                     "{" + ", ".join(a["fields"]) + "}" if "fields" in a else ""]
            click.echo("  " + " ".join(x for x in (f"{a['name']}: {a['type']}", *extra) if x))
            if a.get("desc"):
                click.echo(f"      {a['desc']}")
            for constant, value in a.get("constants", {}).items():
                click.echo(f"      {constant} = {value:#x}")


@cli.command()
@class_arg
@click.argument("method_name", metavar="[METHOD]", required=False)
@click.pass_context
def methods(ctx: click.Context, class_name: str, method_name: Optional[str]) -> None:
    """List a class's methods and their arguments, or describe one METHOD (from the schema; no connection)."""
    from virtq.schema import default_schema

    cls = default_schema().cls(class_name.capitalize())
    if method_name is not None:
        _method_details(ctx, cls, method_name)
        return
    state = _state(ctx)
    rows = []
    for method in cls.methods.values():
        ins = [f"{a.name}:{a.type}" + ("" if a.required else f"={a.default}") for a in method.inputs]
        outs = [f"{a.name}:{a.type}" for a in method.outputs]
        rows.append({"method": method.name, "libvirt": method.libvirt, "in": ins, "out": outs})
    if state.as_json:
        _emit_json(rows)
        return
    _table([{**r, "in": " ".join(r["in"]) or "-", "out": " ".join(r["out"]) or "-"} for r in rows],
           ("method", "in", "out", "libvirt"))


@cli.group("schema")
def schema_group() -> None:
    """The schema itself: how much of libvirt's API it covers (no connection needed)."""


@schema_group.command("coverage")
@click.option("--api", "api_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="libvirt-api.xml (default: /usr/share/libvirt/api/libvirt-api.xml, from libvirt-dev).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def schema_coverage(ctx: click.Context, api_path: Optional[Path], as_json: bool) -> None:
    """Per class: libvirt functions exposed as methods, excluded (by category) and the coverage.

    Exits 1 when a function of the four in-scope families is neither exposed nor excluded.
    """
    from virtq.schema import default_schema, generate

    try:
        api = generate.load_api(api_path or generate.API_XML)
    except FileNotFoundError as exc:
        raise cli_error(str(exc)) from exc
    report = generate.coverage(default_schema(), api)
    if as_json or _state(ctx).as_json:
        _emit_json({**report.to_json(), "ok": report.ok})
    else:
        click.echo(generate.format_coverage(report))
    if not report.ok:
        raise cli_error(f"{len(report.unaccounted)} function(s) unaccounted for, "
                        f"{len(report.conflicts)} conflict(s)")


def main() -> None:
    cli(prog_name="virtq")


if __name__ == "__main__":
    main()
