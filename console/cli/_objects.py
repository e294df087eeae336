"""Commands that ask an object's agent: ``call`` and ``xml``."""

from __future__ import annotations

from typing import Sequence

import click

from virtq.console import Console, RemoteObject
from virtq.schema import default_schema
from virtq.schema.constants import ConstantError, parse_flags
from virtq.schema.streams import stream_argument

from ._app import class_arg, state_of
from ._arguments import method_of, parse_arguments
from ._complete import complete_method, complete_ref, schema_class
from ._output import emit_json, xml_text
from ._results import named_states, print_result


def _find(console: Console, class_name: str, ref: str) -> RemoteObject:
    return console.repository(class_name).get(ref)


def _empty_line(obj: RemoteObject, method_name: str) -> str:
    """'no domains' for a method that returns a list of domains; '(empty)' otherwise."""
    method = method_of(obj.schema, method_name)
    kinds = {a.references for a in method.outputs if a.references}
    return f"no {kinds.pop().lower()}s" if len(kinds) == 1 else "(empty)"


@click.command()
@class_arg
@click.argument("ref", shell_complete=complete_ref)
@click.argument("method_name", metavar="METHOD", shell_complete=complete_method)
@click.argument("arguments", nargs=-1, metavar="[NAME=VALUE]...")
@click.pass_context
def call(ctx: click.Context, class_name: str, ref: str, method_name: str, arguments: Sequence[str]) -> None:
    """Call METHOD on an object; argument values are typed by the schema.

    Integers may be libvirt constant names OR-ed (flags=VIR_DOMAIN_XML_INACTIVE|VIR_DOMAIN_XML_SECURE);
    strings may be read from a file (xml=@dom.xml) or stdin (xml=@-); objects are given by REF."""
    if stream_argument(method_of(default_schema().cls(schema_class(class_name)), method_name)) is not None:
        raise click.UsageError(f"{method_name} moves its data as a stream: use virtq screenshot, virtq volume "
                               "download|upload or virtq console")  # (checked before connecting, like the method)
    state = state_of(ctx)
    console = state.console(ctx)
    obj = _find(console, class_name, ref)
    parsed = parse_arguments(obj, method_name, arguments, lambda cls, r: _find(console, cls, r))
    result = console.call(obj, method_name, parsed)
    if not state.as_json:
        result = named_states(obj.class_name, method_name, result)
    print_result(result, state.as_json, _empty_line(obj, method_name))


def _flags(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_flags(value)
    except ConstantError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


@click.command()
@class_arg
@click.argument("ref", shell_complete=complete_ref)
@click.option("--flags", default="0", show_default=True, callback=_flags,
              help="getXMLDesc flags: a number or libvirt constant names OR-ed (VIR_DOMAIN_XML_INACTIVE|…).")
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
