"""``virtq agents``: the agents a console reached, and their state."""

from __future__ import annotations

import dataclasses

import click

from virtq.console import AgentView, Console

from ._app import state_of
from ._output import emit_json, table


def agent_state(console: Console, agent: AgentView) -> str:
    """'lost' (no heartbeat for 3 intervals), 'ok', or 'degraded: <why>' as its last heartbeat said."""
    return "lost" if console.is_lost(agent.name) else agent.health.state


@click.command()
@click.pass_context
def agents(ctx: click.Context) -> None:
    """The agents this console reached, and their state: ok, degraded (libvirt unresponsive, calls stuck in
    libvirt — as the agent's heartbeats say) or lost (no heartbeat for 3 intervals)."""
    state = state_of(ctx)
    console = state.console(ctx)
    rows = [{"name": a.name, "hostname": a.hostname, "uri": a.uri, "epoch": a.epoch, "url": a.url,
             "heartbeat": a.heartbeat_interval, "state": agent_state(console, a),
             "health": dataclasses.asdict(a.health)} for a in sorted(console.agents, key=lambda a: a.name)]
    if state.as_json:
        emit_json(rows)
    else:
        table(rows, ("name", "hostname", "uri", "epoch", "url", "state"))
