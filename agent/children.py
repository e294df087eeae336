"""When a domain's snapshots and checkpoints may have changed, so that the registry re-lists them.

libvirt sends no event of their own: they are re-listed at every reconcile, after a call on one of
them (a delete may take its children along), after a call on their domain that may create, remove or
redefine some (snapshotCreateXML, checkpointCreateXML, revertToSnapshot, backupBegin with a
checkpoint, undefine with their metadata …), after a lifecycle event with detail ``from_snapshot``, after
a job's completion and the end of a backup or commit block job (how a checkpoint another client made with
its backup shows before the next reconcile), and when their domain is gone. Reading a domain otherwise never asks libvirt for them: the calls that
mostly happen (start, stop, getInfo) cost no extra round trips.
"""

from __future__ import annotations

from .configgen import method_changes_config
from .hypervisor import CHILD_IDENTITIES, HypervisorEvent

CHILD_CLASSES = tuple(CHILD_IDENTITIES)
"""The classes whose objects belong to a domain: DomainSnapshot, DomainCheckpoint."""

CHILD_FUNCTION_WORDS = ("Snapshot", "Checkpoint", "Backup", "Undefine")
"""Words of the Domain functions that may create, remove or redefine the domain's snapshots or checkpoints."""


def call_changes_children(class_name: str, method_name: str, function: str) -> bool:
    """Whether a call on a domain may have changed its snapshots or checkpoints (readers never do)."""
    return class_name == "Domain" and method_changes_config(method_name) and \
        any(word in function for word in CHILD_FUNCTION_WORDS)


JOB_ENDINGS = frozenset({"completed", "failed", "canceled"})
"""A block job's statuses (its event's detail) that end it."""
CHILD_JOBS = frozenset({"backup", "commit", "active_commit"})
"""Block job types (its event's name) whose end may leave a domain's checkpoints or snapshots different: a backup
begun with a checkpoint (by any client: libvirt has no checkpoint event), a commit that merged snapshot layers."""


def event_changes_children(event: HypervisorEvent) -> bool:
    """A lifecycle event caused by reverting to a snapshot (started, stopped, paused … ``from_snapshot``), a job's
    completion (``domainJobCompleted``: a backup's, a migration's …) or the end of a backup or commit block job."""
    if event.name == "domainLifecycle":
        return event.detail == "from_snapshot"
    if event.name in ("domainBlockJob", "domainBlockJob2"):
        return event.event in CHILD_JOBS and event.detail in JOB_ENDINGS
    return event.name == "domainJobCompleted"
