"""The ``virtq`` command group: global options, and the console every command shares (made on first use)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Dict, Optional, Sequence

import click

from virtq.console import Console
from virtq.console.trust import parse_users
from virtq.schema import errors
from virtq.transport import TlsError

from ._errors import cli_error, translate
from ._output import printable

CLASSES = ("node", "domain", "pool", "volume")
"""The CLASS argument's names."""

class_arg = click.argument("class_name", metavar="CLASS", type=click.Choice(CLASSES, case_sensitive=False))


class Group(click.Group):
    """Turns virtq errors raised by any command into messages with their exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.VirtqError as exc:
            raise translate(exc) from exc


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


def state_of(ctx: click.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None
    return state


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
