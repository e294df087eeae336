"""The terminal while ``virtq top`` draws on it: the alternate screen (the shell's screen comes back as it
was, no frames left in the scrollback), no cursor, keys read one at a time without echo (cbreak).
Everything is put back on exit, on an exception, on Ctrl-C and on SIGTERM."""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import termios
import time
import tty
from types import FrameType, TracebackType
from typing import Any, List, Optional, TextIO, Tuple, Type

__all__ = ["ENTER", "LEAVE", "Screen"]

ENTER = "\x1b[?1049h\x1b[?25l"
"""Switch to the alternate screen, hide the cursor."""
LEAVE = "\x1b[?25h\x1b[?1049l"
"""Show the cursor, back to the normal screen."""
HOME_CLEAR = "\x1b[H\x1b[2J"
TERMINATED = 128 + signal.SIGTERM
"""The exit status after SIGTERM, as a shell reports a process it ended."""


def _terminate(signum: int, frame: Optional[FrameType]) -> None:
    raise SystemExit(TERMINATED)  # unwinds through Screen.__exit__, which restores the terminal


class Screen:
    """A context manager for the terminal on ``out``; keys come from ``keys_from`` (a file descriptor) when it
    is a terminal too."""

    def __init__(self, out: TextIO = sys.stdout, keys_from: Optional[int] = None) -> None:
        self.out = out
        self._tty = keys_from if keys_from is not None and os.isatty(keys_from) else None
        self._fd = self._tty  # None once it hung up
        self._saved: Optional[List[Any]] = None
        self._sigterm: Any = None

    def __enter__(self) -> "Screen":
        try:
            self._sigterm = signal.signal(signal.SIGTERM, _terminate)
        except ValueError:  # not the main thread: SIGTERM keeps its handler
            self._sigterm = None
        if self._tty is not None:
            self._saved = termios.tcgetattr(self._tty)
            tty.setcbreak(self._tty, termios.TCSANOW)
        self.out.write(ENTER)
        self.out.flush()
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        try:
            self.out.write(LEAVE)
            self.out.flush()
        finally:
            if self._saved is not None and self._tty is not None:
                try:
                    termios.tcsetattr(self._tty, termios.TCSADRAIN, self._saved)
                except termios.error:  # the terminal is gone: nothing to restore
                    pass
            if self._sigterm is not None:
                signal.signal(signal.SIGTERM, self._sigterm)

    @staticmethod
    def size() -> Tuple[int, int]:
        """(columns, lines) of the terminal now (it may have been resized)."""
        columns, lines = shutil.get_terminal_size()
        return max(columns, 1), max(lines, 1)

    def draw(self, lines: List[str]) -> None:
        """One frame from the top left; no newline after the last line, so the screen never scrolls."""
        self.out.write(HOME_CLEAR + "\n".join(lines))
        self.out.flush()

    def keys(self, timeout: float) -> str:
        """The keys pressed within ``timeout`` seconds ("" if none; returns at the first key)."""
        if self._fd is None:
            time.sleep(max(0.0, timeout))
            return ""
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not ready:
            return ""
        data = os.read(self._fd, 64)
        if not data:  # the terminal hung up: no more keys, only the timer
            self._fd = None
        return data.decode("utf-8", errors="ignore")
