"""The policy applied: may this principal make this call, see this object, read this push?

Checked before libvirt is called, so a denied request changes nothing. A denial is libvirt's own
VIR_ERR_ACCESS_DENIED with a message naming the principal and the permission (or the object outside
its scope). Scoped principals (a tenant) see and touch only the objects their scope names: the
target of a call, every object passed as an argument, the object an XML document defines, every
object a call returns, every record a query answers and every record pushed to them.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from typing import Any, List, Mapping, Optional, Tuple

from lxml import etree

from virtq.schema.codec import (DataIndication, DataRecord, EventIndication, Message, StatsIndication, WireMessage,
                                decode)
from virtq.schema.errors import AccessDeniedError, ProtocolError
from virtq.schema.model import Method

from .children import CHILD_CLASSES
from .hypervisor import DomainChildIdentity, DomainIdentity, Identity, PoolIdentity, VolumeIdentity
from .policy import CLASS_OBJECT, Grant, Policy
from .registry import Entry, Registry, object_name

log = logging.getLogger(__name__)

SCOPED_OBJECTS = {"domain": "Domain", "storage_pool": "Pool", "storage_vol": "Volume"}
"""ACL objects a scope line can name (by the schema class their objects are)."""

REMEMBERED_NAMES = 100_000
"""Names kept for objects pushed to scoped principals, so that an object's deletion still reaches the
tenant it belonged to after the registry forgot it."""

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def who(principal: Optional[str]) -> str:
    return f"principal {principal!r}" if principal else "anonymous"


class Access:
    """Applies a Policy to requests; reads object names from the registry (no libvirt calls)."""

    def __init__(self, policy: Policy, registry: Registry) -> None:
        self.policy = policy
        self.registry = registry
        self._names: "collections.OrderedDict[str, Tuple[str, str]]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def grant(self, principal: Optional[str]) -> Grant:
        grant = self.policy.grant_for(principal)
        if grant is None:
            raise AccessDeniedError.denied(f"{who(principal)} is granted nothing by the policy ({self.policy.source})")
        return grant

    # --- objects --------------------------------------------------------------------------------

    def _parent_name(self, parent: str) -> str:
        entry = self.registry.get(parent)
        identity = entry.identity if entry is not None else None
        return identity.name if isinstance(identity, (PoolIdentity, DomainIdentity)) else ""

    def _name_and_parent(self, identity: Identity) -> Tuple[str, str]:
        """What a scope matches: the object's name and, for a volume, its pool's; for a snapshot or checkpoint,
        its domain's."""
        name = getattr(identity, "name", "") or ""
        if isinstance(identity, VolumeIdentity):
            return name, self._parent_name(f"Pool:{identity.pool_uuid}")
        if isinstance(identity, DomainChildIdentity):
            return name, self._parent_name(f"Domain:{identity.domain_uuid}")
        return name, ""

    def sees_identity(self, grant: Grant, identity: Identity) -> bool:
        return not grant.scoped or grant.sees(object_name(identity).partition(":")[0],
                                              *self._name_and_parent(identity))

    def sees(self, grant: Grant, entry: Entry) -> bool:
        """In scope, and its class readable (``<object>:getattr``): what queries and pushes show."""
        return self.sees_name(grant, f"{entry.class_name}:{entry.key}")

    def sees_record(self, grant: Grant, record: DataRecord) -> bool:
        """A pushed record, judged by the identity it carries (a deletion's object is gone already)."""
        name = record.values.get("name")
        class_name = record.object_id.object_name.partition(":")[0]
        if not grant.scoped or not isinstance(name, str) or class_name not in CLASS_OBJECT:
            return self.sees_name(grant, record.object_id.object_name)
        parent = ""
        parent_ref = "pool" if class_name == "Volume" else "domain" if class_name in CHILD_CLASSES else None
        if parent_ref is not None:
            ref = record.values.get(parent_ref)
            label = self._label(ref["_object_name"]) if isinstance(ref, Mapping) and \
                isinstance(ref.get("_object_name"), str) else None
            parent = label[0] if label else ""
        return grant.allows(f"{CLASS_OBJECT[class_name]}:getattr") and grant.sees(class_name, name, parent)

    def sees_name(self, grant: Grant, name: str) -> bool:
        """Whether a pushed object (by its object name) is shown: by the registry's entry, or, for an
        object gone meanwhile (its deletion, its last event), by what it was when last seen."""
        class_name = name.partition(":")[0]
        if class_name not in CLASS_OBJECT or not grant.allows(f"{CLASS_OBJECT[class_name]}:getattr"):
            return False
        if not grant.scoped:
            return True
        label = self._label(name)
        return label is not None and grant.sees(class_name, label[0], label[1])

    def _label(self, name: str) -> Optional[Tuple[str, str]]:
        """(name, parent name) of an object, remembered for a while after it is gone."""
        entry = self.registry.get(name)
        if entry is None:
            with self._lock:
                return self._names.get(name)
        label = self._name_and_parent(entry.identity)
        with self._lock:
            self._names[name] = label
            self._names.move_to_end(name)
            while len(self._names) > REMEMBERED_NAMES:
                self._names.popitem(last=False)
        return label

    def require_in_scope(self, grant: Grant, principal: Optional[str], entry: Entry) -> None:
        if not self.sees_identity(grant, entry.identity):
            raise AccessDeniedError.denied(f"{who(principal)} may not use {entry.class_name}:{entry.key}: outside "
                                           "its scope")

    # --- calls ------------------------------------------------------------------------------------

    def check_call(self, principal: Optional[str], entry: Entry, method: Method,
                   bound: Mapping[str, Any]) -> Grant:
        """Raise AccessDeniedError unless the principal holds every permission the call needs (flag
        conditions included) and the target, and any object an XML argument defines, are in scope."""
        grant = self.grant(principal)
        needed = method.required(bound)
        if not needed:  # the schema guarantees one per method: a method without is never callable
            raise AccessDeniedError.denied(f"{method.name} declares no permission")
        for permission in needed:
            if not grant.allows(str(permission)):
                raise AccessDeniedError.denied(f"{who(principal)} lacks {permission}")
        if grant.scoped:
            self.require_in_scope(grant, principal, entry)
            if entry.class_name == "Node":
                self._check_defined(grant, principal, method, bound)
        return grant

    def _check_defined(self, grant: Grant, principal: Optional[str], method: Method,
                       bound: Mapping[str, Any]) -> None:
        """A node method that defines or creates a domain or pool from XML: the XML's <name> must be
        in scope (libvirt checks its ACL on the definition too). Objects passed by reference are
        checked where they are resolved; what a call returns is filtered."""
        objects = {SCOPED_OBJECTS[p.object] for p in method.required(bound) if p.object in SCOPED_OBJECTS}
        referenced = {a.references for a in method.inputs if a.references}
        for class_name in sorted(objects - referenced - {"Volume"}):
            for arg in method.inputs:
                value = bound.get(arg.name)
                if "xml" in arg.name.lower() and isinstance(value, str):
                    name = _xml_name(value)
                    if name is None or not grant.sees(class_name, name):
                        raise AccessDeniedError.denied(
                            f"{who(principal)} may not define {class_name.lower()} {name or '(unnamed)'}: "
                            "outside its scope")

    # --- pushes -----------------------------------------------------------------------------------

    def audience(self, principal: Optional[str], wire: WireMessage) -> Optional[WireMessage]:
        """What a subscriber may see of a push (direct mode): everything, a filtered copy, or nothing."""
        if wire.subject.startswith("agent.ind.heartbeat"):
            return wire  # the agent's own announcement: who it is, not what it holds
        grant = self.policy.grant_for(principal)
        if grant is None:
            return None
        if not grant.scoped and all(grant.allows(f"{o}:getattr") for o in CLASS_OBJECT.values()):
            return wire
        try:
            message = decode(wire)
        except ProtocolError:
            return None
        shown = self._filter(grant, message)
        if shown is None:
            return None
        return dataclasses.replace(wire, body=shown.encode(wire.address, wire.subject).body)

    def _filter(self, grant: Grant, message: Message) -> Optional[Message]:
        if isinstance(message, DataIndication):
            records = tuple(r for r in message.records if self.sees_record(grant, r))
            return dataclasses.replace(message, records=records) if records else None
        if isinstance(message, StatsIndication):
            batches = []
            for batch in message.batches:
                keep = [i for i in range(len(batch.keys)) if self.sees_name(grant, batch.object_name(i))]
                if keep:
                    batches.append(dataclasses.replace(
                        batch, keys=tuple(batch.keys[i] for i in keep),
                        columns={f: [col[i] for i in keep] for f, col in batch.columns.items()}))
            return dataclasses.replace(message, batches=tuple(batches)) if batches else None
        if isinstance(message, EventIndication):
            events = tuple(e for e in message.events if all(
                self.sees_name(grant, name) for name in _objects_named(e.values)))
            return dataclasses.replace(message, events=events) if events else None
        return None  # nothing else is pushed; what is unknown is not shown


def _objects_named(values: Mapping[str, Any]) -> List[str]:
    return [v["_object_name"] for v in values.values() if isinstance(v, Mapping)
            and isinstance(v.get("_object_name"), str)]


def _xml_name(document: str) -> Optional[str]:
    try:
        root = etree.fromstring(document.encode(), _XML_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    name = root.findtext("name")
    return name.strip() if name else None

