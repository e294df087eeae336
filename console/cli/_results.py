"""How ``virtq call`` prints what a method returned: scalars on one line (a string keeps its lines), maps
as ``key: value`` lines with nested values indented below their key, lists of maps or objects as tables,
other lists one item a line, and an empty result as a line that says so (never a Python repr); a state
code with its name (``state: 1 (running)``)."""

from __future__ import annotations

import enum
from typing import Any, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import click

from virtq.console import RemoteObject, describe
from virtq.schema.states import as_enum

from ._list import COLUMNS, object_row
from ._output import emit_json, plain, printable, table, xml_text

INDENT = "  "
STATE_RESULTS: FrozenSet[Tuple[str, str]] = frozenset({("Domain", "getInfo"), ("Domain", "getState"),
                                                       ("Pool", "getInfo")})
"""Methods whose result's ``state`` is a code of their class's ``state`` enum (others' ``state`` fields, e.g.
getControlInfo's, count in enums of their own)."""


def named_states(class_name: str, method_name: str, result: Any) -> Any:
    """The result with its ``state`` code followed by the state's name, for text output (``--json`` keeps the
    number); a code the enum does not know stays as it is."""
    code = result.get("state") if isinstance(result, Mapping) else None
    if (class_name, method_name) not in STATE_RESULTS or not isinstance(code, int):
        return result
    state = as_enum(class_name, "state", code)
    if not isinstance(state, enum.IntEnum):
        return result
    return {**result, "state": f"{code} ({state.name.lower()})"}


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


def _inline(value: Any) -> Optional[str]:
    """A scalar, an empty container or a list of scalars on one line; None for anything nested."""
    if _is_scalar(value):
        return printable(value)
    if not value:
        return "(empty)"
    if isinstance(value, (list, tuple)) and all(_is_scalar(v) for v in value):
        return ", ".join(printable(v) for v in value)
    return None


def value_lines(value: Any, depth: int = 0) -> List[str]:
    """A plain value (no objects left) as indented lines: maps key by key, lists item by item (``- item``),
    nested ones below their key or dash; lists of scalars inside others on one line."""
    pad = INDENT * depth
    if isinstance(value, Mapping) and value:
        entries = [(f"{printable(key)}:", item) for key, item in value.items()]
    elif isinstance(value, (list, tuple)) and value:
        entries = [("-", item) for item in value]
    else:
        return [f"{pad}{_inline(value)}"]
    lines: List[str] = []
    for label, item in entries:
        inline = _inline(item)
        lines += [f"{pad}{label} {inline}"] if inline is not None else [f"{pad}{label}",
                                                                        *value_lines(item, depth + 1)]
    return lines


def _table(items: Sequence[Any]) -> bool:
    """Print a list of objects (as ``virtq list`` does) or of flat maps as a table; False for other lists."""
    classes = {i.class_name if isinstance(i, RemoteObject) else None for i in items}
    if len(classes) == 1 and None not in classes:
        class_name = classes.pop()
        table([object_row(i) for i in items], COLUMNS[str(class_name)])
        return True
    rows = [describe(i) if isinstance(i, RemoteObject) else plain(i) for i in items]
    if not all(isinstance(r, dict) and all(_is_scalar(v) for v in r.values()) for r in rows):
        return False
    table(rows, list(dict.fromkeys(k for row in rows for k in row)))
    return True


def print_result(result: Any, as_json: bool, empty: str = "(empty)") -> None:
    """``empty``: the line for an empty list, e.g. 'no domains'."""
    if as_json:
        emit_json({"result": result})
    elif result is None:
        click.echo("ok")
    elif isinstance(result, str):  # a document (XML): its lines kept, other control characters escaped
        click.echo(xml_text(result.rstrip("\n")))
    elif isinstance(result, RemoteObject):
        click.echo(printable(" ".join(f"{k}={v}" for k, v in describe(result).items())))
    elif isinstance(result, (list, tuple)) and not result:
        click.echo(empty)
    elif not (isinstance(result, (list, tuple)) and _table(result)):
        for line in value_lines(plain(result)):
            click.echo(line)
