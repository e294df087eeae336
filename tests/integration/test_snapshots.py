"""Snapshots and checkpoints as objects, end to end: a console over real AMQP, agents on libvirt's test driver.

Snapshots of tests/data/node.xml's web1; checkpoints of "vault", a running domain with a disk (the test driver
checkpoints those only, and refuses a checkpoint of a domain that has snapshots). The test driver has no
backup jobs (virDomainBackupBegin: VIR_ERR_NO_SUPPORT); tests/realhv/test_real_snapshots.py runs one on QEMU.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Iterator, List

import libvirt
import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.schema import errors

from ..helpers import DEFAULT_URI, ok, virtq

pytestmark = pytest.mark.integration

VAULT = ("<domain type='test'><name>vault</name><memory>65536</memory><os><type>hvm</type></os><devices>"
         "<disk type='file' device='disk'><source file='/var/lib/virtq-test/images/web1.img'/>"
         "<target dev='vda'/></disk></devices></domain>")


def snapshot_xml(name: str) -> str:
    return f"<domainsnapshot><name>{name}</name></domainsnapshot>"


def checkpoint_xml(name: str) -> str:
    return f"<domaincheckpoint><name>{name}</name></domaincheckpoint>"


def names(objects: Iterable[Any]) -> List[str]:
    return sorted(o.name for o in objects)


def test_a_snapshot_is_an_object_pushed_before_the_reply(console: Console) -> None:
    web1 = console.domains.get("web1")
    s1 = web1.snapshotCreateXML(snapshot_xml("s1"))
    assert s1.class_name == "DomainSnapshot" and s1.name == "s1" and s1.domain == web1.object_id
    assert s1.object_id.object_name == f"DomainSnapshot:{web1.uuid}/s1"
    assert console.snapshots.get("s1") == s1 and console.snapshots.get("web1/s1") == s1
    assert console.snapshots.get(f"{web1.uuid}/s1") == s1 and console.repository("snapshot") is console.snapshots
    assert web1.snapshots == [s1] and console.domains.get("web2").snapshots == []
    assert console.scope(s1.agent).snapshots.get("s1") == s1 and len(console.scope(s1.agent).checkpoints) == 0
    assert s1.configGen > 0 and s1.getName() == "s1" and "<name>s1</name>" in s1.getXMLDesc()


def test_listing_lookup_current_and_children(console: Console) -> None:
    web1 = console.domains.get("web1")
    s1 = web1.snapshotCreateXML(snapshot_xml("s1"))
    s2 = web1.snapshotCreateXML(snapshot_xml("s2"))
    s3 = web1.snapshotCreateXML(snapshot_xml("s3"))
    assert names(web1.listAllSnapshots()) == ["s1", "s2", "s3"] == names(web1.snapshots)
    assert web1.snapshotLookupByName("s2") == s2 and web1.snapshotCurrent() == s3
    assert web1.hasCurrentSnapshot() == 1 and s3.isCurrent() == 1 and s1.isCurrent() == 0
    assert s3.getParent() == s2 and s2.getParent() == s1 and s1.listAllChildren() == [s2]
    assert s1.numChildren() == 1 and s1.listChildrenNames() == ["s2"] and s1.hasMetadata() == 1
    assert web1.snapshotNum() == 3 and sorted(web1.snapshotListNames()) == ["s1", "s2", "s3"]
    with pytest.raises(errors.LibvirtError) as info:
        web1.snapshotLookupByName("nope")
    assert info.value.libvirt_code == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT


def test_reverting_changes_the_domains_state(console: Console) -> None:
    web1 = console.domains.get("web1")
    running = web1.snapshotCreateXML(snapshot_xml("running"))
    web1.suspend().wait_state("paused")
    assert web1.getState()["state"] == libvirt.VIR_DOMAIN_PAUSED
    back = web1.revertToSnapshot(running).wait_state("running")
    assert back.getState()["state"] == libvirt.VIR_DOMAIN_RUNNING and running.latest().isCurrent() == 1


def test_deleting_removes_at_once_children_too(console: Console) -> None:
    web1 = console.domains.get("web1")
    s1 = web1.snapshotCreateXML(snapshot_xml("s1"))
    s2 = web1.snapshotCreateXML(snapshot_xml("s2"))
    web1.snapshotCreateXML(snapshot_xml("s3"))
    s2.delete(flags=libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)  # s2 and s3
    assert names(console.snapshots) == ["s1"] == names(web1.snapshots)
    s1.delete()
    assert list(console.snapshots) == [] and web1.hasCurrentSnapshot() == 0


def test_redefining_a_snapshot_moves_its_generation(console: Console) -> None:
    web1 = console.domains.get("web1")
    s1 = web1.snapshotCreateXML(snapshot_xml("s1"))
    xml = s1.getXMLDesc().replace("<domainsnapshot>", "<domainsnapshot><description>kept</description>")
    again = web1.snapshotCreateXML(xml, flags=libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    assert again.object_id == s1.object_id and again.latest().configGen > s1.configGen
    assert "<description>kept</description>" in again.getXMLDesc()


def test_checkpoints(console: Console) -> None:
    (node,) = list(console.nodes)
    vault = node.domainCreateXML(VAULT)
    c1 = vault.checkpointCreateXML(checkpoint_xml("c1"))
    c2 = vault.checkpointCreateXML(checkpoint_xml("c2"))
    assert c1.class_name == "DomainCheckpoint" and c1.domain == vault.object_id
    assert names(vault.listAllCheckpoints()) == ["c1", "c2"] == names(vault.checkpoints) == names(console.checkpoints)
    assert vault.checkpointLookupByName("c1") == c1 and c2.getParent() == c1 and c1.listAllChildren() == [c2]
    assert c2.getName() == "c2" and "<name>c2</name>" in c2.getXMLDesc()
    with pytest.raises(errors.LibvirtError) as info:  # the test driver has no backup jobs
        vault.backupBegin("<domainbackup/>", None)
    assert info.value.libvirt_code == libvirt.VIR_ERR_NO_SUPPORT
    c1.delete(flags=libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN)
    assert list(console.checkpoints) == []
    vault.checkpointCreateXML(checkpoint_xml("c3"))
    vault.destroy()  # transient: gone, and its checkpoints with it
    assert list(console.checkpoints) == [] and console.domains.of_agent(vault.agent).count(vault) == 0


def test_virtq_list_snapshots_and_checkpoints(console: Console, node_agent: Agent) -> None:
    web1 = console.domains.get("web1")
    web1.snapshotCreateXML(snapshot_xml("before-upgrade"))
    listed = ok(virtq("list", "snapshots", urls=[node_agent]))
    header, row = listed.splitlines()
    assert header.split() == ["HOST", "DOMAIN", "NAME"] and row.split()[1:] == ["web1", "before-upgrade"]
    assert "no checkpoints" in ok(virtq("list", "checkpoints", urls=[node_agent]))
    shown = ok(virtq("call", "snapshot", "web1/before-upgrade", "isCurrent", urls=[node_agent]))
    assert shown.strip() == "1"


@pytest.fixture
def shared(default_agent: Agent) -> Iterator[libvirt.virDomain]:
    """test:///default's domain "test", as the agent's connection shares it within this process (its snapshots
    are deleted afterwards: other tests use the same driver)."""
    conn = libvirt.open(DEFAULT_URI)
    dom = conn.lookupByName("test")
    yield dom
    for snap in dom.listAllSnapshots():
        snap.delete()
    if dom.info()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    conn.close()


def test_a_revert_made_elsewhere_relists_the_domains_snapshots(connect: object, default_agent: Agent,
                                                               shared: libvirt.virDomain) -> None:
    """libvirt has no snapshot events: the lifecycle event of a revert (detail from_snapshot) re-lists them."""
    console = connect(default_agent)  # type: ignore[operator]
    assert list(console.snapshots) == []
    shared.snapshotCreateXML(snapshot_xml("outside"))  # no event: the console does not know yet
    shared.suspend()
    console.domains.get("test")  # (the suspension's event re-reads the domain, not its snapshots)
    shared.revertToSnapshot(shared.snapshotLookupByName("outside"))  # resumed from_snapshot
    assert console.wait_for(lambda: names(list(console.snapshots)) == ["outside"], 5)
    assert console.snapshots.get("test/outside").domain == console.domains.get("test").object_id


def test_asyncio_consoles_hand_out_snapshots_as_async_objects(node_agent: Agent) -> None:
    from virtq.console.aio import AsyncConsole, AsyncObject
    from virtq.testing import agent_url

    async def main() -> None:
        async with AsyncConsole(agent_url(node_agent), timeout=5) as console:
            web1 = console.domains.get("web1")
            s1 = await web1.snapshotCreateXML(snapshot_xml("s1"))
            assert isinstance(s1, AsyncObject) and console.snapshots.get("web1/s1") == s1
            (listed,) = web1.latest().snapshots
            assert isinstance(listed, AsyncObject) and listed == s1 and await s1.isCurrent() == 1
            await s1.delete()
            assert len(console.snapshots) == 0

    asyncio.run(main())
