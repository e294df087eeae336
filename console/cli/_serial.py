"""``virtq console DOMAIN``: a domain's serial console over a bidirectional stream, like ``virsh console``.

The terminal is put in raw mode (when it is one) and restored on the way out; every key goes to the guest
but Ctrl-] (0x1d), which leaves. What the guest writes is copied to stdout as it comes, on a thread of its own.
Without a terminal, stdin is sent until its end, and the command leaves when the guest's side ends or
``--wait`` seconds after stdin ended.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Optional

import click

from virtq.console import ConsoleStream

from ._app import state_of

__all__ = ["ESCAPE", "console", "pump_output"]

ESCAPE = b"\x1d"
"""Ctrl-]: leaves the console, as in virsh and telnet."""


def pump_output(stream: ConsoleStream, write: Any, done: threading.Event) -> None:
    """Copy what the guest writes to ``write`` until the stream ends or ``done`` is set."""
    while not done.is_set() and not stream.closed:
        data = stream.read(timeout=0.2)
        if data:
            write(data)
    done.set()


def _raw(fd: int) -> Optional[Any]:
    """Put the terminal in raw mode; its previous settings (None when stdin is no terminal)."""
    if not os.isatty(fd):
        return None
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return saved


def _restore(fd: int, saved: Optional[Any]) -> None:
    if saved is not None:
        import termios
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command(name="console")
@click.argument("ref", metavar="DOMAIN")
@click.option("--devname", default=None, help="The console, serial or parallel device alias (default: the first).")
@click.option("--force", is_flag=True, help="Take the console from another client that holds it.")
@click.option("--wait", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Without a terminal: seconds to keep reading after stdin ended.")
@click.pass_context
def console(ctx: click.Context, ref: str, devname: Optional[str], force: bool, wait: float) -> None:
    """Connect to DOMAIN's serial console (Ctrl-] leaves)."""
    dom = state_of(ctx).console(ctx).domains.get(ref)
    stream = dom.openConsole(devname, 1 if force else 0)
    fd = sys.stdin.fileno()
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    done = threading.Event()
    reader = threading.Thread(target=pump_output, args=(stream, write, done), name="virtq-console-out", daemon=True)
    saved = _raw(fd)
    if saved is not None:
        click.echo(f"Connected to domain '{dom.name}'\r\nEscape character is ^] (Ctrl + ])\r", err=True)
    reader.start()
    try:
        while not done.is_set():
            data = os.read(fd, 1024)
            if not data:  # stdin ended (no terminal): what the guest still says, for a while
                done.wait(wait)
                break
            if ESCAPE in data:
                data = data[:data.index(ESCAPE)]
                if data:
                    stream.write(data)
                break
            stream.write(data)
    finally:
        _restore(fd, saved)
        done.set()
        stream.close()
        reader.join(2.0)
        if saved is not None:
            click.echo("", err=True)
