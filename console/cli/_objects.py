"""Commands on the objects agents serve: ``list``, ``show``, ``call``, ``xml``."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence

import click

from virtq.console import Console, RemoteObject, describe
from virtq.schema import types

from ._app import class_arg, state_of
from ._output import emit_json, host_name, plain, printable, table, xml_text

COLUMNS: Dict[str, Sequence[str]] = {
    "Node": ("hostname", "uuid", "uri"),
    "Domain": ("name", "uuid", "id"),
    "Pool": ("name", "uuid"),
    "Volume": ("name", "key", "path", "pool"),
}


def _sorted(console: Console, items: Iterable[RemoteObject]) -> List[RemoteObject]:
    return sorted(items, key=lambda o: (host_name(console, o.agent),
                                        str(o.values.get("name", o.values.get("uuid", "")))))


def _find(console: Console, class_name: str, ref: str) -> RemoteObject:
    return console.repository(class_name).get(ref)


@click.command("list")
@click.argument("kind", type=click.Choice(["nodes", "domains", "pools", "volumes"], case_sensitive=False))
@click.pass_context
def list_(ctx: click.Context, kind: str) -> None:
    """List nodes, domains, pools or volumes across agents."""
    state = state_of(ctx)
    console = state.console(ctx)
    repo = console.repository(kind)
    objs = _sorted(console, repo)
    if state.as_json:
        emit_json(objs)
        return
    rows = [{"host": host_name(console, o.agent), **describe(o)} for o in objs]
    table(rows, ("host", *COLUMNS[repo.class_name]))


@click.command()
@class_arg
@click.argument("ref")
@click.pass_context
def show(ctx: click.Context, class_name: str, ref: str) -> None:
    """Show one object's identity (REF: uuid, name, key, path or AGENT/NAME)."""
    state = state_of(ctx)
    console = state.console(ctx)
    obj = _find(console, class_name, ref)
    if state.as_json:
        emit_json(obj)
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
        emit_json({"result": result})
    elif result is None:
        click.echo("ok")
    elif isinstance(result, dict):
        for key, value in result.items():
            click.echo(f"{printable(key)}: {printable(plain(value))}")
    elif isinstance(result, RemoteObject):
        click.echo(printable(" ".join(f"{k}={v}" for k, v in describe(result).items())))
    else:
        click.echo(printable(plain(result)))


@click.command()
@class_arg
@click.argument("ref")
@click.argument("method_name", metavar="METHOD")
@click.argument("arguments", nargs=-1, metavar="[NAME=VALUE]...")
@click.pass_context
def call(ctx: click.Context, class_name: str, ref: str, method_name: str, arguments: Sequence[str]) -> None:
    """Call METHOD on an object; argument values are typed by the schema."""
    state = state_of(ctx)
    console = state.console(ctx)
    obj = _find(console, class_name, ref)
    parsed = _parse_arguments(obj, method_name, arguments, console)
    _print_result(console.call(obj, method_name, parsed), state.as_json)


@click.command()
@class_arg
@click.argument("ref")
@click.option("--flags", type=int, default=0, show_default=True, help="getXMLDesc flags.")
@click.pass_context
def xml(ctx: click.Context, class_name: str, ref: str, flags: int) -> None:
    """Print an object's XML description (getXMLDesc)."""
    state = state_of(ctx)
    console = state.console(ctx)
    obj = _find(console, class_name, ref)
    if obj.schema.method("getXMLDesc") is None:
        raise click.UsageError(f"{obj.class_name} has no XML description")
    document = console.call(obj, "getXMLDesc", {"flags": flags} if flags else {})
    if state.as_json:
        emit_json({"xml": document})
    else:
        click.echo(xml_text(str(document).rstrip("\n")))
