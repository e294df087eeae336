"""Agent tracking: which agents the console follows, over which connection, what their heartbeats say.

It records each agent's view (epoch, attributes, when last seen), admits agents within the ``agents``
limit, tells subscribers when an agent is added, restarts, is lost or its health changes, and runs the
monitor thread that marks agents without heartbeats as lost. It reads nothing itself: what a heartbeat
means for the agent's objects (load it, read it again) is the loading's decision, from :class:`Heard`.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from typing import Callable, Dict, List, Optional, Tuple

from virtq.logs import shown
from virtq.schema import errors
from virtq.schema.codec import AgentInfo
from virtq.transport import Transport

from ._contract import SchemaCheck
from ._conflicts import Conflicts, seen_as
from .events import AgentAdded, AgentDegraded, AgentLost, AgentRecovered, AgentRestarted, Event
from .limits import Limits, LimitWatch
from .repository import AgentRepository, AgentView

__all__ = ["LOST_AFTER", "AgentTracker", "Heard"]

LOST_AFTER = 3
"""Heartbeat intervals without a heartbeat after which an agent is lost."""
MONITOR_EVERY = 0.25
"""Seconds between two checks for lost agents."""


class Heard(enum.Enum):
    """What a heartbeat told of its agent."""

    NEW = "new"  # an agent not followed yet, admitted: to be loaded
    REFUSED = "refused"  # an agent not followed yet, beyond the ``agents`` limit
    RESTARTED = "restarted"  # a new epoch: its objects must be read again
    BACK = "back"  # lost, and back with the same epoch: catch up on what was missed
    RECONNECTED = "reconnected"  # it reconnected (a broker failover) while the console did not
    KNOWN = "known"  # nothing new
    CONFLICT = "conflict"  # another agent answering with a followed agent's name: ignored


class AgentTracker:
    def __init__(self, agents: AgentRepository, limits: Limits, watch: LimitWatch, emit: Callable[[Event], None],
                 clock: Callable[[], float], changed: threading.Condition, schema_hash: str = "") -> None:
        self._agents = agents
        self.schema_check = SchemaCheck(schema_hash)
        self._limits = limits
        self._watch = watch
        self._emit = emit
        self._clock = clock
        self._changed = changed  # notified when agents are found lost
        self.routes: Dict[str, Tuple[str, Transport]] = {}
        """Followed agents: name -> (URL, connection) their requests go through."""
        self._lost: Dict[str, bool] = {}
        self._degraded: Dict[str, str] = {}  # agent -> why, while its heartbeats say it is degraded
        self._health_lock = threading.Lock()
        self.conflicts = Conflicts(emit, clock)
        """Agents other agents answer as (virtq.console._conflicts)."""
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._monitor_loop, name="virtq-console-monitor", daemon=True)

    # --- routes and admission -------------------------------------------------------------------

    def route(self, agent_name: str) -> Transport:
        """The connection requests to an agent go through; NotConnectedError when there is none now."""
        entry = self.routes.get(agent_name)
        if entry is None:
            raise errors.NotConnectedError(f"no route to agent {agent_name}")
        if not entry[1].connected:
            raise errors.NotConnectedError(f"not connected to agent {agent_name} ({entry[0]})")
        return entry[1]

    def behind(self, transport: Transport) -> List[str]:
        """The agents followed through one connection."""
        return [name for name, (_, via) in list(self.routes.items()) if via is transport]

    def admit(self, agent_name: str) -> bool:
        """Whether the console may follow one more agent (the ``agents`` limit)."""
        if agent_name in self.routes:
            return True
        if len(self.routes) >= self._limits.agents:
            self._watch.hit("agents", self._limits.agents, f"agent {shown(agent_name)} not followed")
            return False
        self._watch.clear("agents")
        return True

    def reserve(self, agent_name: str, url: str, transport: Transport) -> None:
        """Count an agent as followed (its route known) before its load has run."""
        self.routes[agent_name] = (url, transport)

    # --- what agents say --------------------------------------------------------------------------

    def follow(self, info: AgentInfo, url: str, transport: Transport) -> None:
        """Record an agent found by its locate answer or heartbeat: AgentAdded when it is new."""
        self.reserve(info.name, url, transport)
        was_lost = self.is_lost(info.name)
        old = self._see(info, url)
        view = self._agents.by_name(info.name)
        if (old is None or was_lost) and view is not None:
            self._emit(AgentAdded(view))
        if view is not None:
            self._check_health(view)

    def steady(self, agent_name: str, epoch: Optional[int] = None) -> bool:
        """Followed and not lost (and, when ``epoch`` is given, still in that epoch)."""
        view = self._agents.by_name(agent_name)
        return view is not None and not self._lost.get(agent_name, True) and epoch in (None, view.epoch)

    def heard_again(self, info: AgentInfo, url: str) -> bool:
        """Record a heartbeat that says nothing new — the agent's every other heartbeat: same epoch, interval,
        schema and attributes as its last, through the same URL, and not lost — by when it was heard alone
        (nothing else to derive: no health, no event). False, and nothing recorded, for any other."""
        known = self._agents.by_name(info.name)
        if known is None or known.epoch != info.epoch or known.url != url or self._lost.get(info.name, True) \
                or known.attributes != info.attributes or known.schema_hash != info.schema_hash \
                or known.heartbeat_interval != info.heartbeat_interval:
            return False
        self._agents.put(info.name, dataclasses.replace(known, last_seen=self._clock()))
        return True

    def heartbeat(self, info: AgentInfo, url: str) -> Heard:
        """Record a heartbeat; tell subscribers what it changed, and the caller what it means."""
        if self.heard_again(info, url):
            return Heard.KNOWN
        known = self._agents.by_name(info.name)
        if known is None and info.name not in self.routes:
            return Heard.NEW if self.admit(info.name) else Heard.REFUSED
        if known is not None and info.epoch < known.epoch:
            # not a restart (epochs only grow): another live agent with its name, whose heartbeats would
            # otherwise flap the console between the two
            self.conflicts.seen(known, seen_as(info.epoch, url))
            return Heard.CONFLICT
        was_lost = self.is_lost(info.name)
        self._see(info, url)
        view = self._agents.by_name(info.name)
        assert view is not None
        heard = Heard.KNOWN
        if known is not None and known.epoch != info.epoch:
            self._emit(AgentRestarted(view, known.epoch))
            heard = Heard.RESTARTED
        elif was_lost:
            self._emit(AgentAdded(view))
            heard = Heard.BACK
        elif known is not None and known.attributes.get("reconnects") != info.attributes.get("reconnects"):
            # what it sent just before its loss may have gone nowhere — a deletion, which its re-push of
            # what exists cannot repeat
            heard = Heard.RECONNECTED
        self._check_health(view)
        return heard

    def _see(self, info: AgentInfo, url: str) -> Optional[AgentView]:
        view = AgentView(info.name, info.epoch, info.heartbeat_interval, str(info.attributes.get("hostname", "")),
                         str(info.attributes.get("uri", "")), url, self._clock(), dict(info.attributes),
                         info.schema_hash, self.schema_check.mismatch(info.name, info.schema_hash))
        self._lost[info.name] = False
        return self._agents.put(info.name, view)

    def _check_health(self, view: AgentView) -> None:
        """AgentDegraded when a heartbeat first says libvirt is not ok or calls are stuck; AgentRecovered
        when one says all is well again (once per transition, not per heartbeat)."""
        health = view.health
        with self._health_lock:
            was = self._degraded.get(view.name)
            if health.ok == (was is None):
                return
            if health.ok:
                del self._degraded[view.name]
            else:
                self._degraded[view.name] = health.reason
        self._emit(AgentRecovered(view) if health.ok else AgentDegraded(view, health.reason))

    def conflict(self, info: AgentInfo, url: str) -> None:
        """An agent answered as one followed through another connection (direct mode): not followed twice."""
        view = self._agents.by_name(info.name)
        if view is not None:
            self.conflicts.seen(view, seen_as(info.epoch, url))

    # --- loss ---------------------------------------------------------------------------------------

    def is_lost(self, agent_name: str) -> bool:
        return self._lost.get(agent_name, False)

    def check_lost(self) -> List[AgentView]:
        """Mark agents without a heartbeat for LOST_AFTER intervals as lost; returns those newly lost."""
        now = self._clock()
        lost = []
        for view in self._agents:
            if not self._lost.get(view.name) and now - view.last_seen > LOST_AFTER * max(view.heartbeat_interval, 0.001):
                self._lost[view.name] = True
                lost.append(view)
                self._emit(AgentLost(view))
        if lost:
            with self._changed:
                self._changed.notify_all()
        return lost

    def forget(self, agent_name: str) -> None:
        """Stop following an agent (its URL was removed): AgentLost, as when it goes away; its objects are kept,
        marked stale, until it is reached again."""
        self.routes.pop(agent_name, None)
        self.conflicts.end(agent_name)
        view = self._agents.by_name(agent_name)
        if view is not None and not self._lost.get(agent_name):
            self._lost[agent_name] = True
            self._emit(AgentLost(view))
            with self._changed:
                self._changed.notify_all()

    @property
    def monitoring(self) -> bool:
        """True between start_monitor() and stop()."""
        return self._monitor.is_alive()

    def start_monitor(self) -> None:
        self._monitor.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._monitor.is_alive():
            self._monitor.join(5)

    def _monitor_loop(self) -> None:
        while not self._stopping.wait(MONITOR_EVERY):
            self.check_lost()
            self.conflicts.expire(self._quiet_after)

    def _quiet_after(self, agent_name: str) -> float:
        """Seconds without a conflicting answer after which a conflict is over."""
        view = self._agents.by_name(agent_name)
        return LOST_AFTER * max(view.heartbeat_interval if view is not None else 1, 0.001)
