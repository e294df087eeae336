"""The ``virtq`` command group: global options (from the command line, the environment or a profile), and the
console every command shares (made on first use)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Dict, Optional, Sequence

import click
from click.core import ParameterSource

from virtq import package_version
from virtq.console import Console
from virtq.console.trust import parse_users
from virtq.schema import default_schema, errors
from virtq.transport import TlsError

from ._complete import Choice
from ._errors import EXIT_PARTIAL, EXIT_UNREACHABLE, cli_error, translate
from ._output import printable
from ._profiles import load_profile
from ._resolve import bad_scheme, unresolved

CLASSES = ("node", "domain", "pool", "volume", "snapshot", "checkpoint")
"""The CLASS argument's names (console/cli/_complete.py's schema_class gives their schema classes)."""

FOLLOWING = frozenset({"watch", "top", "exporter"})
"""Commands that follow the agents until stopped: the console keeps retrying URLs that were down, so their
absence at the start is reported (stderr) but does not decide the exit code."""

class_arg = click.argument("class_name", metavar="CLASS", type=Choice(CLASSES, case_sensitive=False))


class Group(click.Group):
    """Turns virtq errors raised by any command into messages with their exit codes; a command that went on
    without some agents ends with EXIT_PARTIAL unless --partial-ok."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
        except errors.VirtqError as exc:
            raise translate(exc) from exc
        state = ctx.find_object(State)
        if ctx.invoked_subcommand in FOLLOWING or state is None:
            return result
        if state.missed and not state.partial_ok:
            raise cli_error(f"{len(state.missed)} of {len(state.urls)} URL(s) unreachable, the output covers the "
                            "others (--partial-ok: exit 0)", EXIT_PARTIAL)
        return result


class State:
    def __init__(self, urls: Sequence[str], timeout: float, as_json: bool, console: Optional[Console],
                 addressing: str = "direct", security: Optional[Dict[str, Any]] = None,
                 partial_ok: bool = False) -> None:
        self.urls = [u for url in urls for u in url.split()]  # VIRTQ_URL (or a profile) may hold several
        self.timeout = timeout
        self.as_json = as_json
        self.addressing = addressing
        self.security = security or {}
        """Console arguments: tls_cert, tls_key, tls_ca, agent_users."""
        self.partial_ok = partial_ok
        self.missed: Dict[str, str] = {}
        """URLs that could not be reached or resolved, with why (the console's own, at the end, included)."""
        self._console = console

    def console(self, ctx: click.Context) -> Console:
        if self._console is None:
            for url in self.urls:
                if bad_scheme(url):
                    raise click.UsageError(bad_scheme(url), ctx)
            urls, self.missed = unresolved(self.urls)
            if not urls:
                raise cli_error("unreachable: " + "; ".join(self.missed.values()), EXIT_UNREACHABLE)
            try:
                console = Console(urls, timeout=self.timeout, addressing=self.addressing, **self.security)
            except TlsError as exc:
                raise cli_error(str(exc), 2) from exc
            self._console = ctx.with_resource(console)
            self.missed.update(console.unreachable)
            for why in self.missed.values():
                click.echo(f"warning: {printable(why)}", err=True)
            if self.addressing != "direct":
                self.missed = {}  # a broker's failover URLs: the agents are all behind the one that answered
        return self._console


def state_of(ctx: click.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None
    return state


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"virtq {package_version()} (schema {default_schema().hash})")
    ctx.exit()


def _from_profile(ctx: click.Context, name: Optional[str], given: Dict[str, Any]) -> Dict[str, Any]:
    """The options' values with the profile's filling those left at their built-in defaults."""
    chosen = dict(given)
    for option, text in load_profile(name).items():
        if ctx.get_parameter_source(option) not in (ParameterSource.DEFAULT, None):
            continue
        param = next(p for p in ctx.command.params if p.name == option)
        value: Any = tuple(text.replace(",", " ").split()) if option == "urls" else text
        try:
            chosen[option] = param.type_cast_value(ctx, value)
        except click.BadParameter as exc:
            raise click.UsageError(f"profile {name or 'default'}: {option.replace('_', '-')}: {exc.message}",
                                   ctx) from exc
    return chosen


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
@click.option("-p", "--profile", envvar="VIRTQ_PROFILE", default=None,
              help="Take the options this command line and the environment leave unset from [profile NAME] of "
                   "~/.config/virtq/virtq.conf or /etc/virtq/virtq.conf (default: their [default]). "
                   "Env: VIRTQ_PROFILE.")
@click.option("--partial-ok", is_flag=True,
              help="Exit 0 when some URLs were unreachable and the command went on with the others (else exit 7).")
@click.option("-v", "--verbose", count=True, help="Log warnings (-v) or everything (-vv) to stderr.")
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Print the virtq version and the schema's hash, and exit.")
@click.pass_context
def cli(ctx: click.Context, urls: Sequence[str], addressing: str, timeout: float, as_json: bool,
        tls_cert: Optional[str], tls_key: Optional[str], tls_ca: Optional[str], agent_users: Optional[str],
        profile: Optional[str], partial_ok: bool, verbose: int) -> None:
    """Manage libvirt hosts served by virtq agents."""
    level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    given = ctx.obj if isinstance(ctx.obj, Console) else None
    options = _from_profile(ctx, profile, {"urls": urls, "addressing": addressing, "timeout": timeout,
                                           "tls_cert": tls_cert, "tls_key": tls_key, "tls_ca": tls_ca,
                                           "agent_users": agent_users})
    agent_users = options["agent_users"]
    if agent_users and agent_users != "instance":
        try:
            parse_users(agent_users)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--agent-users") from exc
    security = {key: options[key] for key in ("tls_cert", "tls_key", "tls_ca", "agent_users")}
    ctx.obj = State(options["urls"], options["timeout"], as_json, given, options["addressing"], security, partial_ok)
