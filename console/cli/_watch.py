"""``virtq watch``: the console's event stream, one line (or JSON object) per event as the agents push it;
nothing here polls them."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from typing import Any, Dict, Optional, Sequence, Tuple, Type

import click

from virtq.console import LOST_AFTER, Console, RemoteObject
from virtq.console.events import (AgentAdded, AgentConflict, AgentDegraded, AgentLost, AgentRecovered, AgentRestarted,
                                  ConfigChanged, DomainMigrated, DomainStateChanged, Event, LibvirtEvent, LimitReached, ObjectAdded,
                                  ObjectEvent, ObjectRemoved, Overflowed, StatsUpdated)

from ._app import CLASSES, state_of
from ._complete import schema_class
from ._errors import EXIT_TIMEOUT, EXIT_UNREACHABLE, cli_error
from ._output import echo_line, host_name, object_label, plain

KINDS: Dict[str, Type[Event]] = {
    "agent-added": AgentAdded, "agent-lost": AgentLost, "agent-restarted": AgentRestarted,
    "agent-degraded": AgentDegraded, "agent-recovered": AgentRecovered, "agent-conflict": AgentConflict,
    "limit": LimitReached,
    "added": ObjectAdded, "removed": ObjectRemoved, "state": DomainStateChanged, "config": ConfigChanged,
    "stats": StatsUpdated, "libvirt": LibvirtEvent, "migrated": DomainMigrated,
}
"""``virtq watch --kind`` names and the console events they select."""
CHATTY_KINDS = frozenset({"stats"})
"""Left out unless asked for with --kind."""
AGENT_KINDS = (AgentAdded, AgentLost, AgentRestarted, AgentDegraded, AgentRecovered, AgentConflict)


def _kind_of(event: Event) -> str:
    for name, cls in KINDS.items():
        if isinstance(event, cls):
            return name
    return "overflow" if isinstance(event, Overflowed) else type(event).__name__


class Watcher:
    """Formats console events as lines or JSON objects; remembers object names for events that outlive them."""

    def __init__(self, console: Console, classes: Sequence[str]) -> None:
        self.console = console
        self.classes = frozenset(schema_class(c) for c in classes)
        self.names: Dict[Tuple[str, str], str] = {}
        for class_name in CLASSES:
            for obj in console.repository(class_name):
                self._remember(obj)

    def _remember(self, obj: Optional[RemoteObject]) -> None:
        if obj is not None:
            self.names[(obj.agent, obj.object_id.object_name)] = object_label(obj)

    def subject(self, event: Event) -> Tuple[str, str, str, str]:
        """(agent, class, object name, label) of what the event is about; class "agent" for agent events."""
        if isinstance(event, AGENT_KINDS):
            return event.agent.name, "agent", "", event.agent.name
        if isinstance(event, ObjectEvent):
            self._remember(event.obj)
            obj = event.obj
            return obj.agent, obj.class_name, obj.object_id.object_name, object_label(obj)
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

    def what(self, event: Event) -> str:
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
        if isinstance(event, AgentConflict):
            return (f"WARNING conflict: {len(event.instances)} agents answer with this name ("
                    + "; ".join(event.instances) + "); following the first")
        if isinstance(event, DomainMigrated):
            return self.migrated(event)
        if isinstance(event, ObjectAdded):
            return "added"
        if isinstance(event, ObjectRemoved):
            return "removed"
        if isinstance(event, DomainStateChanged):
            return f"state {event.old} -> {event.new}" + (f" ({event.reason})" if event.reason else "")
        if isinstance(event, ConfigChanged):
            return f"config gen {event.old_gen} -> {event.new_gen}"
        if isinstance(event, StatsUpdated):
            return "stats " + " ".join(f"{k}={plain(v)}" for k, v in event.changed.items())
        if isinstance(event, LibvirtEvent):
            parts = [event.name, "/".join(p for p in (event.event, event.detail) if p)]
            parts += [f"{k}={json.dumps(plain(v), default=str)}" for k, v in event.data.items()]
            return " ".join(p for p in parts if p)
        return type(event).__name__

    def migrated(self, event: DomainMigrated) -> str:
        downtime = "" if event.downtime is None else f" (downtime {event.downtime} ms)"
        return (f"migrated {host_name(self.console, event.from_agent)} -> {host_name(self.console, event.to_agent)}"
                + downtime)

    def line(self, event: Event, now: datetime) -> str:
        stamp = now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
        if isinstance(event, Overflowed):
            return f"{stamp} -- {event.dropped} event(s) dropped: this watch fell behind"
        if isinstance(event, LimitReached):
            return f"{stamp} -- limit {event.limit} ({event.value}) reached: {event.detail}"
        agent, class_name, _, label = self.subject(event)
        job = getattr(event, "job", None)
        return (f"{stamp} {host_name(self.console, agent)} {class_name.lower()} {label} {self.what(event)}"
                + (f" [job {job}]" if job is not None else ""))

    def record(self, event: Event, now: datetime) -> Dict[str, Any]:
        """The event as plain JSON data: "type" is its --kind name."""
        data: Dict[str, Any] = {"type": _kind_of(event), "time": now.isoformat(timespec="milliseconds")}
        if isinstance(event, Overflowed):
            return {**data, "dropped": event.dropped}
        if isinstance(event, LimitReached):
            return {**data, "limit": event.limit, "value": event.value, "detail": event.detail}
        agent, class_name, object_name, label = self.subject(event)
        data.update(agent=agent, host=host_name(self.console, agent), text=self.what(event))
        if isinstance(event, AGENT_KINDS):
            data["epoch"] = event.agent.epoch
            if isinstance(event, AgentRestarted):
                data["old_epoch"] = event.old_epoch
            if isinstance(event, AgentConflict):
                data["instances"] = list(event.instances)
            if isinstance(event, (AgentDegraded, AgentRecovered)):
                data["health"] = dataclasses.asdict(event.agent.health)
            return data
        data.update({"class": class_name, "object": object_name, "name": label, "job": getattr(event, "job", None)})
        if isinstance(event, (ObjectAdded, ObjectRemoved)):
            data["properties"] = plain(dict(event.obj.values))
        elif isinstance(event, DomainStateChanged):
            data.update(old=event.old, new=event.new, reason=event.reason)
        elif isinstance(event, DomainMigrated):
            data.update(from_agent=event.from_agent, to_agent=event.to_agent, downtime=event.downtime)
        elif isinstance(event, ConfigChanged):
            data.update(old_gen=plain(event.old_gen), new_gen=plain(event.new_gen))
        elif isinstance(event, StatsUpdated):
            data.update(changed=plain(dict(event.changed)), sample_ts=event.obj.stats_ts)
        elif isinstance(event, LibvirtEvent):
            data.update(libvirt=event.name, event=event.event, detail=event.detail, data=plain(dict(event.data)),
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
  agent-conflict   two live agents answer with one name (same host UUID):
                   the first is followed, the others ignored
  limit            a console bound was hit (agents, objects, tombstones …)
  added            an object appeared (defined, created, found)
  removed          an object went away
  state            a domain's state changed: old -> new (libvirt's reason)
  config           configGen moved: the object's XML may have changed
  stats            pushed statistics that changed (chatty: ask for it)
  libvirt          the agent's libvirt events: lifecycle, reboot, I/O error …
  migrated         a domain moved to another agent (live migration): one
                   line instead of its removed/added pair

--class keeps the events of objects of those classes; agent events are
shown whatever --class says (leave them out with --kind). A line
"-- N event(s) dropped" (JSON type "overflow") says this watch fell behind
and the console dropped the oldest events it held for it. Runs until
Ctrl-C, --count events or --timeout seconds.
"""


@click.command(help=WATCH_HELP, short_help="Follow pushed events, one line per event.")
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
    state = state_of(ctx)
    console = state.console(ctx)
    as_json = json_lines or state.as_json
    selected = {k.lower() for k in kinds} or set(KINDS) - CHATTY_KINDS
    watcher = Watcher(console, classes)
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
            echo_line(json.dumps(watcher.record(event, now), sort_keys=True, default=str) if as_json
                      else watcher.line(event, now))
            if not isinstance(event, Overflowed):
                seen += 1
    except KeyboardInterrupt:
        return
    finally:
        console.unsubscribe(subscription)
    if count is not None and seen < count:
        raise cli_error(f"timeout: {seen} of {count} event(s) within {duration:g}s", EXIT_TIMEOUT)
