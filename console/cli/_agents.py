"""``virtq agents``: the agents a console reached, and their state."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import click

from virtq.console import AgentView, Console

from ._app import state_of
from ._output import emit_json, printable, table

COLUMNS = ("name", "hostname", "version", "epoch", "heartbeat", "libvirt", "reconnects", "domains", "pools",
           "volumes", "url", "state")
"""The table's columns; STATE stays last (scripts and tests read the line's end)."""


def agent_state(console: Console, agent: AgentView) -> str:
    """'lost' (no heartbeat for 3 intervals), 'ok', or 'degraded: <why>' as its last heartbeat said."""
    return "lost" if console.is_lost(agent.name) else agent.health.state


def libvirt_state(agent: AgentView) -> str:
    """'connected', 'disconnected' or 'unresponsive' (or what a newer agent says) as its last heartbeat said."""
    return "connected" if agent.health.libvirt == "ok" else agent.health.libvirt


def age(seconds: float) -> str:
    """A heartbeat's age in one word, e.g. '2s', '5m', '3h' (table cells carry no spaces)."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"


def agent_row(console: Console, agent: AgentView, now: float) -> Dict[str, Any]:
    """Everything ``--json`` says of one agent (``heartbeat``: the interval, as before; ``heartbeat_age``: seconds
    since the last one, by the console's clock)."""
    return {"name": agent.name, "hostname": agent.hostname, "uri": agent.uri, "epoch": agent.epoch, "url": agent.url,
            "heartbeat": agent.heartbeat_interval, "heartbeat_age": round(agent.heartbeat_age(now), 3),
            "version": agent.version, "schema_hash": agent.schema_hash, "schema_mismatch": agent.schema_mismatch,
            "libvirt": libvirt_state(agent), "libvirt_connected": agent.health.libvirt_connected,
            "libvirt_reconnects": agent.libvirt_reconnects, "transport_reconnects": agent.transport_reconnects,
            "objects": agent.objects, "state": agent_state(console, agent), "health": dataclasses.asdict(agent.health)}


def text_row(row: Dict[str, Any]) -> Dict[str, Any]:
    """One table row from ``agent_row``: '-' for what the agent does not say."""
    def known(value: Optional[Any]) -> Any:
        return "-" if value is None or value == "" else value
    counts = row["objects"]
    return {**row, "version": known(row["version"]), "heartbeat": age(row["heartbeat_age"]),
            "reconnects": known(row["libvirt_reconnects"]),
            **{c: known(counts.get(c[:-1].capitalize())) for c in ("domains", "pools", "volumes")}}


def schema_warning(console: Console, agent: AgentView) -> str:
    return (f"warning: agent {printable(agent.name)} uses schema {printable(agent.schema_hash, 80)}, this console "
            f"{console.schema.hash}: calls and properties may not match")


@click.command()
@click.pass_context
def agents(ctx: click.Context) -> None:
    """The agents this console reached: version, last heartbeat's age, libvirt connected, libvirt reconnects,
    objects, and state: ok, degraded (libvirt unresponsive or disconnected, calls stuck in libvirt — as the
    agent's heartbeats say) or lost (no heartbeat for 3 intervals). Agents whose schema differs from the
    console's get a warning line on stderr."""
    state = state_of(ctx)
    console = state.console(ctx)
    now = console.clock()
    views = sorted(console.agents, key=lambda a: a.name)
    for view in views:
        if view.schema_mismatch:
            click.echo(schema_warning(console, view), err=True)
    rows = [agent_row(console, a, now) for a in views]
    if state.as_json:
        emit_json(rows)
    else:
        table([text_row(r) for r in rows], COLUMNS)
