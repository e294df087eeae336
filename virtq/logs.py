"""Logs that a peer can neither flood nor forge.

Anything a peer supplies (names, addresses, error texts, message fragments) goes through
:func:`shown` before it reaches a log line or a terminal: control characters escaped (no forged
lines, no terminal escape sequences) and the length bounded. Warnings that a peer can trigger at
will go through a :class:`RateLimited` logger: the first occurrence of each kind in a window is
logged, the rest are counted and summarised when the window ends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Tuple

MAX_SHOWN = 200
"""Characters of a peer-supplied value shown in a log line."""

_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), 0x7f, *range(0x80, 0xa0))}
_CONTROLS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value`` as printable text: control characters escaped, at most ``limit`` characters (then a count)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = f"{text[:limit]}…(+{len(text) - limit} chars)"
    return text.translate(_CONTROLS)


class RateLimited:
    """At most one line per ``key`` each ``window`` seconds; what was held back is counted and said with
    the next line of that key (``… (and N more like it in the last 10 s)``)."""

    def __init__(self, logger: logging.Logger, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.window = window
        self.clock = clock
        self._seen: Dict[str, Tuple[float, int]] = {}  # key -> (window start, suppressed count)
        self._lock = threading.Lock()
        self.suppressed = 0
        """Lines held back so far (all keys)."""

    def log(self, level: int, key: str, message: str, *args: Any) -> bool:
        """Log unless ``key`` was logged within the window; True when the line went out."""
        now = self.clock()
        with self._lock:
            started, held = self._seen.get(key, (-1.0, 0))
            if started >= 0 and now - started < self.window:
                self._seen[key] = (started, held + 1)
                self.suppressed += 1
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:  # keys are few in practice; never let them grow without bound
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        if held:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, held, self.window)
        self.logger.log(level, message, *args)
        return True

    def warning(self, key: str, message: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, message, *args)
