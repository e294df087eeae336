"""``NAME=VALUE`` arguments of ``virtq call``, typed by the schema and checked before anything is sent:
integers may be libvirt constant names OR-ed (``flags=VIR_DOMAIN_XML_INACTIVE|VIR_DOMAIN_XML_SECURE``),
strings may come from a file (``xml=@dom.xml``) or stdin (``xml=@-``), objects are REFs; unknown methods,
arguments and constants are usage errors that suggest the closest names."""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from virtq.console import RemoteObject
from virtq.schema import types
from virtq.schema.constants import ConstantError, parse_flags, suggest
from virtq.schema.model import Argument, ClassSchema, Method

STRING_TYPES = frozenset({"sstr", "lstr"})
INT_TYPES = frozenset({"uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"})

Resolve = Callable[[str, str], RemoteObject]
"""(class name, REF) -> the object: how object arguments are found."""


def method_of(cls: ClassSchema, method_name: str) -> Method:
    """The class's method, or a usage error suggesting the closest names."""
    method = cls.method(method_name)
    if method is None:
        hint = suggest(method_name, list(cls.methods)) or f"; `virtq methods {cls.name.lower()}` lists them"
        raise click.UsageError(f"{cls.name} has no method {method_name!r}{hint}")
    return method


def read_text(source: str) -> str:
    """The text of ``@FILE`` or ``@-`` (stdin)."""
    if source == "-":
        return sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise click.UsageError(f"cannot read {source}: {exc.strerror}") from exc


def parse_value(arg: Argument, text: str) -> Any:
    """One argument's value from its text; a usage error naming the argument when it does not fit."""
    if arg.type in STRING_TYPES and text.startswith("@"):
        text = read_text(text[1:])
    try:
        if arg.type in INT_TYPES and text and not text.lstrip("-")[:1].isdigit():
            value = parse_flags(text)
            types.check(arg.type, value)
            return value
        return types.parse_text(arg.type, text)
    except ConstantError as exc:
        raise click.UsageError(f"{arg.name}: {exc}") from exc
    except types.TypeCheckError as exc:
        raise click.UsageError(f"{arg.name}: {exc}") from exc


def parse_arguments(obj: RemoteObject, method_name: str, pairs: Sequence[str],
                    resolve: Optional[Resolve] = None) -> Dict[str, Any]:
    """The call's arguments from ``NAME=VALUE`` pairs; every required input must be given."""
    method = method_of(obj.schema, method_name)
    declared = {a.name: a for a in method.inputs}
    arguments: Dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise click.UsageError(f"argument {pair!r} is not NAME=VALUE")
        arg = declared.get(name)
        if arg is None:
            hint = suggest(name, list(declared)) or f"; it takes: {', '.join(declared) or 'none'}"
            raise click.UsageError(f"{method_name} has no argument {name!r}{hint}")
        if arg.references and resolve is not None:  # objects by REF; a list of them: REF,REF,…
            refs = text.split(",") if arg.type == "list" else [text]
            wire = [resolve(arg.references, r).object_id.to_wire() for r in refs if r]
            arguments[name] = wire if arg.type == "list" else wire[0]
            continue
        arguments[name] = parse_value(arg, text)
    missing: List[str] = [a.name for a in method.inputs if a.required and not a.nullable and a.name not in arguments]
    if missing:
        raise click.UsageError(f"{method_name} needs {', '.join(f'{m}=VALUE' for m in missing)}")
    return arguments
