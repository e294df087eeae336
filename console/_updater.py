"""The updater: applies what agents push (and answer) to the repositories, in arrival order.

Staleness guards: a record or sample older than what the repository holds never replaces
it; statistics from an epoch other than the agent's current one are dropped; an object
removed at time T is not brought back by a record from before T. Every change becomes
typed events for the subscribers.

Statistics are applied a batch at a time (the repository's columns, checked for the whole batch and
row by row only where a row needs it) and told as one ``StatsApplied`` per batch; per object only
``StatsUpdated`` when a subscriber asked for it or a job owns the object, and ``DomainStateChanged``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Type, Union

from virtq.logs import shown
from virtq.schema.codec import DataRecord, EventRecord, ObjectId, StatsBatch
from virtq.schema.model import Schema
from virtq.schema.states import DOMAIN_STATES, LIFECYCLE_STATES

from ._columns import SampleApplied
from ._jobs import Apartments
from ._session import Session
from .events import (ConfigChanged, DomainStateChanged, Event, LibvirtEvent, ObjectAdded, ObjectEvent, ObjectRemoved,
                     StatsApplied, StatsUpdated)
from .limits import Limits, LimitWatch
from .objects import RemoteObject
from .repository import AgentRepository, Repository

__all__ = ["EARLY_LIMIT", "PRUNE_EVERY", "Emit", "Updater", "Wanted"]

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
Wanted = Callable[[Type[Event]], bool]

EARLY_LIMIT = Limits.held_samples
"""Samples of not-yet-known objects held at most (a console that starts amid a fleet hears samples of every
agent before it has loaded them; those loads bring the same statistics and free the entries)."""
PRUNE_EVERY = 1.0
"""Seconds between two prunings of old tombstones."""


class Updater:
    """Owned by the console; only its ingest thread calls it (or a transport's thread in the inbox's turn, while
    the ingest thread waits: console/_inbox.py). ``session``: what the snapshots it makes belong to; ``clock``:
    the console's (tombstones age by it); ``wanted``: whether any subscriber takes events of a kind (per-object
    statistics events are made only then)."""

    def __init__(self, session: Session[RemoteObject], clock: Callable[[], float], schema: Schema,
                 agents: AgentRepository, repos: Dict[str, Repository[RemoteObject]], apartments: Apartments,
                 emit: Emit, limits: Optional[Limits] = None, watch: Optional[LimitWatch] = None,
                 wanted: Optional[Wanted] = None) -> None:
        self._session = session
        self._clock = clock
        self._schema = schema
        self._agents = agents
        self._repos = repos
        self._apartments = apartments
        self._emit = emit
        self._wanted: Wanted = wanted or (lambda kind: True)
        self._limits = limits or Limits()
        self._watch = watch or LimitWatch(emit)
        # (agent, name) -> (delete_ts, console clock when buried), oldest first
        self._tombstones: Dict[Tuple[str, str], Tuple[int, float]] = {}
        self._pruned = 0.0
        self._objects: Dict[str, int] = {}  # agent -> objects held (every class)
        self.held_per_agent: Dict[str, int] = {}  # agent -> samples held for its unknown objects
        self.stats_observers: List[Callable[[str, Sequence[StatsBatch]], None]] = []
        """Called on the applying thread (console/_ingest.py) after each statistics message is applied (benchmarks
        measure the lag from sample to repository with it); an observer must be quick and must not raise."""
        # declared statistics per class: nothing else is kept (a sample's names are the agent's to choose)
        self._statistics: Dict[str, FrozenSet[str]] = {
            name: frozenset(s.name for s in cls.statistics) for name, cls in schema.classes.items()}
        # per domain: the last lifecycle event not yet matched by a pushed state: its reason, the states it
        # leads to and when it happened
        self._reasons: Dict[Tuple[str, str], Tuple[str, FrozenSet[int], int]] = {}
        # (agent, name) -> when a record was last applied, by the console's clock: a resync compares it with
        # when its query went out (the agent's timestamps come from another machine's clock)
        self._recorded: Dict[Tuple[str, str], float] = {}
        # statistics of objects not known yet, held until their record arrives: through a broker a query's
        # answer (on the console's reply queue) can come after the first samples (on its topic queue), and
        # an agent pushes only what changed, so a dropped first sample would be missing until the next change
        self.held: Dict[Tuple[str, str], Tuple[Dict[str, Any], int, int]] = {}  # -> (stats, sample_ts, epoch)
        self.records_applied = 0
        self.samples_applied = 0

    def _tell(self, event: Union[ObjectEvent, LibvirtEvent]) -> None:
        """Deliver an event; while a job owns its object, it is the job's (tagged and recorded)."""
        object_id = event.obj.object_id if isinstance(event, ObjectEvent) else event.object_id
        job = self._apartments.owner(object_id)
        if job is not None:
            event = dataclasses.replace(event, job=job.id)
            job.transitions.append(event)
        self._emit(event)

    # --- object records ---------------------------------------------------------------------

    def apply_records(self, records: Sequence[DataRecord], answered_after: Optional[float] = None) -> None:
        """Apply pushed records, or (``answered_after``: when the query went out, ``time.monotonic()``) the
        records of a query answer."""
        for record in records:
            self.records_applied += 1
            repo = self._repos.get(record.schema_id.class_name)
            cls = self._schema.classes.get(record.schema_id.class_name)
            if repo is None or cls is None:
                log.debug("record of unknown class %s", record.schema_id.class_name)
                continue
            key = (record.object_id.agent_name, record.object_id.object_name)
            if record.deleted:
                self._bury(key, record.delete_ts)
                self._recorded.pop(key, None)
                self._unhold(key)
                self._reasons.pop(key, None)
                old = repo.remove(record.object_id)
                if old is not None:
                    self._forget(key[0])
                    self._tell(ObjectRemoved(old))
                continue
            if record.update_ts and record.update_ts <= self._deleted_at(key):
                continue  # from before the object was removed
            old = repo.by_id(record.object_id)
            if old is None and not self._room_for(key[0]):
                continue
            sampled: Optional[float] = None
            if old is None:
                obj = RemoteObject(self._session, cls, record.object_id, record.values, record.update_ts,
                                   record.create_ts)
                held = self._unhold(key)
                if held is not None and held[2] == record.object_id.agent_epoch:
                    obj = obj.with_stats(held[0], held[1])
                    sampled = time.monotonic()
            else:
                if record.update_ts and old.update_ts > record.update_ts:
                    continue  # an older record than the one we hold
                # The record carries the statistics the agent had pushed when it made the record; a newer
                # sample may have arrived first (a broker does not order one publisher's links with each
                # other): those apply only if the record is newer than the sample we hold. A query answer's
                # are the agent's latest when it answered (a resync after an outage needs them: the record
                # of an object whose state alone changed is older than the sample we hold): they apply
                # unless a sample of the object came in after the query went out.
                fresh = RemoteObject(self._session, cls, record.object_id, record.values)
                obj = old.with_values(fresh.values, record.update_ts, record.create_ts, record.object_id)
                if answered_after is not None:
                    current = repo.sampled_at(record.object_id) < answered_after
                else:
                    current = not old.stats_ts or record.update_ts >= old.stats_ts
                if fresh.stats and current:
                    obj = obj.with_stats(fresh.stats, old.stats_ts)
            repo.upsert(obj, sampled)
            self._recorded[key] = time.monotonic()
            if old is None:
                self._objects[key[0]] = self._objects.get(key[0], 0) + 1
                self._tell(ObjectAdded(obj))
            elif old.values.get("configGen") != obj.values.get("configGen"):
                self._tell(ConfigChanged(obj, old.values.get("configGen"), obj.values.get("configGen")))
            if old is not None:
                self._state_change(obj, old.stats.get("state"), old.stats_ts)

    def remove_missing(self, agent: str, seen: Set[str], before: float) -> None:
        """After a full resync: objects the agent no longer has go — unless a record of theirs was applied
        after the query went out (``before``, ``time.monotonic()``): those are newer than the answer.

        Statistics still held for unknown objects of the agent go too: whatever the agent had when it
        answered has arrived by now, and samples of objects it creates later follow their records."""
        if self.held_per_agent.get(agent):
            for key in [k for k in self.held if k[0] == agent]:
                self._unhold(key)
        for repo in self._repos.values():
            for obj in repo.of_agent(agent):
                key = (agent, obj.object_id.object_name)
                if key[1] not in seen and self._recorded.get(key, float("-inf")) <= before:
                    self._recorded.pop(key, None)
                    if repo.remove(obj.object_id) is not None:
                        self._forget(agent)
                    self._tell(ObjectRemoved(obj))

    # --- bounds ------------------------------------------------------------------------------------

    def _room_for(self, agent: str) -> bool:
        """Whether one more object of ``agent`` may be held (the ``agents`` and ``objects_per_agent`` limits)."""
        count = self._objects.get(agent)
        if count is None and len(self._objects) >= self._limits.agents:
            self._watch.hit("agents", self._limits.agents, f"objects of agent {shown(agent)} not kept")
            return False
        if count is not None and count >= self._limits.objects_per_agent:
            self._watch.hit("objects_per_agent", self._limits.objects_per_agent,
                            f"new objects of agent {shown(agent)} not kept", scope=agent)
            return False
        return True

    def _forget(self, agent: str) -> None:
        """One object of ``agent`` fewer."""
        count = self._objects.get(agent, 0) - 1
        if count > 0:
            self._objects[agent] = count
        else:
            self._objects.pop(agent, None)
        self._watch.clear("objects_per_agent", agent)

    def _bury(self, key: Tuple[str, str], delete_ts: int) -> None:
        """Remember a deletion (oldest first; pruned by age, capped by the ``tombstones`` limit)."""
        now = self._clock()
        self._tombstones.pop(key, None)
        self._tombstones[key] = (delete_ts, now)
        if now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            horizon = now - self._limits.tombstone_age
            while self._tombstones:
                first = next(iter(self._tombstones))
                if self._tombstones[first][1] >= horizon:
                    break
                del self._tombstones[first]
        if len(self._tombstones) > self._limits.tombstones:
            self._watch.hit("tombstones", self._limits.tombstones, "the oldest deletions are forgotten early")
            while len(self._tombstones) > self._limits.tombstones:
                del self._tombstones[next(iter(self._tombstones))]
        elif len(self._tombstones) < self._limits.tombstones // 2:
            self._watch.clear("tombstones")

    def _deleted_at(self, key: Tuple[str, str]) -> int:
        buried = self._tombstones.get(key)
        return buried[0] if buried is not None else 0

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    @property
    def held_samples(self) -> int:
        return len(self.held)

    def _unhold(self, key: Tuple[str, str]) -> Optional[Tuple[Dict[str, Any], int, int]]:
        held = self.held.pop(key, None)
        if held is not None:
            count = self.held_per_agent.get(key[0], 0) - 1
            if count > 0:
                self.held_per_agent[key[0]] = count
            else:
                self.held_per_agent.pop(key[0], None)
        return held

    # --- statistics ----------------------------------------------------------------------------

    def apply_stats(self, agent: str, batches: Iterable[StatsBatch]) -> None:
        batches = tuple(batches)
        self._apply_stats(agent, batches)
        for observe in self.stats_observers:
            observe(agent, batches)

    def _apply_stats(self, agent: str, batches: Sequence[StatsBatch]) -> None:
        view = self._agents.by_name(agent)
        for batch in batches:
            if view is not None and batch.epoch != view.epoch:
                log.debug("dropping statistics of %s from epoch %d (now %d)", agent, batch.epoch, view.epoch)
                continue
            class_name = batch.schema_id.class_name
            repo = self._repos.get(class_name)
            if repo is None:
                continue
            columns = batch.columns
            declared = self._statistics.get(class_name, frozenset())
            if not declared.issuperset(columns):
                columns = {k: v for k, v in columns.items() if k in declared}
            applied = repo.apply_sample(agent, batch.keys, columns, batch.sample_ts, time.monotonic(),
                                        "state" if class_name == "Domain" else None)
            for index in applied.unknown:
                self._hold(agent, batch.object_name(index), batch,
                           {k: v[index] for k, v in columns.items() if v[index] is not None})
            if applied.keys:
                self.samples_applied += len(applied.keys)
                self._announce(agent, batch, repo, applied)

    def _announce(self, agent: str, batch: StatsBatch, repo: Repository[RemoteObject],
                  applied: SampleApplied) -> None:
        """The events of one applied batch: one StatsApplied; per object only StatsUpdated when someone asked
        for it or a job owning the object records it, and the rare DomainStateChanged."""
        event = StatsApplied(agent, batch.schema_id.class_name, batch.epoch, batch.sample_ts, applied.keys,
                             applied.columns)
        if applied.columns and self._wanted(StatsApplied):
            self._emit(event)
        per_object = self._wanted(StatsUpdated)
        owners = self._apartments.owners()
        moved = applied.moved()
        if not (per_object or owners or moved):
            return
        for index in range(len(applied.keys)) if per_object or owners else sorted(moved):
            object_id = event.object_id(index)
            told = per_object or (agent, object_id.object_name) in owners
            obj = repo.by_id(object_id) if told or index in moved else None
            if obj is None:
                continue
            changed = event.changed(index)
            if told and changed:
                self._tell(StatsUpdated(obj, changed))
            if index in moved:
                self._state_change(obj, *moved[index])

    def _hold(self, agent: str, name: str, batch: StatsBatch, changed: Mapping[str, Any]) -> None:
        """Keep a sample of an object not known yet (merged with any held before, newest values winning)."""
        key = (agent, name)
        if batch.sample_ts <= self._deleted_at(key):
            return  # of an object removed since
        held = self.held.get(key)
        if held is None and self.held_per_agent.get(agent, 0) >= self._limits.held_samples_per_agent:
            self._watch.hit("held_samples_per_agent", self._limits.held_samples_per_agent,
                            f"samples of unknown objects of agent {shown(agent)} dropped", scope=agent)
            return
        if held is None or held[2] != batch.epoch:
            if held is None and len(self.held) >= min(EARLY_LIMIT, self._limits.held_samples):
                self._watch.hit("held_samples", self._limits.held_samples, "the oldest held samples dropped")
                self._unhold(next(iter(self.held)))  # the oldest held
            elif held is None and len(self.held) < self._limits.held_samples // 2:
                self._watch.clear("held_samples")
            if held is None:
                self.held_per_agent[agent] = self.held_per_agent.get(agent, 0) + 1
            self.held[key] = (dict(changed), batch.sample_ts, batch.epoch)
        elif batch.sample_ts >= held[1]:
            self.held[key] = ({**held[0], **changed}, batch.sample_ts, batch.epoch)
        else:
            self.held[key] = ({**changed, **held[0]}, held[1], batch.epoch)

    def _state_change(self, new: RemoteObject, before: Any, before_ts: int) -> None:
        """Tell a domain's state change (``before``: the state it had, sampled at ``before_ts``)."""
        after = new.stats.get("state")
        if new.class_name != "Domain" or after is None or before == after:
            return
        pending = self._reasons.pop((new.agent, new.object_id.object_name), None)
        reason = ""
        # An event explains the change only if it leads to the new state and happened after the sample
        # that still showed the old one (events can lag behind samples: one from an earlier change would lie).
        if pending is not None and after in pending[1] and not (pending[2] and pending[2] < before_ts):
            reason = pending[0]
        if not reason:  # observed before libvirt's event arrived: a job's own call explains it
            job = self._apartments.owner(new.object_id)
            reason = job.method if job is not None else ""
        old_name = DOMAIN_STATES.get(before, "unknown") if isinstance(before, int) else "unknown"
        self._tell(DomainStateChanged(new, old_name, new.state_name, reason))

    def _note_reason(self, key: Tuple[str, str], obj: Optional[RemoteObject], event: str, detail: str,
                     timestamp: int) -> None:
        """Keep a lifecycle event to explain the state change the next sample shows.

        The state may be pushed before libvirt's event arrives (a method call samples at once):
        then the change was already told, and the event must not explain a later, unrelated one.
        """
        states = LIFECYCLE_STATES.get(event)
        if states is None:  # defined, undefined …: no state of their own
            return
        current = obj.stats.get("state") if obj is not None else None
        if current in states:
            self._reasons.pop(key, None)
        elif obj is not None or key in self._reasons or len(self._reasons) < self._limits.held_samples:
            self._reasons[key] = (f"{event}/{detail}" if detail else event, states, timestamp)

    # --- libvirt events ------------------------------------------------------------------------

    def apply_events(self, agent: str, events: Iterable[EventRecord]) -> None:
        for record in events:
            values = record.values
            ref = values.get("domain", values.get("pool"))
            try:
                object_id = ObjectId.from_wire(ref)
            except Exception:  # noqa: BLE001 - a malformed event is dropped, not fatal
                log.debug("event %s without an object reference", record.schema_id.class_name)
                continue
            object_id = ObjectId(object_id.object_name, agent, object_id.agent_epoch)
            obj = self._session.find(object_id)
            name = record.schema_id.class_name
            event, detail = str(values.get("event", "")), str(values.get("detail", ""))
            if name == "domainLifecycle":
                self._note_reason((agent, object_id.object_name), obj, event, detail, record.timestamp)
            data = values.get("data") if isinstance(values.get("data"), dict) else {}
            self._tell(LibvirtEvent(agent, name, object_id, event, detail, data or {}, record.timestamp,
                                    record.severity, obj))
