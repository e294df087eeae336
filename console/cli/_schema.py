"""Commands on the schema itself, answered without a connection: ``methods`` and ``schema coverage``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Optional

import click

from virtq.schema import ClassSchema, default_schema
from virtq.schema.coverage import Coverage, format_coverage, load_coverage

from ._app import class_arg, state_of
from ._arguments import method_of
from ._complete import complete_method, schema_class
from ._errors import cli_error
from ._output import emit_json, table

GENERATOR = "python -m tools.schemagen"
"""The source tree's build tool that computes coverage.json (not part of the installed package)."""


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


def _method_details(ctx: click.Context, cls: ClassSchema, method_name: str) -> None:
    method = method_of(cls, method_name)
    args = [_argument_details(a) for a in method.arguments]
    permissions = [p.annotation for p in method.permissions]
    if state_of(ctx).as_json:
        emit_json({"method": method.name, "libvirt": method.libvirt, "desc": method.desc, "arguments": args,
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


@click.command()
@class_arg
@click.argument("method_name", metavar="[METHOD]", required=False, shell_complete=complete_method)
@click.pass_context
def methods(ctx: click.Context, class_name: str, method_name: Optional[str]) -> None:
    """List a class's methods and their arguments, or describe one METHOD (from the schema; no connection)."""
    cls = default_schema().cls(schema_class(class_name))
    if method_name is not None:
        _method_details(ctx, cls, method_name)
        return
    state = state_of(ctx)
    rows = []
    for method in cls.methods.values():
        ins = [f"{a.name}:{a.type}" + ("" if a.required else f"={a.default}") for a in method.inputs]
        outs = [f"{a.name}:{a.type}" for a in method.outputs]
        rows.append({"method": method.name, "libvirt": method.libvirt, "in": ins, "out": outs})
    if state.as_json:
        emit_json(rows)
        return
    table([{**r, "in": " ".join(r["in"]) or "-", "out": " ".join(r["out"]) or "-"} for r in rows],
          ("method", "in", "out", "libvirt"))


@click.group("schema")
def schema_group() -> None:
    """The schema itself: how much of libvirt's API it covers (no connection needed)."""


def _check_api(report: Coverage, api_path: Path) -> None:
    """--api names the libvirt-api.xml to report on: the committed report answers for the one it was computed
    from; another one needs the generator, in a source tree."""
    try:
        digest = hashlib.sha256(api_path.read_bytes()).hexdigest()
    except OSError as exc:
        raise cli_error(f"{api_path}: libvirt's API description is missing (install libvirt-dev)") from exc
    if digest != report.api_sha256:
        raise cli_error(f"{api_path} is not the libvirt-api.xml (libvirt API {report.api_version}) this schema's "
                        f"coverage was computed from; in a source tree, `{GENERATOR} --report --api {api_path}` "
                        "reports on it")


@schema_group.command("coverage")
@click.option("--api", "api_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="libvirt-api.xml (default: the one the schema was generated from, libvirt-dev's "
                   "/usr/share/libvirt/api/libvirt-api.xml).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def schema_coverage(ctx: click.Context, api_path: Optional[Path], as_json: bool) -> None:
    """Per class: libvirt functions exposed as methods, excluded (by category) and the coverage.

    Exits 1 when a function of the four in-scope families is neither exposed nor excluded.
    """
    report = load_coverage()
    if api_path is not None:
        _check_api(report, api_path)
    if as_json or state_of(ctx).as_json:
        emit_json({**report.to_json(), "ok": report.ok})
    else:
        click.echo(format_coverage(report))
    if not report.ok:
        raise cli_error(f"{len(report.unaccounted)} function(s) unaccounted for, "
                        f"{len(report.conflicts)} conflict(s)")
