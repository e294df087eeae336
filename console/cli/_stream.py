"""Commands that move data as streams (docs/PROTOCOL.md §14): ``screenshot``, ``volume download|upload``.

A transfer shows a progress line on stderr when it is a terminal (bytes, percent, rate, ETA), redrawn at most 10
times a second; then one line says what moved, how fast (``--json``: one result object). Ctrl-C cancels the stream on the agent.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, Callable, Optional

import click

from virtq.console import RemoteObject

from ._app import state_of
from ._output import emit_json, mib_text, printable

__all__ = ["ProgressLine", "screenshot", "volume"]

class ProgressLine:
    """A transfer's progress on one terminal line: done / total, percent, rate and ETA."""

    def __init__(self, total: Optional[int], out: IO[str], every: float = 0.1) -> None:
        self.total = total or None
        self.out = out
        self.started = time.monotonic()
        self.every = every
        self._shown = 0.0
        self.done = 0

    def text(self, done: int, now: float) -> str:
        rate = done / max(now - self.started, 1e-6)
        parts = [mib_text(done)]
        if self.total:
            parts[0] += f" / {mib_text(self.total)}"
            parts.append(f"{min(100.0, 100.0 * done / self.total):5.1f}%")
        parts.append(f"{mib_text(rate)}/s")
        if self.total and rate > 0:
            left = max(0.0, (self.total - done) / rate)
            parts.append(f"ETA {int(left) // 60}:{int(left) % 60:02d}")
        return "  ".join(parts)

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._shown >= self.every:
            self._shown = now
            self.out.write("\r" + self.text(done, now) + "\033[K")
            self.out.flush()

    def finish(self) -> float:
        """Draw the last line; the seconds the transfer took."""
        elapsed = time.monotonic() - self.started
        self.out.write("\r" + self.text(self.done, time.monotonic()) + "\033[K\n")
        self.out.flush()
        return elapsed


def _progress(as_json: bool, total: Optional[int]) -> Optional[ProgressLine]:
    """A progress line on stderr when it is a terminal (not in --json output, not in a script's log)."""
    return ProgressLine(total, sys.stderr) if not as_json and sys.stderr.isatty() else None


def _report(as_json: bool, what: str, path: str, moved: int, elapsed: float) -> None:
    if as_json:
        emit_json({"operation": what, "file": path, "bytes": moved, "seconds": round(elapsed, 3)})
    else:
        click.echo(f"{what}: {moved} bytes in {elapsed:.1f} s ({mib_text(moved / max(elapsed, 1e-6))}/s)")


@click.command()
@click.argument("ref", metavar="DOMAIN")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--screen", type=click.IntRange(min=0), default=0, show_default=True, help="The monitor's number.")
@click.pass_context
def screenshot(ctx: click.Context, ref: str, file: str, screen: int) -> None:
    """Save a screenshot of DOMAIN's display to FILE (- for stdout); prints its MIME type."""
    state = state_of(ctx)
    dom = state.console(ctx).domains.get(ref)
    mime, image = dom.screenshot(screen)
    if file == "-":
        sys.stdout.buffer.write(image)
        sys.stdout.buffer.flush()
    else:
        Path(file).write_bytes(image)
    if state.as_json:
        emit_json({"domain": dom.name, "mime": mime, "bytes": len(image), "file": file})
    elif file != "-":
        click.echo(f"{printable(mime)}: {len(image)} bytes to {file}")


@click.group()
def volume() -> None:
    """Move a volume's content: download to a file, upload from one (progress on stderr)."""


_offset = click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
                       help="Where in the volume to start (bytes).")
_length = click.option("--length", type=click.IntRange(min=0), default=0, show_default=True,
                       help="Bytes to move (0: to the end of the volume or file).")
_sparse = click.option("--sparse", is_flag=True,
                       help="Keep holes as holes (libvirt's SPARSE_STREAM; where the storage driver supports it).")


def _transfer(ctx: click.Context, what: str, ref: str, file: str, total: int, mode: str,
              move: Callable[[RemoteObject, IO[bytes], Optional[ProgressLine]], int]) -> None:
    """One volume transfer with its progress line and its report."""
    state = state_of(ctx)
    vol = state.console(ctx).repository("volume").get(ref)
    progress = _progress(state.as_json, total or None)
    started = time.monotonic()
    with open(file, mode) as handle:
        moved = move(vol, handle, progress)
    elapsed = progress.finish() if progress is not None else time.monotonic() - started
    _report(state.as_json, what, file, moved, elapsed)


def _transfer_command(file: click.Path) -> Callable[[Callable[..., None]], click.Command]:
    """A ``volume`` subcommand: VOLUME FILE, --offset, --length, --sparse."""
    def make(command: Callable[..., None]) -> click.Command:
        for decorate in (click.pass_context, _sparse, _length, _offset, click.argument("file", type=file),
                         click.argument("ref", metavar="VOLUME")):
            command = decorate(command)
        return volume.command()(command)
    return make


@_transfer_command(click.Path(dir_okay=False, writable=True))
def download(ctx: click.Context, ref: str, file: str, offset: int, length: int, sparse: bool) -> None:
    """Download VOLUME's content to FILE."""
    vol = state_of(ctx).console(ctx).repository("volume").get(ref)
    total = length or max(0, int(vol.getInfo()["capacity"]) - offset)
    _transfer(ctx, "download", ref, file, total, "wb",
              lambda v, sink, progress: int(v.download(sink, offset, length, int(sparse), progress=progress)))


@_transfer_command(click.Path(dir_okay=False, exists=True))
def upload(ctx: click.Context, ref: str, file: str, offset: int, length: int, sparse: bool) -> None:
    """Upload FILE into VOLUME."""
    _transfer(ctx, "upload", ref, file, length or os.path.getsize(file), "rb",
              lambda v, source, progress: int(v.upload(source, offset, length, int(sparse), progress=progress)))
