"""Moves: one domain that migrated from one agent to another, told as one ``DomainMigrated``.

During a migration libvirt has two copies of the domain (same uuid): the source's, running, and the
destination's, created paused when the migration starts and running when it ends; then the source's goes
(or stays, shut off, when its definition is kept). Each agent pushes its own copy, and the console applies
them in whatever order they arrive: the destination's "appeared" usually before the source's "gone", the
reverse when the destination's agent lags. Subscribers that ask for ``DomainMigrated`` (it is opt-in) get
that one event instead of the copies' ObjectAdded/ObjectRemoved pair; the others get the pair, as before.

Sits between the updater and the subscribers (``tell`` is the updater's emit). A copy is *incoming* when
it appears while another agent holds an active copy of the uuid, or while a migration of this console
moves it: move followers are not told of it (nor of its later events) until the move completes — the
source's copy goes or shuts off — or it goes (a failed or aborted migration: nothing happened for them). A
copy that goes while this console migrates it, or after libvirt said it stopped because it migrated, is
*departing*: its ObjectRemoved is kept from move followers for ``grace`` seconds, for the destination's copy
to appear (then the move is told), and told late otherwise (checked at the next event the console applies).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Set, Tuple, Union

from virtq.schema.codec import ObjectId
from virtq.schema.enums import DomainState

from .events import DomainMigrated, DomainStateChanged, Event, LibvirtEvent, ObjectAdded, ObjectEvent, ObjectRemoved
from .objects import RemoteObject
from .subscriptions import Subscription

__all__ = ["DEPARTURE_GRACE", "Move", "Moves", "follows_moves"]

DEPARTURE_GRACE = 60.0
"""Seconds a departed copy waits for its destination's copy before move followers are told it is gone."""
ACTIVE = frozenset({DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED, DomainState.SHUTDOWN,
                    DomainState.PMSUSPENDED})
Audience = Optional[Callable[[Subscription], bool]]
Key = Tuple[str, str]  # (agent, uuid)


def _copy(agent: str, uuid: str) -> ObjectId:
    """The id of an agent's copy of a domain (the console finds objects by agent and name)."""
    return ObjectId(f"Domain:{uuid}", agent, 0)


def follows_moves(subscription: Subscription) -> bool:
    """Whether a subscription asked for DomainMigrated (and so gets it instead of the copies' pair)."""
    return subscription.wants_kind(DomainMigrated)


def _others(subscription: Subscription) -> bool:
    return not follows_moves(subscription)


@dataclass(frozen=True)
class Move:
    """A move observed: the domain went from ``from_agent`` to ``to_agent`` (``obj``: its copy there)."""

    from_agent: str
    to_agent: str
    obj: RemoteObject


class Moves:
    """Tells moves; ``emit``: the subscribers' (with an audience), ``find``: the console's look-up."""

    def __init__(self, emit: Callable[[Event, Audience], None], find: Callable[[ObjectId], Optional[RemoteObject]],
                 clock: Callable[[], float] = time.monotonic, grace: float = DEPARTURE_GRACE) -> None:
        self._emit = emit
        self._find = find
        self._clock = clock
        self.grace = grace
        self._lock = threading.RLock()
        # uuid -> the agent holding it, or the agents while several do (rare): a fleet console holds 400,000
        # domains, so one string per uuid rather than a dict
        self._holders: Dict[str, Union[str, Tuple[str, ...]]] = {}
        self._incoming: Set[Key] = set()
        self._departed: Dict[str, Tuple[ObjectRemoved, float]] = {}  # uuid -> (its removal, told late after)
        self._leaving: Set[Key] = set()  # libvirt said the copy stopped because it migrated
        self._left: Dict[Key, float] = {}  # copies a move left behind (shut off): their removal is the move's
        self._expected: Dict[str, Optional[Move]] = {}  # uuids this console migrates now -> the move seen
        self.moves = 0

    # --- the console's own migrations -----------------------------------------------------------------

    def expect(self, uuid: str) -> None:
        """A migration of this console starts: its move is told by ``done`` (with the downtime), not here."""
        with self._lock:
            self._expected[uuid] = None

    def observed(self, uuid: str) -> Optional[Move]:
        with self._lock:
            return self._expected.get(uuid)

    def done(self, uuid: str, downtime: Optional[int] = None, job: Optional[int] = None) -> Optional[Move]:
        """The migration of ``uuid`` ended: tell its move, if one was seen; returns it."""
        with self._lock:
            move = self._expected.pop(uuid, None)
            if move is not None:
                obj = self._find(move.obj.object_id) or move.obj
                self._emit(DomainMigrated(obj, move.from_agent, move.to_agent, downtime, job=job), follows_moves)
            return move

    # --- the updater's events ------------------------------------------------------------------------

    def tell(self, event: Event) -> None:
        """Deliver one of the updater's events, as a move where it is part of one."""
        with self._lock:
            if self._departed or self._left:
                self._expire()
            if isinstance(event, ObjectEvent) and event.obj.class_name == "Domain":
                key = (event.obj.agent, str(event.obj.values.get("uuid") or event.obj.object_id.object_name[7:]))
                if isinstance(event, ObjectAdded):
                    return self._added(key, event)
                if isinstance(event, ObjectRemoved):
                    return self._removed(key, event)
                self._emit(event, _others if key in self._incoming else None)
                if isinstance(event, DomainStateChanged) and event.obj.stats.get("state") not in ACTIVE:
                    self._stopped(key)
                elif isinstance(event, DomainStateChanged):
                    self._leaving.discard(key)  # running again here: it did not leave
                return None
            if isinstance(event, LibvirtEvent) and event.name == "domainLifecycle" and event.detail == "migrated" \
                    and event.event == "stopped":
                self._leaving.add((event.agent, event.object_id.object_name.partition(":")[2]))
            self._emit(event, None)
            return None

    def _added(self, key: Key, event: ObjectAdded) -> None:
        agent, uuid = key
        held = self._agents(uuid)
        others = [_copy(other, uuid) for other in held if other != agent]
        if agent not in held:
            self._hold(uuid, held + (agent,))
        departed = self._departed.get(uuid)
        if departed is not None and departed[0].obj.agent != agent:
            del self._departed[uuid]
            self._emit(event, _others)
            self._moved(departed[0].obj.agent, event.obj, event.job)
        elif others and (uuid in self._expected or any(self._active(oid) for oid in others)):
            self._incoming.add(key)
            self._emit(event, _others)
        else:
            self._emit(event, None)

    def _removed(self, key: Key, event: ObjectRemoved) -> None:
        agent, uuid = key
        copies = tuple(other for other in self._agents(uuid) if other != agent)
        self._hold(uuid, copies)
        leaving = key in self._leaving
        self._leaving.discard(key)
        if key in self._incoming:  # a migration that did not happen, for move followers
            self._incoming.discard(key)
            self._emit(event, _others)
            return
        if self._left.pop(key, None) is not None:  # the rest of a move already told
            self._emit(event, _others)
            return
        target = next((other for other in copies if (other, uuid) in self._incoming), None)
        if target is not None:
            self._emit(event, _others)
            self._incoming.discard((target, uuid))
            self._moved(agent, self._find(_copy(target, uuid)), event.job)
        elif leaving or uuid in self._expected:
            self._departed[uuid] = (event, self._clock() + self.grace)
            self._emit(event, _others)
        else:
            self._emit(event, None)

    def _stopped(self, key: Key) -> None:
        """A copy shut off: with an incoming copy elsewhere, that was a move that kept the source's definition."""
        agent, uuid = key
        target = next((other for other in self._agents(uuid) if other != agent and (other, uuid) in self._incoming),
                      None)
        if target is not None:
            self._incoming.discard((target, uuid))
            self._left[key] = self._clock() + self.grace
            self._moved(agent, self._find(_copy(target, uuid)), None)

    def _moved(self, from_agent: str, obj: Optional[RemoteObject], job: Optional[int]) -> None:
        if obj is None:
            return
        self.moves += 1
        uuid = str(obj.values.get("uuid"))
        if uuid in self._expected:
            self._expected[uuid] = Move(from_agent, obj.agent, obj)
            return
        self._emit(DomainMigrated(obj, from_agent, obj.agent, job=job), follows_moves)

    def _agents(self, uuid: str) -> Tuple[str, ...]:
        held = self._holders.get(uuid)
        return () if held is None else (held,) if isinstance(held, str) else held

    def _hold(self, uuid: str, agents: Tuple[str, ...]) -> None:
        if not agents:
            self._holders.pop(uuid, None)
        else:
            self._holders[uuid] = agents[0] if len(agents) == 1 else agents

    def _active(self, object_id: ObjectId) -> bool:
        obj = self._find(object_id)
        return obj is not None and obj.stats.get("state") in ACTIVE

    def _expire(self) -> None:
        """Departed copies whose destination never appeared: told gone, late, to move followers."""
        now = self._clock()
        for uuid, (removal, deadline) in list(self._departed.items()):
            if deadline <= now and uuid not in self._expected:
                del self._departed[uuid]
                self._emit(removal, follows_moves)
        for key, deadline in list(self._left.items()):
            if deadline <= now:
                del self._left[key]

    def flush(self) -> None:
        """Tell what waited past its grace now (tests; a console without new events)."""
        with self._lock:
            self._expire()
