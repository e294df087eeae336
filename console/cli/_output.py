"""What every command prints goes through here: tables, JSON, single lines, and the escaping of what agents
supplied (control characters that would drive the terminal or forge lines)."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Dict, List, Sequence

import click

from virtq.console import Console, ObjectId, RemoteObject, describe
from virtq.logs import shown

SHOWN = 4_000
"""Characters of one agent-supplied value printed (names, hostnames, results, error texts)."""
_XML_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0d, 0x20), 0x7f,
                                               *range(0x80, 0xa0))}


MIB = 1024 * 1024


def mib_text(n: float) -> str:
    """Bytes as a progress line shows them: ``12.3 MiB``."""
    return f"{n / MIB:.1f} MiB"


def printable(value: Any, limit: int = SHOWN) -> str:
    """What an agent supplied, printable: control characters (terminal escape sequences, carriage returns,
    newlines that forge lines) escaped, the length bounded. JSON output needs none of this (json.dumps
    escapes them)."""
    return shown(value if isinstance(value, str) else str(value), limit)


def xml_text(document: str) -> str:
    """An XML document as printed by ``virtq xml``: as is but for control characters other than newline and
    tab (XML 1.0 allows no other C0 control; ESC and C1 controls would drive the terminal)."""
    return document.translate(_XML_CONTROLS)


@functools.singledispatch
def plain(value: Any) -> Any:
    """A value as plain data for JSON and text: objects as their identity, references as object names,
    containers converted throughout (tuples become lists); anything else as is."""
    return value


@plain.register(RemoteObject)
def _object(value: RemoteObject) -> Any:
    return describe(value)


@plain.register(ObjectId)
def _reference(value: ObjectId) -> Any:
    return value.object_name


@plain.register(dict)
def _map(value: Dict[Any, Any]) -> Any:
    return {k: plain(v) for k, v in value.items()}


@plain.register(list)
@plain.register(tuple)
def _sequence(value: Sequence[Any]) -> Any:
    return [plain(v) for v in value]


def emit_json(data: Any) -> None:
    click.echo(json.dumps(plain(data), indent=2, sort_keys=True, default=str))


def table(rows: List[Dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[printable(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def echo_line(line: str) -> None:
    """One line, flushed at once; a reader that went away (``virtq watch | head``) ends the output quietly.
    Control characters in it (from what agents supplied) are escaped."""
    try:
        click.echo(shown(line, 100_000))
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise KeyboardInterrupt from None  # leave the loop like Ctrl-C: exit 0


def host_name(console: Console, agent_name: str) -> str:
    """What people call an agent's host: its hostname, else the agent's name."""
    view = console.agents.by_name(agent_name)
    return view.hostname if view is not None and view.hostname else agent_name


def object_label(obj: RemoteObject) -> str:
    """What people call an object: its name (a node's hostname), else its key."""
    return str(obj.values.get("name") or obj.values.get("hostname") or obj.object_id.object_name.partition(":")[2])
