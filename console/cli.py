"""``virtq``: ad-hoc calls on the console library. Parse, call the console, format.

Exit codes: 0 ok; 1 other errors; 2 usage; 3 agent unreachable / not connected;
4 unknown or ambiguous reference; 5 error reported by the agent (libvirt's included);
6 timeout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, TypeVar

import click

from virtq.schema import errors, types
from virtq.schema.codec import ObjectId

from ._console import LOST_AFTER, Console
from .events import (AgentAdded, AgentLost, AgentRestarted, ConfigChanged, DomainStateChanged, Event, LibvirtEvent,
                     ObjectAdded, ObjectEvent, ObjectRemoved, Overflowed, StatsUpdated)
from .objects import RemoteObject, describe
from .subscriptions import Subscription

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


def cli_error(message: str, exit_code: int = 1) -> click.ClickException:
    error = click.ClickException(message)
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
                 addressing: str = "direct") -> None:
        self.urls = urls
        self.timeout = timeout
        self.as_json = as_json
        self.addressing = addressing
        self._console = console

    def console(self, ctx: click.Context) -> Console:
        if self._console is None:
            urls = [u for url in self.urls for u in url.split()]  # VIRTQ_URL may hold several
            console = Console(urls, timeout=self.timeout, addressing=self.addressing)
            self._console = ctx.with_resource(console)
            for url, why in console.unreachable.items():
                click.echo(f"warning: {why}", err=True)
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
@click.option("-v", "--verbose", count=True, help="Log warnings (-v) or everything (-vv) to stderr.")
@click.pass_context
def cli(ctx: click.Context, urls: Sequence[str], addressing: str, timeout: float, as_json: bool,
        verbose: int) -> None:
    """Manage libvirt hosts served by virtq agents."""
    level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    given = ctx.obj if isinstance(ctx.obj, Console) else None
    ctx.obj = State(urls, timeout, as_json, given, addressing)


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
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
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


@cli.command()
@click.pass_context
def agents(ctx: click.Context) -> None:
    """The agents this console reached."""
    state = _state(ctx)
    console = state.console(ctx)
    rows = [{"name": a.name, "hostname": a.hostname, "uri": a.uri, "epoch": a.epoch, "url": a.url,
             "heartbeat": a.heartbeat_interval} for a in sorted(console.agents, key=lambda a: a.name)]
    if state.as_json:
        _emit_json(rows)
    else:
        _table(rows, ("name", "hostname", "uri", "epoch", "url"))


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
        click.echo(f"{key + ':':<9} {value}")


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
            click.echo(f"{key}: {_plain(value)}")
    elif isinstance(result, RemoteObject):
        click.echo(" ".join(f"{k}={v}" for k, v in describe(result).items()))
    else:
        click.echo(_plain(result))


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
    text = console.call(obj, "getXMLDesc", {"flags": flags} if flags else {})
    if state.as_json:
        _emit_json({"xml": text})
    else:
        click.echo(str(text).rstrip("\n"))


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
    if _state(ctx).as_json:
        _emit_json({"method": method.name, "libvirt": method.libvirt, "desc": method.desc, "arguments": args})
        return
    click.echo(f"{cls.name}.{method.name}  ({method.libvirt})")
    if method.desc:
        click.echo(f"  {method.desc}")
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
