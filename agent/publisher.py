"""What the agent pushes: object records, statistics and events, as indications on the topic.

Nothing is queued while the transport is down: the names of the objects that changed are kept
instead, and when it is back each of them is pushed once, coalesced: its latest record (or its
deletion) and its latest statistics.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
from typing import Dict, Iterable, List, Optional, Sequence, Set

from virtq.schema import errors
from virtq.schema.codec import (TOPIC, DataIndication, DataRecord, EventIndication, EventRecord, StatsBatch,
                                StatsIndication, WireMessage, data_subject, event_subject, now_ns, stats_subject)
from virtq.transport.base import Transport

from .metrics import AgentMetrics
from .registry import Registry
from .sampler import Sampler

log = logging.getLogger(__name__)


class Publisher:
    """Sends for one agent; the pushes are thread-safe (callers order them, see Agent)."""

    def __init__(self, transport: Transport, agent_name: str, registry: Registry, sampler: Sampler,
                 pool: concurrent.futures.Executor, metrics: Optional[AgentMetrics] = None) -> None:
        self.transport = transport
        self.agent_name = agent_name
        self.registry = registry
        self.sampler = sampler
        self._pool = pool  # where the coalesced re-push runs (never on the transport's thread)
        self._dirty: Set[str] = set()  # objects changed while the transport was down
        self._dirty_lock = threading.Lock()
        self.metrics = metrics or AgentMetrics()  # (counts replies and pushes)

    def send(self, wire: WireMessage) -> bool:
        try:
            self.transport.send(wire)
            self.metrics.sent(wire)
            return True
        except errors.NotConnectedError as exc:
            log.debug("not sent: %s", exc)
            return False

    def push(self, records: Sequence[DataRecord]) -> None:
        """Push changed objects as data indications, one per class; all deletions go first.

        Records carry the object's latest statistics, as query answers do: a sample can reach a
        console before the record of an object it has not seen yet (the sampler sees a new object
        as soon as the registry has it) and is dropped there, and unchanged values are never sent
        again — without this, a new idle domain's state would stay unknown to that console.
        """
        if self._held_back([r.object_id.object_name for r in records]):
            return
        package = self.registry.schema.package
        for deleted in (True, False):
            by_class: Dict[str, List[DataRecord]] = {}
            for record in records:
                if record.deleted == deleted:
                    latest = None if deleted else self.sampler.latest(record.object_id.object_name)
                    if latest:
                        record = dataclasses.replace(record, values={**record.values, **latest})
                    by_class.setdefault(record.schema_id.class_name, []).append(record)
            for class_name, batch in by_class.items():
                message = DataIndication(records=tuple(batch), agent=self.agent_name)
                if not self.send(message.encode(TOPIC, data_subject(package, class_name))):
                    self._mark_dirty(r.object_id.object_name for r in batch)  # lost at the last moment

    def push_stats(self, batches: Sequence[StatsBatch]) -> None:
        for batch in batches:
            names = [batch.object_name(i) for i in range(len(batch.keys))]
            if self._held_back(names):
                continue
            message = StatsIndication(batches=(batch,), agent=self.agent_name)
            subject = stats_subject(self.registry.schema.package, batch.schema_id.class_name)
            if not self.send(message.encode(TOPIC, subject)):
                self._mark_dirty(names)

    def push_events(self, events: Sequence[EventRecord]) -> None:
        for event in events:
            message = EventIndication(events=(event,), agent=self.agent_name)
            self.send(message.encode(TOPIC, event_subject(self.registry.schema.package, event.schema_id.class_name)))

    def repush(self, names: Iterable[str] = ()) -> None:
        """Push (on the pool) the latest state of these objects and of those changed while disconnected."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty.union(names), set()
        if dirty:
            self._pool.submit(self._push_latest, dirty)

    def _push_latest(self, names: Set[str]) -> None:
        """Coalesced while disconnected: one record (or deletion) and the latest statistics per object."""
        now = now_ns()
        records: List[DataRecord] = []
        for name in sorted(names):
            entry = self.registry.get(name)
            if entry is not None:
                records.append(self.registry.record(entry))
            elif name.partition(":")[0] in self.registry.schema.classes:
                class_name = name.partition(":")[0]
                records.append(DataRecord(self.registry.object_id(name),
                                          self.registry.schema.cls(class_name).schema_id, {}, now, now, now))
        self.push(records)
        self.push_stats(self.sampler.resend(names))
        log.info("pushed the latest state of %d object(s) changed while disconnected", len(names))

    def _held_back(self, names: Sequence[str]) -> bool:
        """While the transport is down, remember what changed instead of queueing messages."""
        if self.transport.connected:
            return False
        self._mark_dirty(names)
        return True

    def _mark_dirty(self, names: Iterable[str]) -> None:
        with self._dirty_lock:
            self._dirty.update(names)
        if self.transport.connected:
            # It came back meanwhile, and its reconnect may have taken the set before these were in it.
            self.repush()
