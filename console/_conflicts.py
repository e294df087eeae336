"""Name conflicts: two live agents answering with the same name (the same host UUID on two hosts, two agents
started on one host), which the console must report rather than merge.

An episode starts when a heartbeat or locate answer under a followed agent's name comes from another agent
(another epoch, another connection); it ends when none has come for LOST_AFTER heartbeat intervals. Each
episode is told once: one ``AgentConflict`` event and one warning, however many heartbeats it lasts.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from virtq.logs import shown

from .events import AgentConflict, Event
from .repository import AgentView

__all__ = ["Conflicts", "seen_as"]

log = logging.getLogger(__name__)


def seen_as(epoch: int, url: str) -> str:
    """How the console tells competing agents apart: the epoch they answer with and where they answered."""
    return f"epoch {epoch} via {url}"


@dataclass
class _Episode:
    instances: Tuple[str, ...]
    last_seen: float


class Conflicts:
    def __init__(self, emit: Callable[[Event], None], clock: Callable[[], float]) -> None:
        self._emit = emit
        self._clock = clock
        self._episodes: Dict[str, _Episode] = {}
        self._lock = threading.Lock()

    def seen(self, followed: AgentView, other: str) -> None:
        """Another agent (``other``, as :func:`seen_as` says) answered as the followed one."""
        with self._lock:
            episode = self._episodes.get(followed.name)
            if episode is not None:
                episode.last_seen = self._clock()
                if other not in episode.instances:
                    episode.instances += (other,)
                return
            episode = _Episode((seen_as(followed.epoch, followed.url), other), self._clock())
            self._episodes[followed.name] = episode
        log.warning("two agents answer as %s: %s; following the first, ignoring the other(s) "
                    "(give each host its own UUID, or run one agent per host)", shown(followed.name),
                    shown(", ".join(episode.instances)))
        self._emit(AgentConflict(followed, episode.instances))

    def expire(self, quiet_for: Callable[[str], float]) -> None:
        """End the episodes of agents no other agent answered as for ``quiet_for(name)`` seconds."""
        now = self._clock()
        with self._lock:
            for name in [n for n, e in self._episodes.items() if now - e.last_seen > quiet_for(n)]:
                del self._episodes[name]

    def end(self, agent_name: str) -> None:
        with self._lock:
            self._episodes.pop(agent_name, None)

    def current(self) -> Dict[str, Tuple[str, ...]]:
        """Agent name -> the competing agents (the followed one first), for each conflict going on."""
        with self._lock:
            return {name: episode.instances for name, episode in self._episodes.items()}
