"""``virtq migrate DOMAIN DEST``: live migration through the console (console/_migration.py), with a progress
line while it runs and the downtime at the end. Ctrl-C aborts it (the domain goes on running where it was)."""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping, Optional

import click

from virtq.console import MigrationAbortedError, MigrationFailedError, MigrationJob

from ._app import state_of
from ._errors import EXIT_REMOTE, EXIT_TIMEOUT, cli_error
from ._output import emit_json, host_name, mib_text

def progress_line(stats: Mapping[str, Any]) -> str:
    """``transferred 12.3 MiB at 33.1 MiB/s, remaining 40.2 MiB, iteration 2`` from getJobStats' names."""
    def mib(name: str) -> str:
        value = stats.get(name)
        return mib_text(value) if isinstance(value, int) else "?"

    rate = stats.get("memory_bps")
    parts = [f"transferred {mib('data_processed')}"
             + (f" at {mib_text(rate)}/s" if isinstance(rate, int) and rate else ""),
             f"remaining {mib('data_remaining')}"]
    if isinstance(stats.get("memory_iteration"), int):
        parts.append(f"iteration {stats['memory_iteration']}")
    return ", ".join(parts)


class _Progress:
    """Writes the progress line to stderr (``shown``): rewritten in place on a terminal, a line per update
    otherwise; switches to post-copy once ``postcopy_after`` seconds passed."""

    def __init__(self, shown: bool, postcopy_after: Optional[float]) -> None:
        self.live = sys.stderr.isatty()
        self.shown = False
        self.show = shown
        self.switch_at = None if postcopy_after is None else time.monotonic() + postcopy_after

    def __call__(self, job: MigrationJob) -> None:
        if self.switch_at is not None and time.monotonic() >= self.switch_at:
            job.switch_to_postcopy()
        if not self.show:
            return
        line = progress_line(job.progress)
        click.echo(f"\r\033[K{line}" if self.live else line, err=True, nl=not self.live)
        self.shown = True

    def end(self) -> None:
        if self.live and self.shown:
            click.echo("", err=True)


@click.command(short_help="Live-migrate a domain to another agent's host.")
@click.argument("domain")
@click.argument("destination", metavar="DEST")
@click.option("--offline", is_flag=True, help="Move a shut-off domain's definition (no running guest).")
@click.option("--bandwidth", type=click.IntRange(min=1), default=None, metavar="MiB/s",
              help="Limit the migration's bandwidth.")
@click.option("--postcopy-after", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Switch to post-copy after S seconds (the guest moves over at once; its memory follows as it "
                   "touches it); no abort after that.")
@click.option("--timeout", "limit", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="Abort the migration if it has not ended after S seconds (exit 6).")
@click.pass_context
def migrate(ctx: click.Context, domain: str, destination: str, offline: bool, bandwidth: Optional[int],
            postcopy_after: Optional[float], limit: Optional[float]) -> None:
    """Migrate DOMAIN (a name, uuid or HOST/NAME) to the agent DEST (its hostname, instance or name): peer to
    peer, from the source's libvirtd to the URI DEST's agent advertises; persistent on DEST, undefined on the
    source. Prints progress while it runs, then the downtime. Ctrl-C aborts it: the domain stays where it was."""
    state = state_of(ctx)
    console = state.console(ctx)
    dom = console.domains.get(domain)
    source = host_name(console, dom.agent)
    progress = _Progress(not state.as_json, postcopy_after)
    started = time.monotonic()
    job = console.migrate(dom, to=destination, live=not offline, offline=offline, postcopy=postcopy_after is not None,
                          bandwidth=bandwidth, timeout=limit, on_progress=progress)
    try:
        try:
            moved = job.wait()
        except KeyboardInterrupt:
            job.abort()
            click.echo("\naborting the migration …", err=True)
            moved = job.wait()
    except MigrationAbortedError as exc:
        raise cli_error(str(exc), EXIT_TIMEOUT if not job.aborting else 1) from exc
    except MigrationFailedError as exc:
        raise cli_error(str(exc), EXIT_REMOTE) from exc
    finally:
        progress.end()
    took, target = time.monotonic() - started, host_name(console, moved.agent)
    if state.as_json:
        emit_json({"domain": moved.values.get("name"), "uuid": moved.values.get("uuid"), "from": source,
                   "to": target, "seconds": round(took, 3), "downtime_ms": job.downtime, "postcopy": job.postcopy})
        return
    downtime = "" if job.downtime is None else f", downtime {job.downtime} ms"
    downtime += ", post-copy" if job.postcopy else ""
    click.echo(f"{moved.values.get('name')} migrated {source} -> {target} in {took:.1f} s{downtime}")
