"""``virtq exporter``: a console that follows the fleet and serves what it holds to Prometheus."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Dict, Optional, Tuple

import click

from virtq.console.exporter import Exporter

from ._app import state_of
from ._errors import cli_error
from ._output import printable

EXPORTER_HELP = """Serve the fleet's per-domain and per-agent metrics to Prometheus at
http://HOST:PORT/metrics, from what this console holds: a scrape asks no
agent and no libvirt anything.

\b
Per domain (labels host, domain, uuid), as prometheus-libvirt-exporter names them:
  libvirt_domain_info_state, libvirt_domain_info_cpu_time_seconds_total,
  libvirt_domain_info_maximum_memory_bytes, libvirt_domain_info_memory_usage_bytes,
  libvirt_domain_info_virtual_cpus
Per agent (labels host, agent): libvirt_up, libvirt_domains, virtq_fleet_agent_up,
  virtq_fleet_agent_last_heartbeat_age_seconds, virtq_fleet_agent_epoch
The exporter: virtq_exporter_agents, virtq_exporter_stats_records_total

Follows the agents the global -u/--url and --addressing options name, like
every command. Runs until SIGINT or SIGTERM. The endpoint has no
authentication and its metrics carry host and domain names: listen on
loopback unless who can reach the port is restricted otherwise.
See docs/OPERATIONS.md, "The fleet exporter".
"""


def parse_listen(listen: str) -> Tuple[str, int]:
    """HOST:PORT ("[::1]:9177" for IPv6; ":9177" for every address) as (host, port)."""
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{listen!r}: expected HOST:PORT (port 0 picks a free one)", param_hint="--listen")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def _wait_for_a_signal() -> None:
    """Block until SIGINT or SIGTERM (the handlers that were there before are put back)."""
    stop = threading.Event()

    def handle(number: int, frame: Optional[FrameType]) -> None:
        stop.set()

    previous: Dict[signal.Signals, Any] = {}
    for stopping in (signal.SIGINT, signal.SIGTERM):
        previous[stopping] = signal.signal(stopping, handle)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for stopping, handler in previous.items():
            signal.signal(stopping, handler)


@click.command(help=EXPORTER_HELP, short_help="Serve the fleet's metrics to Prometheus.")
@click.option("--listen", required=True, metavar="HOST:PORT",
              help="Where to serve /metrics, e.g. 127.0.0.1:9177 (port 0 picks a free one).")
@click.pass_context
def exporter(ctx: click.Context, listen: str) -> None:
    host, port = parse_listen(listen)
    console = state_of(ctx).console(ctx)
    served = Exporter(console, host, port)
    try:
        served.start()
    except OSError as exc:
        raise cli_error(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    ctx.with_resource(served)  # closed before the console
    if not served.loopback:
        click.echo(f"warning: {served.url} is not authenticated and its metrics carry host and domain names: "
                   "restrict who can reach it (firewall, a TLS proxy), or listen on loopback", err=True)
    click.echo(f"exporting {len(console.agents)} agents on {printable(served.url)}")
    _wait_for_a_signal()
