"""Processes a test started, read from /proc (Linux): alive or not, who is in a process group, and the
end of their logs for the error message when one fails."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterable, List, Optional

__all__ = ["group_members", "kill_all", "log_tails", "pid_alive", "proc_stat"]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proc_stat(pid: int) -> Optional[List[str]]:
    """[state, ppid, pgrp, ...] of a live process (fields 3.. of /proc/<pid>/stat), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def group_members(pgid: int) -> List[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def kill_all(pids: Iterable[int], signal_number: int = signal.SIGKILL) -> None:
    """Signal each of these processes (SIGKILL by default); those already gone are skipped."""
    for pid in pids:
        try:
            os.kill(pid, signal_number)
        except ProcessLookupError:
            pass


def log_tails(paths: Iterable[Path], owner: str, lines: int = 30) -> str:
    """The last ``lines`` lines of each of these files that has any, each under its path; says so when none
    has (``owner``: whose output they are)."""
    text = []
    for path in paths:
        try:
            content = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if content:
            text.append(f"--- {path} ---\n" + "\n".join(content))
    return "\n".join(text) or f"(no output from {owner})"
