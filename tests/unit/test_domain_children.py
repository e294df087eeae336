"""A domain's snapshots and checkpoints in the agent: listed per domain, re-listed when something may have changed
them (and only then), gone with their domain, named ``<class>:<domain uuid>/<name>``, scoped by their domain."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from virtq.agent.access import Access
from virtq.agent.children import call_changes_children, event_changes_children
from virtq.agent.configgen import method_changes_config
from virtq.agent.hypervisor import (CheckpointIdentity, ChildIdentity, HypervisorEvent, Identity, SnapshotIdentity,
                                    split_child_key)
from virtq.agent.policy import Grant, Policy
from virtq.agent.registry import Registry, object_name
from virtq.schema import default_schema
from virtq.testing.fake_hypervisor import FakeHypervisor, numbered_domain

SCHEMA = default_schema()
WEB, DB = numbered_domain(1, 1), numbered_domain(2, 2)


class WithChildren(FakeHypervisor):
    """The fake, with snapshots and checkpoints a test puts in ``children`` (by class and domain uuid)."""

    def __init__(self) -> None:
        super().__init__([WEB, DB])
        self.children: Dict[Tuple[str, str], List[ChildIdentity]] = {}
        self.listed: List[Tuple[str, str]] = []

    def list_children(self, class_name: str, domain_uuid: str) -> Sequence[ChildIdentity]:
        self.listed.append((class_name, domain_uuid))
        return list(self.children.get((class_name, domain_uuid), ())) if self._find("Domain", domain_uuid) else []

    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        if class_name in ("DomainSnapshot", "DomainCheckpoint"):
            domain_uuid, name = split_child_key(key)
            return next((c for c in self.children.get((class_name, domain_uuid), ()) if c.name == name), None)
        return super().lookup(class_name, key)


def setup() -> Tuple[WithChildren, Registry]:
    hv = WithChildren()
    hv.children[("DomainSnapshot", WEB.uuid)] = [SnapshotIdentity(WEB.uuid, "s1"), SnapshotIdentity(WEB.uuid, "s2")]
    hv.children[("DomainCheckpoint", WEB.uuid)] = [CheckpointIdentity(WEB.uuid, "c1")]
    hv.children[("DomainSnapshot", DB.uuid)] = [SnapshotIdentity(DB.uuid, "s1")]
    registry = Registry(SCHEMA, hv, "libvirt.org:virtq:test", 1)
    registry.sync_all()
    return hv, registry


def names(registry: Registry, class_name: str) -> List[str]:
    return sorted(f"{e.key}" for e in registry.entries(class_name))


def test_the_reconcile_lists_every_domains_snapshots_and_checkpoints() -> None:
    _, registry = setup()
    assert names(registry, "DomainSnapshot") == sorted([f"{WEB.uuid}/s1", f"{WEB.uuid}/s2", f"{DB.uuid}/s1"])
    assert names(registry, "DomainCheckpoint") == [f"{WEB.uuid}/c1"]
    entry = registry.get(f"DomainSnapshot:{WEB.uuid}/s1")
    assert entry is not None and object_name(entry.identity) == f"DomainSnapshot:{WEB.uuid}/s1"
    record = registry.record(entry)
    assert record.values["name"] == "s1" and record.values["configGen"] > 0
    assert record.values["domain"]["_object_name"] == f"Domain:{WEB.uuid}"
    assert record.schema_id.class_name == "DomainSnapshot"


def test_a_snapshots_re_read_relists_its_domains_snapshots_only() -> None:
    hv, registry = setup()
    hv.children[("DomainSnapshot", WEB.uuid)] = [SnapshotIdentity(WEB.uuid, "s1")]  # s2 deleted (with children)
    hv.listed.clear()
    changes = registry.sync_object("DomainSnapshot", f"{WEB.uuid}/s2")
    assert [(r.object_id.object_name, bool(r.delete_ts)) for r in changes] == [(f"DomainSnapshot:{WEB.uuid}/s2",
                                                                                True)]
    assert hv.listed == [("DomainSnapshot", WEB.uuid)]
    assert names(registry, "DomainCheckpoint") == [f"{WEB.uuid}/c1"]  # not in scope: left alone


def test_a_domain_is_re_read_without_its_children_unless_asked() -> None:
    hv, registry = setup()
    hv.children[("DomainSnapshot", WEB.uuid)].append(SnapshotIdentity(WEB.uuid, "s3"))
    hv.listed.clear()
    assert registry.sync_object("Domain", WEB.uuid) == [] and hv.listed == []
    (added,) = registry.sync_object("Domain", WEB.uuid, children=True)
    assert added.object_id.object_name == f"DomainSnapshot:{WEB.uuid}/s3" and not added.delete_ts
    assert sorted(hv.listed) == [("DomainCheckpoint", WEB.uuid), ("DomainSnapshot", WEB.uuid)]


def test_a_domain_gone_takes_its_snapshots_and_checkpoints_along() -> None:
    hv, registry = setup()
    hv.domains.remove(WEB)
    changes = registry.sync_object("Domain", WEB.uuid)
    gone = sorted(r.object_id.object_name for r in changes if r.delete_ts)
    assert gone == [f"Domain:{WEB.uuid}", f"DomainCheckpoint:{WEB.uuid}/c1", f"DomainSnapshot:{WEB.uuid}/s1",
                    f"DomainSnapshot:{WEB.uuid}/s2"]
    assert names(registry, "DomainSnapshot") == [f"{DB.uuid}/s1"]


def test_a_snapshot_is_looked_up_by_its_name() -> None:
    hv, registry = setup()
    hv.children[("DomainSnapshot", DB.uuid)].append(SnapshotIdentity(DB.uuid, "late"))
    (found,) = registry.look_up(f"DomainSnapshot:{DB.uuid}/late")
    assert found.values["name"] == "late"


def test_which_calls_and_events_re_list_a_domains_children() -> None:
    changing = [("snapshotCreateXML", "virDomainSnapshotCreateXML"), ("revertToSnapshot", "virDomainRevertToSnapshot"),
                ("checkpointCreateXML", "virDomainCheckpointCreateXML"), ("backupBegin", "virDomainBackupBegin"),
                ("undefineFlags", "virDomainUndefineFlags")]
    assert all(call_changes_children("Domain", m, f) for m, f in changing)
    reading = [("snapshotLookupByName", "virDomainSnapshotLookupByName"),
               ("snapshotCurrent", "virDomainSnapshotCurrent"), ("listAllSnapshots", "virDomainListAllSnapshots"),
               ("suspend", "virDomainSuspend"), ("create", "virDomainCreate")]
    assert not any(call_changes_children("Domain", m, f) for m, f in reading)
    assert not call_changes_children("Node", "domainDefineXML", "virDomainDefineXML")
    assert event_changes_children(HypervisorEvent("Domain", WEB.uuid, "domainLifecycle", "resumed", "from_snapshot"))
    assert not event_changes_children(HypervisorEvent("Domain", WEB.uuid, "domainLifecycle", "resumed", "unpaused"))
    assert event_changes_children(HypervisorEvent("Domain", WEB.uuid, "domainJobCompleted", "", ""))
    for job, status, changes in [("backup", "completed", True), ("backup", "failed", True),
                                 ("active_commit", "canceled", True), ("commit", "completed", True),
                                 ("backup", "ready", False), ("copy", "completed", False), ("pull", "completed", False)]:
        for name in ("domainBlockJob", "domainBlockJob2"):
            assert event_changes_children(HypervisorEvent("Domain", WEB.uuid, name, job, status)) is changes
    assert not event_changes_children(HypervisorEvent("Domain", WEB.uuid, "domainTunable", "", ""))


def test_a_domains_snapshot_readers_leave_its_configuration_generation() -> None:
    assert not any(method_changes_config(m) for m in ("snapshotLookupByName", "snapshotCurrent", "snapshotNum",
                                                       "snapshotListNames", "checkpointLookupByName", "isCurrent"))
    assert all(method_changes_config(m) for m in ("snapshotCreateXML", "checkpointCreateXML", "revertToSnapshot"))


def test_a_scoped_principal_sees_the_snapshots_of_its_domains_only() -> None:
    _, registry = setup()
    grant = Grant("tenant", ("operator",), frozenset({"domain:*"}), domains=(WEB.name,))
    access = Access(Policy({"tenant": grant}, "test"), registry)
    web_snapshot, db_snapshot = (registry.get(f"DomainSnapshot:{u}/s1") for u in (WEB.uuid, DB.uuid))
    assert web_snapshot is not None and db_snapshot is not None
    assert access.sees(grant, web_snapshot) and not access.sees(grant, db_snapshot)
    assert access.sees_record(grant, registry.record(web_snapshot))
    assert not access.sees_record(grant, registry.record(db_snapshot))
