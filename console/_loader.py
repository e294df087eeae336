"""The console's loaders: a few threads that load and re-read agents, shared by all agents.

A thread per load let an agent (or a flood of names) grow a console to a thread per agent; here work
is queued, at most one queued item per (kind, agent) — a second request for the same thing while
one waits is the same request — and at most ``size`` threads run it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, Hashable, List, Tuple

from virtq.logs import shown
from virtq.schema import errors

__all__ = ["Loader"]

log = logging.getLogger(__name__)


class Loader:
    """A small pool of threads running keyed work, each key queued at most once."""

    def __init__(self, size: int, quiet: Callable[[], bool] = lambda: False) -> None:
        self.size = max(1, size)
        self._quiet = quiet  # failures are expected (debug) once the console closes
        self._queue: Deque[Tuple[Hashable, Callable[..., None], Tuple[Any, ...]]] = deque()
        self._queued: Dict[Hashable, int] = {}
        self._cond = threading.Condition()
        self._threads: List[threading.Thread] = []
        self._busy = 0
        self._closed = False

    def submit(self, key: Hashable, fn: Callable[..., None], *args: Any) -> bool:
        """Queue ``fn(*args)`` unless work with the same key is already waiting; False when it was."""
        with self._cond:
            if self._closed or key in self._queued:
                return False
            self._queued[key] = 1
            self._queue.append((key, fn, args))
            if self._busy + len(self._queue) > len(self._threads) and len(self._threads) < self.size:
                thread = threading.Thread(target=self._run, name=f"virtq-console-load-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
            return True

    @property
    def threads(self) -> int:
        return len(self._threads)

    def pending(self) -> int:
        """Work queued or running."""
        with self._cond:
            return len(self._queue) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is queued or running (start() waits so for the agents it found)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._queued.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                key, fn, args = self._queue.popleft()
                del self._queued[key]
                self._busy += 1
            try:
                fn(*args)
            except errors.VirtqError as exc:
                log.log(logging.DEBUG if self._quiet() else logging.WARNING, "%s failed: %s",
                        getattr(fn, "__name__", "loading"), shown(str(exc)))
            except Exception:  # noqa: BLE001 - a loader thread must survive anything one load does
                log.exception("%s failed", getattr(fn, "__name__", "loading"))
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
