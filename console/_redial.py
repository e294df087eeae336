"""Redialing: direct URLs nothing answered on are tried again in the background, on one thread, each with
its own exponential backoff (the transports' :class:`virtq.transport.Backoff`), until they join or are
removed — an agent that comes up after its console joins it without a restart."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from virtq.transport import Backoff

__all__ = ["Redialer"]

log = logging.getLogger(__name__)

BASE, CAP = 1.0, 30.0
"""Seconds: the first retry within about BASE, then doubling up to CAP between two tries."""


class Redialer:
    def __init__(self, join: Callable[[str], bool], base: float = BASE, cap: float = CAP) -> None:
        self._join = join  # try once: True when the URL joined
        self._base = base
        self._cap = cap
        self._due: Dict[str, Tuple[float, Backoff]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    @property
    def pending(self) -> List[str]:
        """The URLs waiting for their next try."""
        with self._cond:
            return sorted(self._due)

    def add(self, url: str) -> None:
        with self._cond:
            if self._closed:
                return
            backoff = Backoff(self._base, self._cap)
            self._due[url] = (time.monotonic() + backoff.next(), backoff)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="virtq-console-redial", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def discard(self, url: str) -> None:
        with self._cond:
            self._due.pop(url, None)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._due.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _next(self) -> Optional[str]:
        """Wait for the next URL due (None once closed)."""
        with self._cond:
            while not self._closed:
                if self._due:
                    url, (at, _) = min(self._due.items(), key=lambda item: item[1][0])
                    if at <= time.monotonic():
                        return url
                    self._cond.wait(at - time.monotonic())
                else:
                    self._cond.wait()
            return None

    def _loop(self) -> None:
        while True:
            url = self._next()
            if url is None:
                return
            try:
                joined = self._join(url)
            except Exception:  # noqa: BLE001 - one URL's failure must not stop the others' retries
                log.exception("joining %s failed", url)
                joined = False
            with self._cond:
                entry = self._due.get(url)
                if entry is None:
                    continue  # removed meanwhile
                if joined:
                    del self._due[url]
                else:
                    self._due[url] = (time.monotonic() + entry[1].next(), entry[1])
