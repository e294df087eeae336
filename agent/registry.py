"""The agent's mirror of the connection's objects: the node, domains, pools, volumes, and the domains'
snapshots and checkpoints.

Each object has a deterministic name (``Domain:<uuid>``, ``Pool:<uuid>``, ``Volume:<key>``,
``Node:<host uuid>``, ``DomainSnapshot:<domain uuid>/<name>``, ``DomainCheckpoint:<domain uuid>/<name>``)
so it survives agent restarts, and wire values that are identity only. Every sync returns what changed
as DataRecords, ready to be pushed.

Reading (``get``, ``entries``, ``record``) never asks libvirt; what does says so by its name:
``sync_all``, ``sync_object``, ``read_object``, ``look_up``.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from virtq.schema.codec import DataRecord, ObjectId, now_ns
from virtq.schema.model import Schema

from .children import CHILD_CLASSES
from .configgen import ConfigGenerations
from .hypervisor import (IDENTITY_CLASSES, DomainChildIdentity, DomainIdentity, Hypervisor, Identity, NodeIdentity,
                         PoolIdentity, VolumeIdentity, split_child_key)

LOOKED_UP = ("Domain", "Pool", "Volume", *CHILD_CLASSES)
"""Classes whose objects libvirt can be asked for by key (the node is always known)."""


def object_name(identity: Identity) -> str:
    key = identity.key if isinstance(identity, (VolumeIdentity, DomainChildIdentity)) else identity.uuid
    return f"{IDENTITY_CLASSES[type(identity)]}:{key}"


def class_of(name: str) -> Tuple[str, str]:
    """Split an object name into (class, key)."""
    class_name, _, key = name.partition(":")
    return class_name, key


def can_look_up(name: str) -> bool:
    """Whether libvirt can be asked for the object of this name (a domain, pool or volume, with a key)."""
    class_name, key = class_of(name)
    return class_name in LOOKED_UP and bool(key)


@dataclass(frozen=True)
class Entry:
    """One object the registry mirrors; the times (ns since the epoch) are its record's create/update times."""

    class_name: str
    key: str
    identity: Identity
    create_ts: int
    update_ts: int


@dataclass(frozen=True)
class Reading:
    """What libvirt said of one object, to be applied in the registry (in sequence order)."""

    seq: int
    seen: Tuple[Identity, ...]
    scope: Tuple[str, ...]
    pool: Optional[str]  # a pool's re-read: its volumes not seen are gone
    children: Tuple[Tuple[str, str], ...] = ()  # (class, domain uuid): those snapshots/checkpoints not seen are gone


class Registry:
    """Thread-safe; libvirt is asked with no lock held, the diff is applied under the lock."""

    def __init__(self, schema: Schema, hypervisor: Hypervisor, agent_name: str, epoch: int,
                 generations: Optional[ConfigGenerations] = None) -> None:
        self.schema = schema
        self._hv = hypervisor
        self.agent_name = agent_name
        self.epoch = epoch
        self.generations = generations or ConfigGenerations(None)
        self._entries: Dict[str, Entry] = {}
        self._lock = threading.Lock()
        # Syncs apply in the order they asked libvirt, without a lock held while libvirt answers: each
        # takes a sequence number before asking, and an object is left alone by a sync older than the
        # last one applied to it. (A full re-list that began before an object was undefined must not put
        # it back after the event's re-read removed it; under churn that left ghosts until the reconcile.)
        self._seq = itertools.count(1)
        self._asking: Set[int] = set()  # sequence numbers of syncs asking libvirt now
        self._applied: Dict[str, int] = {}  # object name -> newest sync applied to it (while others ask)
        self.node = hypervisor.node()
        self.node_name = object_name(self.node)

    def object_id(self, name: str) -> ObjectId:
        return ObjectId(name, self.agent_name, self.epoch)

    def values(self, identity: Identity) -> Dict[str, Any]:
        """The wire properties: identity, the parent reference and the configuration generation."""
        gen = self.generations.get(object_name(identity))
        if isinstance(identity, NodeIdentity):
            return {"uuid": identity.uuid, "hostname": identity.hostname, "uri": identity.uri, "configGen": gen}
        node_ref = self.object_id(self.node_name).to_wire()
        if isinstance(identity, DomainIdentity):
            return {"uuid": identity.uuid, "name": identity.name, "id": identity.id, "node": node_ref,
                    "configGen": gen}
        if isinstance(identity, PoolIdentity):
            return {"uuid": identity.uuid, "name": identity.name, "node": node_ref, "configGen": gen}
        if isinstance(identity, DomainChildIdentity):
            domain_ref = self.object_id(f"Domain:{identity.domain_uuid}").to_wire()
            return {"name": identity.name, "domain": domain_ref, "configGen": gen}
        pool_ref = self.object_id(f"Pool:{identity.pool_uuid}").to_wire()
        return {"key": identity.key, "name": identity.name, "path": identity.path, "pool": pool_ref,
                "configGen": gen}

    def record(self, entry: Entry, delete_ts: int = 0) -> DataRecord:
        name = object_name(entry.identity)
        return DataRecord(self.object_id(name), self.schema.cls(entry.class_name).schema_id,
                          self.values(entry.identity), entry.update_ts, entry.create_ts, delete_ts)

    # --- reading -----------------------------------------------------------------------------

    def get(self, name: str) -> Optional[Entry]:
        with self._lock:
            return self._entries.get(name)

    def entries(self, class_name: Optional[str] = None) -> List[Entry]:
        with self._lock:
            return [e for e in self._entries.values() if class_name in (None, e.class_name)]

    def look_up(self, name: str) -> List[DataRecord]:
        """Ask libvirt for an object by name (one a peer sent that the registry does not know yet) and
        register it, or that it is gone; returns what that changed, to be pushed like any change."""
        if not can_look_up(name):
            return []
        class_name, key = class_of(name)
        return self.sync_object(class_name, key)

    # --- syncing -----------------------------------------------------------------------------

    def _begin(self) -> int:
        """A sync's sequence number, taken before it asks libvirt."""
        with self._lock:
            seq = next(self._seq)
            self._asking.add(seq)
            return seq

    def _end(self, seq: int) -> None:
        """Under the lock: the sync is over; forget what no sync still asking can be older than."""
        self._asking.discard(seq)
        if not self._asking:
            self._applied.clear()
        elif len(self._applied) > 2 * len(self._entries) + 1000:
            oldest = min(self._asking)
            self._applied = {n: s for n, s in self._applied.items() if s >= oldest}

    def _apply(self, seen: Iterable[Identity], scope: Optional[Iterable[str]] = None, seq: Optional[int] = None,
               everything: bool = False, pool: Optional[str] = None,
               children: Iterable[Tuple[str, str]] = ()) -> List[DataRecord]:
        """Make the registry match ``seen``; names in ``scope`` that were not seen are removed (with
        ``everything``, every known object is in scope; with ``pool``, that pool's volumes; with ``children``,
        those (class, domain uuid)'s snapshots or checkpoints). Objects a newer sync (``seq``) applied to
        already are left as it made them."""
        now = now_ns()
        changes: List[DataRecord] = []
        removals: List[DataRecord] = []
        with self._lock:
            if seq is None:
                seq = next(self._seq)
                self._asking.add(seq)
            try:
                scope = list(scope or ())
                if everything:
                    scope += list(self._entries)
                if pool is not None:
                    scope += [n for n, e in self._entries.items()
                              if isinstance(e.identity, VolumeIdentity) and e.identity.pool_uuid == pool]
                parents = set(children)
                if parents:
                    scope += [n for n, e in self._entries.items() if isinstance(e.identity, DomainChildIdentity)
                              and (e.class_name, e.identity.domain_uuid) in parents]
                seen_names = set()
                for identity in seen:
                    name = object_name(identity)
                    seen_names.add(name)
                    if self._applied.get(name, 0) > seq:
                        continue  # a newer sync knows better
                    self._applied[name] = seq
                    old = self._entries.get(name)
                    if old is not None and old.identity == identity:
                        continue
                    class_name, key = class_of(name)
                    if old is None:
                        entry = Entry(class_name, key, identity, now, now)
                        self.generations.assign(name)
                    else:
                        entry = replace(old, identity=identity, update_ts=now)
                    self._entries[name] = entry
                    changes.append(self.record(entry))
                for name in scope:
                    if name in seen_names or self._applied.get(name, 0) > seq:
                        continue
                    self._applied[name] = seq
                    if name in self._entries:
                        entry = self._entries.pop(name)
                        removals.append(self.record(replace(entry, update_ts=now), delete_ts=now))
                        self.generations.forget(name)
            finally:
                self._end(seq)
        self.generations.save()  # before any record carrying a new generation is pushed
        return removals + changes

    def bump_config(self, name: str) -> List[DataRecord]:
        """The object's configuration may have changed: a new generation, pushed as an update."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return []
            self.generations.bump(name)
            entry = self._entries[name] = replace(entry, update_ts=now_ns())
            record = self.record(entry)
        self.generations.save()
        return [record]

    def sync_all(self) -> List[DataRecord]:
        """Re-list everything from libvirt; returns the differences (deletions first)."""
        seq = self._begin()
        try:
            seen: List[Identity] = [self.node]
            domains = self._hv.list_domains()
            seen += domains
            for domain in domains:
                seen += self._children(domain.uuid, CHILD_CLASSES)
            pools = self._hv.list_pools()
            seen += pools
            for pool in pools:
                seen += self._hv.list_volumes(pool.uuid)
        except BaseException:
            with self._lock:
                self._end(seq)
            raise
        return self._apply(seen, seq=seq, everything=True)

    def _children(self, domain_uuid: str, classes: Iterable[str]) -> List[Identity]:
        return [child for class_name in classes for child in self._hv.list_children(class_name, domain_uuid)]

    def sync_object(self, class_name: str, key: str, children: bool = False) -> List[DataRecord]:
        """Re-read one object (and, for a pool, its volumes; for a snapshot or checkpoint, its domain's; for a
        domain with ``children`` or gone, its snapshots and checkpoints) after something may have changed it."""
        if class_name == "Node":
            return []
        return self.apply(self.read_object(class_name, key, children))

    def read_object(self, class_name: str, key: str, children: bool = False) -> "Reading":
        """sync_object's asking half (libvirt, no lock held); ``apply`` is the other, whenever it comes."""
        seq = self._begin()
        relisted: Tuple[str, ...] = ()
        try:
            if class_name in CHILD_CLASSES:  # one of a domain's: re-list them all (a delete takes children along)
                domain_uuid = split_child_key(key)[0]
                relisted = (class_name,)
                seen = self._children(domain_uuid, relisted)
            else:
                domain_uuid = key
                identity = None if class_name == "Node" else self._hv.lookup(class_name, key)
                seen = [] if identity is None else [identity]
                if class_name == "Pool" and identity is not None:
                    seen += self._hv.list_volumes(key)
                if class_name == "Domain" and (children or identity is None):
                    relisted = CHILD_CLASSES
                    seen += self._children(key, relisted) if identity is not None else []
        except BaseException:
            with self._lock:
                self._end(seq)
            raise
        scope = [] if class_name == "Node" else [f"{class_name}:{key}"]
        return Reading(seq, tuple(seen), tuple(scope), key if class_name == "Pool" else None,
                       tuple((c, domain_uuid) for c in relisted))

    def apply(self, reading: "Reading") -> List[DataRecord]:
        return self._apply(reading.seen, reading.scope, reading.seq, pool=reading.pool, children=reading.children)

    def sync_identities(self, identities: Iterable[Identity]) -> List[DataRecord]:
        """Add objects a method returned (a new pool brings its volumes)."""
        changes: List[DataRecord] = []
        for identity in identities:
            if isinstance(identity, PoolIdentity):
                changes += self.sync_object("Pool", identity.uuid)
            else:
                changes += self._apply([identity])
        return changes

    def known_children(self, identities: Iterable[Identity]) -> List[str]:
        """The names of the snapshots and checkpoints among ``identities`` that the registry has already."""
        with self._lock:
            return [object_name(i) for i in identities if isinstance(i, DomainChildIdentity)
                    and object_name(i) in self._entries]
