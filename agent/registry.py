"""The agent's mirror of the connection's objects: the node, domains, pools and volumes.

Each object has a deterministic name (``Domain:<uuid>``, ``Pool:<uuid>``, ``Volume:<key>``,
``Node:<host uuid>``) so it survives agent restarts, and wire values that are identity
only. Every sync returns what changed as DataRecords, ready to be pushed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, List, Optional, Tuple

from virtq.schema.codec import DataRecord, ObjectId, now_ns
from virtq.schema.model import Schema

from .configgen import ConfigGenerations
from .hypervisor import DomainIdentity, Hypervisor, Identity, NodeIdentity, PoolIdentity, VolumeIdentity


def object_name(identity: Identity) -> str:
    if isinstance(identity, NodeIdentity):
        return f"Node:{identity.uuid}"
    if isinstance(identity, DomainIdentity):
        return f"Domain:{identity.uuid}"
    if isinstance(identity, PoolIdentity):
        return f"Pool:{identity.uuid}"
    return f"Volume:{identity.key}"


def class_of(name: str) -> Tuple[str, str]:
    """Split an object name into (class, key)."""
    class_name, _, key = name.partition(":")
    return class_name, key


@dataclass(frozen=True)
class Entry:
    class_name: str
    key: str
    identity: Identity
    create_ts: int
    update_ts: int


class Registry:
    """Thread-safe; libvirt is asked outside the lock, the diff is applied under it."""

    def __init__(self, schema: Schema, hypervisor: Hypervisor, agent_name: str, epoch: int,
                 generations: Optional[ConfigGenerations] = None) -> None:
        self._schema = schema
        self._hv = hypervisor
        self.agent_name = agent_name
        self.epoch = epoch
        self.generations = generations or ConfigGenerations(None)
        self._entries: Dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._syncing = threading.RLock()
        """Held from asking libvirt until the answer is applied, so syncs apply in the order they asked:
        a full re-list that began before an object was undefined must not put it back after the event's
        re-read removed it (a query re-lists; under churn that left ghosts until the next reconcile)."""
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
        pool_ref = self.object_id(f"Pool:{identity.pool_uuid}").to_wire()
        return {"key": identity.key, "name": identity.name, "path": identity.path, "pool": pool_ref,
                "configGen": gen}

    def record(self, entry: Entry, delete_ts: int = 0) -> DataRecord:
        name = object_name(entry.identity)
        return DataRecord(self.object_id(name), self._schema.cls(entry.class_name).schema_id,
                          self.values(entry.identity), entry.update_ts, entry.create_ts, delete_ts)

    # --- reading -----------------------------------------------------------------------------

    def get(self, name: str) -> Optional[Entry]:
        with self._lock:
            return self._entries.get(name)

    def entries(self, class_name: Optional[str] = None) -> List[Entry]:
        with self._lock:
            return [e for e in self._entries.values() if class_name in (None, e.class_name)]

    def resolve(self, name: str) -> Tuple[Optional[Entry], List[DataRecord]]:
        """The entry for an object name, asking libvirt when the registry does not know it yet.

        Also returns what that look-up changed in the registry, to be pushed like any change.
        """
        entry = self.get(name)
        if entry is not None:
            return entry, []
        class_name, key = class_of(name)
        if class_name not in ("Domain", "Pool", "Volume") or not key:
            return None, []
        changes = self.sync_object(class_name, key)
        return self.get(name), changes

    # --- syncing -----------------------------------------------------------------------------

    def _apply(self, seen: Iterable[Identity], scope: Optional[Iterable[str]] = None) -> List[DataRecord]:
        """Make the registry match ``seen``; names in ``scope`` that were not seen are removed."""
        now = now_ns()
        changes: List[DataRecord] = []
        removals: List[DataRecord] = []
        with self._lock:
            seen_names = set()
            for identity in seen:
                name = object_name(identity)
                seen_names.add(name)
                old = self._entries.get(name)
                if old is not None and old.identity == identity:
                    continue
                class_name, key = class_of(name)
                entry = (Entry(class_name, key, identity, now, now) if old is None
                         else replace(old, identity=identity, update_ts=now))
                self._entries[name] = entry
                changes.append(self.record(entry))
            for name in scope or ():
                if name not in seen_names and name in self._entries:
                    entry = self._entries.pop(name)
                    removals.append(self.record(replace(entry, update_ts=now), delete_ts=now))
        self.generations.forget(r.object_id.object_name for r in removals)
        return removals + changes

    def bump_config(self, name: str) -> List[DataRecord]:
        """The object's configuration may have changed: a new generation, pushed as an update."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return []
            self.generations.bump(name)
            entry = self._entries[name] = replace(entry, update_ts=now_ns())
            return [self.record(entry)]

    def sync_all(self) -> List[DataRecord]:
        """Re-list everything from libvirt; returns the differences (deletions first)."""
        with self._syncing:
            seen: List[Identity] = [self.node]
            seen += self._hv.list_domains()
            pools = self._hv.list_pools()
            seen += pools
            for pool in pools:
                seen += self._hv.list_volumes(pool.uuid)
            with self._lock:
                scope = list(self._entries)
            return self._apply(seen, scope)

    def sync_object(self, class_name: str, key: str) -> List[DataRecord]:
        """Re-read one object (and, for a pool, its volumes) after something may have changed it."""
        name = f"{class_name}:{key}"
        if class_name == "Node":
            return []
        with self._syncing:
            identity = self._hv.lookup(class_name, key)
            seen: List[Identity] = [] if identity is None else [identity]
            scope = [name]
            if class_name == "Pool":
                with self._lock:
                    scope += [n for n, e in self._entries.items()
                              if isinstance(e.identity, VolumeIdentity) and e.identity.pool_uuid == key]
                if identity is not None:
                    seen += self._hv.list_volumes(key)
            return self._apply(seen, scope)

    def sync_identities(self, identities: Iterable[Identity]) -> List[DataRecord]:
        """Add objects a method returned (a new pool brings its volumes)."""
        changes: List[DataRecord] = []
        for identity in identities:
            if isinstance(identity, PoolIdentity):
                changes += self.sync_object("Pool", identity.uuid)
            else:
                changes += self._apply([identity])
        return changes
