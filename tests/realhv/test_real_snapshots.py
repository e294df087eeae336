"""Snapshots, checkpoints and backups on a real libvirtd with QEMU (TCG), through a console.

The guests boot tests/realhv's tiny disk as qcow2 (written here: internal snapshots and dirty bitmaps need the
format, and the tier has no qemu-img): an internal snapshot of the running guest and a revert to it after the
guest was stopped; a full push-mode backup that creates checkpoint c1 (done at once: its completed job's
statistics), then an incremental pull-mode one since c1 that creates c2, whose job stays visible in getJobStats
and backupGetXMLDesc until the client (here: abortJob) finishes it. Snapshots and checkpoints live on two
guests: libvirt refuses some mixes of the two on one domain.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import libvirt
import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.console.typed import Domain
from virtq.testing import wait_until

from .conftest import TinyGuest
from .harness import GUEST_PREFIX

pytestmark = pytest.mark.realhv

CLUSTER = 1 << 16


def write_qcow2(raw: Path, path: Path) -> Path:
    """``raw`` (at most one cluster of data: the boot sector) as a qcow2 v3 image of the same virtual size.

    Clusters: 0 header, 1 L1 table, 2 refcount table, 3 refcount block, 4 L2 table, 5 the data."""
    data = raw.read_bytes()
    size, used = len(data), data[:CLUSTER].rstrip(b"\0")
    header = struct.pack(">4sIQIIQIIQQIIQQQQII", b"QFI\xfb", 3, 0, 0, 16, size, 0, 1, 1 * CLUSTER, 2 * CLUSTER, 1,
                         0, 0, 0, 0, 0, 4, 104)
    copied = 1 << 63  # QCOW_OFLAG_COPIED: refcount 1
    clusters = [header, struct.pack(">Q", 4 * CLUSTER | copied), struct.pack(">Q", 3 * CLUSTER),
                struct.pack(">6H", *[1] * 6), struct.pack(">Q", 5 * CLUSTER | copied), used]
    path.write_bytes(b"".join(c.ljust(CLUSTER, b"\0") for c in clusters))
    path.chmod(0o666)
    return path


def qcow2_guest(guest: TinyGuest) -> str:
    """The guest's XML with its disk as qcow2."""
    image = write_qcow2(guest.disk, guest.disk.with_suffix(".qcow2"))
    return guest.xml.replace("type='raw'", "type='qcow2'").replace(str(guest.disk), str(image))


@pytest.fixture
def metadata_dropped(real_libvirt: str) -> Iterator[None]:
    """Afterwards, the test guests' checkpoints and snapshots are dropped (metadata only, earlier runs' leftovers
    too): libvirt refuses to undefine a domain that has some, and tiny_guest's clean-up undefines."""
    yield
    conn = libvirt.open(real_libvirt)
    try:
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(GUEST_PREFIX):
                continue
            children = [(c, libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) for c in dom.listAllCheckpoints()]
            children += [(s, libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) for s in dom.listAllSnapshots()]
            for child, flag in children:
                try:
                    child.delete(flag)
                except libvirt.libvirtError:
                    pass  # gone with its parent meanwhile
    finally:
        conn.close()


@pytest.fixture
def qemu_console(admin_console: Callable[..., Console], admin_agent: Callable[..., Agent]) -> Console:
    return admin_console(admin_agent(), timeout=60)


def started(console: Console, guest: TinyGuest) -> Domain:
    (node,) = list(console.nodes)
    dom = node.domainDefineXML(qcow2_guest(guest))
    dom.create().wait_state("running")
    assert wait_until(guest.booted, timeout=30), f"serial output: {guest.serial_text()!r}"
    return dom.latest()


def test_internal_snapshot_of_a_running_guest_and_revert(qemu_console: Console, tiny_guest: Callable[[], TinyGuest],
                                                         metadata_dropped: None) -> None:
    dom = started(qemu_console, tiny_guest())
    snap = dom.snapshotCreateXML("<domainsnapshot><name>booted</name></domainsnapshot>")
    assert qemu_console.snapshots.get(f"{dom.name}/booted") == snap and dom.latest().snapshots == [snap]
    xml = snap.getXMLDesc()
    assert "<state>running</state>" in xml and "<memory snapshot='internal'" in xml
    assert snap.isCurrent() == 1 and snap.hasMetadata() == 1
    dom.destroy().wait_state("shutoff")
    back = dom.revertToSnapshot(snap).wait_state("running")  # the memory state too: running, not booting
    assert back.getState()["state"] == libvirt.VIR_DOMAIN_RUNNING and back.id > 0
    snap.delete()
    assert dom.latest().snapshots == [] and dom.hasCurrentSnapshot() == 0


def finished(dom: Domain) -> Dict[str, Any]:
    """Wait for the domain's backup job to end; its completed job's statistics."""
    assert wait_until(lambda: dom.getJobStats()["type"] == libvirt.VIR_DOMAIN_JOB_NONE, timeout=60)
    return dom.getJobStats(flags=libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)


def push_backup(target: Path) -> str:
    return (f"<domainbackup mode='push'><disks><disk name='hda' type='file'><target file='{target}'/>"
            "<driver type='qcow2'/></disk></disks></domainbackup>")


def pull_backup(since: str, socket: Path, scratch: Path) -> str:
    """An incremental backup an NBD client would read from ``socket``; it runs until it is finished."""
    return (f"<domainbackup mode='pull'><incremental>{since}</incremental><server transport='unix' "
            f"socket='{socket}'/><disks><disk name='hda' backup='yes' type='file'><scratch file='{scratch}'/>"
            "</disk></disks></domainbackup>")


def test_checkpoint_and_incremental_backup(qemu_console: Console, tiny_guest: Callable[[], TinyGuest],
                                           metadata_dropped: None) -> None:
    guest = tiny_guest()
    dom = started(qemu_console, guest)
    folder = guest.disk.parent
    folder.chmod(0o777)  # QEMU writes the backups there, as whichever user it runs as

    dom.backupBegin(push_backup(folder / "full.qcow2"), "<domaincheckpoint><name>c1</name></domaincheckpoint>")
    c1 = qemu_console.checkpoints.get(f"{dom.name}/c1")  # backupBegin returns no checkpoint: pushed all the same
    stats = finished(dom)
    assert stats["operation"] == libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP, stats
    assert stats["type"] == libvirt.VIR_DOMAIN_JOB_COMPLETED and (folder / "full.qcow2").stat().st_size > 0

    dom.backupBegin(pull_backup("c1", folder / "nbd.sock", folder / "scratch.qcow2"),
                    "<domaincheckpoint><name>c2</name></domaincheckpoint>")
    running = dom.getJobStats()
    assert running["type"] == libvirt.VIR_DOMAIN_JOB_UNBOUNDED, running
    assert running["operation"] == libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP, running
    assert "<incremental>c1</incremental>" in dom.backupGetXMLDesc() and (folder / "nbd.sock").exists()
    dom.abortJob()  # how a pull-mode backup's client says it is done
    assert wait_until(lambda: dom.getJobStats()["type"] == libvirt.VIR_DOMAIN_JOB_NONE, timeout=60)
    c2 = qemu_console.checkpoints.get(f"{dom.name}/c2")
    assert c2.getParent() == c1 and [c.name for c in dom.latest().checkpoints] == ["c1", "c2"]
    assert "<name>c1</name>" in c2.getXMLDesc()  # its parent
    c1.delete()  # c2 keeps the changes since c1 (libvirt merges the bitmaps)
    assert [c.name for c in dom.latest().checkpoints] == ["c2"] == [c.getName() for c in dom.listAllCheckpoints()]
    c2.delete()


def test_a_checkpoint_another_client_made_shows_when_its_backup_ends(
        qemu_console: Console, tiny_guest: Callable[[], TinyGuest], real_libvirt: str, metadata_dropped: None) -> None:
    """libvirt has no checkpoint event: the backup job's end (domainJobCompleted, a backup block job's end) makes the
    agent re-list the domain's children, long before its next reconcile (300 s)."""
    guest = tiny_guest()
    dom = started(qemu_console, guest)
    guest.disk.parent.chmod(0o777)
    conn = libvirt.open(real_libvirt)
    try:  # virsh backup-begin, in effect: not through virtq
        conn.lookupByName(dom.name).backupBegin(push_backup(guest.disk.parent / "other.qcow2"),
                                                "<domaincheckpoint><name>theirs</name></domaincheckpoint>")
    finally:
        conn.close()
    assert wait_until(lambda: [c.name for c in dom.latest().checkpoints] == ["theirs"], timeout=30)
    assert finished(dom)["operation"] == libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP
    assert "<name>theirs</name>" in qemu_console.checkpoints.get(f"{dom.name}/theirs").getXMLDesc()
