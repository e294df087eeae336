"""The console's named bounds: what an agent (honest, buggy or hostile) can make a console hold.

Every collection that grows with what agents say has one; hitting it drops the excess (never
an honest agent's state) and tells subscribers once per episode with a ``LimitReached`` event.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from .events import Event, LimitReached

__all__ = ["LimitWatch", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Defaults sized for a fleet of a few thousand hypervisors (virtq-fleet runs 1,000 agents)."""

    agents: int = 10_000
    """Agents one console follows; agents beyond are not loaded (and their pushes dropped)."""
    objects_per_agent: int = 50_000
    """Nodes, domains, pools and volumes of one agent; records of further new objects are dropped."""
    tombstones: int = 100_000
    """Deletions remembered (so a late record cannot bring an object back); the oldest go first."""
    tombstone_age: float = 600.0
    """Seconds a deletion is remembered: records older than that arrive long before."""
    held_samples: int = 200_000
    """Samples of objects not known yet held in all (the oldest go first)."""
    held_samples_per_agent: int = 20_000
    """... and per agent: one agent cannot push out another's."""
    inbox_bytes: int = 256 * 1024 * 1024
    """Bytes received and not yet applied; beyond, transports wait before delivering more (back-pressure)."""
    loaders: int = 8
    """Threads that load and re-read agents (shared by all agents; never one per agent)."""


class LimitWatch:
    """Emits one LimitReached per episode: when a bound is first hit, and again only after usage fell
    back below it (``clear``)."""

    def __init__(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self._hit: Dict[Tuple[str, str], int] = {}  # (limit, scope) -> drops in this episode
        self._lock = threading.Lock()
        self.hits = 0
        """Everything dropped by a bound, all limits together."""

    def hit(self, limit: str, value: int, detail: str, scope: str = "") -> None:
        with self._lock:
            self.hits += 1
            first = (limit, scope) not in self._hit
            self._hit[(limit, scope)] = self._hit.get((limit, scope), 0) + 1
        if first:
            self._emit(LimitReached(limit, value, detail))

    def clear(self, limit: str, scope: str = "") -> None:
        if self._hit:
            with self._lock:
                self._hit.pop((limit, scope), None)

    def active(self, limit: str, scope: str = "") -> bool:
        return (limit, scope) in self._hit
