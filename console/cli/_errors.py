"""Exit codes, and virtq errors turned into the messages the commands end with.

Exit codes: 0 ok; 1 other errors; 2 usage; 3 agent unreachable / not connected;
4 unknown or ambiguous reference; 5 error reported by the agent (libvirt's included);
6 timeout; 7 some URLs unreachable, the output covers the agents that answered (unless --partial-ok).
"""

from __future__ import annotations

import click

from virtq.schema import errors

from ._output import printable

EXIT_UNREACHABLE = 3
EXIT_BAD_REF = 4
EXIT_REMOTE = 5
EXIT_TIMEOUT = 6
EXIT_PARTIAL = 7


def cli_error(message: str, exit_code: int = 1) -> click.ClickException:
    error = click.ClickException(printable(message))
    error.exit_code = exit_code  # type: ignore[misc]  # ClickException declares it per class
    return error


def translate(exc: errors.VirtqError) -> click.ClickException:
    """The message and exit code of a virtq error that ended a command."""
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
