"""Every method of schema/org.libvirt.xml, called through a console over real AMQP, checked against libvirt.

Two hypervisors: tests/data/node.xml (the ``console`` fixture; each libvirt connection to it
gets its own copy, so a direct connection is used only for values that nothing here
changes) and test:///default (one copy shared by every connection in the process, so a
direct connection shows what the agent did).
"""

from __future__ import annotations

import uuid
from typing import Callable, Iterator

import libvirt
import pytest

from virtq.agent import Agent
from virtq.console import Console, Job
from virtq.console.objects import RemoteObject
from virtq.schema.errors import UnknownRefError
from virtq.testing import domain_xml, pool_xml

from ..helpers import DEFAULT_URI, NODE_URI

pytestmark = pytest.mark.integration

NODE_INFO = ("model", "memory", "cpus", "mhz", "nodes", "sockets", "cores", "threads")
DOMAIN_INFO = ("state", "maxMem", "memory", "nrVirtCpu", "cpuTime")
POOL_INFO = ("state", "capacity", "allocation", "available")
VOLUME_INFO = ("type", "capacity", "allocation")
GiB = 1024 ** 3


VOLUME_XML = ("<volume><name>disk0.img</name><capacity unit='MiB'>10</capacity>"
              "<target><format type='raw'/></target></volume>")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def only_node(console: Console) -> RemoteObject:
    nodes = list(console.repository("node"))
    assert len(nodes) == 1
    return nodes[0]


def libvirt_code(call: Callable[[], object]) -> int:
    with pytest.raises(libvirt.libvirtError) as info:
        call()
    return int(info.value.get_error_code())


@pytest.fixture
def node_truth() -> Iterator[libvirt.virConnect]:
    """A direct connection to a fresh copy of node.xml: for values no test changes."""
    conn = libvirt.open(NODE_URI)
    yield conn
    conn.close()


@pytest.fixture
def default_truth(default_agent: Agent) -> Iterator[libvirt.virConnect]:
    """A direct connection to test:///default, sharing the agent's objects."""
    conn = libvirt.open(DEFAULT_URI)
    yield conn
    conn.close()


@pytest.fixture
def default_console(connect: Callable[..., Console], default_agent: Agent) -> Console:
    return connect(default_agent)


# --- Node -------------------------------------------------------------------------------------

@pytest.mark.parametrize("agent_fixture, uri", [("node_agent", NODE_URI), ("default_agent", DEFAULT_URI)])
def test_node_queries_equal_a_direct_libvirt_connection(request: pytest.FixtureRequest,
                                                        connect: Callable[..., Console],
                                                        agent_fixture: str, uri: str) -> None:
    console = connect(request.getfixturevalue(agent_fixture))
    truth = libvirt.open(uri)
    try:
        node = only_node(console)
        assert node.uri == uri
        capabilities = node.getCapabilities()
        assert capabilities == truth.getCapabilities()
        assert capabilities.lstrip().startswith("<capabilities>")
        assert node.getInfo() == dict(zip(NODE_INFO, truth.getInfo()))
        assert node.getHostname() == truth.getHostname() == node.hostname
        assert node.getVersion() == truth.getVersion()
        assert node.getLibVersion() == truth.getLibVersion() == libvirt.getVersion()
        assert node.getFreeMemory() == truth.getFreeMemory()
    finally:
        truth.close()


def test_node_info_is_the_served_hypervisors(console: Console) -> None:
    """node.xml declares its CPU and memory: the answer is that file's, not another hypervisor's."""
    info = only_node(console).getInfo()
    assert info == {"model": "i686", "memory": 8192, "cpus": 8, "mhz": 2400, "nodes": 1, "sockets": 1,
                    "cores": 4, "threads": 2}


# --- Domains on node.xml ----------------------------------------------------------------------

def test_domain_getinfo_and_getxmldesc_match_libvirt(console: Console, node_truth: libvirt.virConnect) -> None:
    assert len(console.domains) == 4
    for dom in console.domains:
        truth = node_truth.lookupByUUIDString(dom.uuid)
        info = dom.getInfo()
        assert set(info) == set(DOMAIN_INFO)
        expected = dict(zip(DOMAIN_INFO, truth.info()))
        del info["cpuTime"], expected["cpuTime"]  # the test driver's clock
        assert info == expected, dom.name
        xml = dom.getXMLDesc()
        assert f"<uuid>{dom.uuid}</uuid>" in xml and f"<name>{dom.name}</name>" in xml


def test_getxmldesc_passes_flags_to_libvirt(console: Console) -> None:
    web1 = console.domains.get("web1")
    assert web1.id == 1
    assert "id='1'" in web1.getXMLDesc()
    inactive = web1.getXMLDesc(flags=libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "id='" not in inactive and f"<uuid>{web1.uuid}</uuid>" in inactive


def test_destroy_then_create_changes_state_and_id(console: Console) -> None:
    web2 = console.domains.get("web2")
    assert (web2.id, web2.getInfo()["state"]) == (2, libvirt.VIR_DOMAIN_RUNNING)

    assert isinstance(web2.destroy(), Job)  # void methods return their job
    assert web2.getInfo()["state"] == libvirt.VIR_DOMAIN_SHUTOFF
    assert console.domains.get("web2").id == -1  # pushed before the reply: no wait needed

    assert isinstance(web2.create(), Job)  # void methods return their job
    assert web2.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    restarted = console.domains.get("web2")
    assert restarted.id > 0
    assert f"id='{restarted.id}'" in restarted.getXMLDesc()
    assert restarted.uuid == web2.uuid and restarted.object_id == web2.object_id


def test_shutdown_stops_a_running_domain(console: Console) -> None:
    web1 = console.domains.get("web1")
    assert isinstance(web1.shutdown(), Job)  # void methods return their job
    assert web1.getInfo()["state"] == libvirt.VIR_DOMAIN_SHUTOFF
    assert console.domains.get("web1").id == -1
    web1.create()
    assert console.domains.get("web1").id > 0


def test_reboot_keeps_the_domain_running_with_its_id(console: Console) -> None:
    web1 = console.domains.get("web1")
    assert isinstance(web1.reboot(), Job)  # void methods return their job
    assert isinstance(web1.reboot(flags=0), Job)  # void methods return their job
    assert web1.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    assert console.domains.get("web1").id == 1


def test_resume_then_suspend_a_paused_domain(console: Console) -> None:
    db1 = console.domains.get("db1")
    assert db1.getInfo()["state"] == libvirt.VIR_DOMAIN_PAUSED
    assert isinstance(db1.resume(), Job)  # void methods return their job
    assert db1.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    assert isinstance(db1.suspend(), Job)  # void methods return their job
    assert db1.getInfo()["state"] == libvirt.VIR_DOMAIN_PAUSED
    assert console.domains.get("db1").id == 3


def test_undefine_an_inactive_domain_removes_it(console: Console, node_agent: Agent) -> None:
    build = console.domains.get("build")
    assert build.id == -1
    assert isinstance(build.undefine(), Job)  # void methods return their job
    with pytest.raises(UnknownRefError):
        console.domains.get("build")
    assert {d.name for d in console.domains} == {"web1", "web2", "db1"}
    assert node_agent.registry.get(build.object_id.object_name) is None


def test_undefine_a_running_domain_leaves_it_transient(console: Console) -> None:
    web2 = console.domains.get("web2")
    web2.undefine()
    assert console.domains.get("web2").id == 2  # still running: libvirt made it transient
    assert web2.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    web2.destroy()  # a transient domain is gone once stopped
    with pytest.raises(UnknownRefError):
        console.domains.get("web2")


# --- Domains created through the Node, checked on the shared test:///default --------------------

def test_domain_define_xml_create_destroy_undefine(default_console: Console,
                                                   default_truth: libvirt.virConnect) -> None:
    name, dom_uuid = unique("virtq-def"), str(uuid.uuid4())
    node = only_node(default_console)
    try:
        dom = node.domainDefineXML(xml=domain_xml(name, dom_uuid))
        assert isinstance(dom, RemoteObject) and dom.class_name == "Domain"
        assert (dom.uuid, dom.name, dom.id) == (dom_uuid, name, -1)
        assert dom.node == node.object_id
        assert default_console.domains.get(dom_uuid) == dom  # in the repository at once
        truth = default_truth.lookupByUUIDString(dom_uuid)
        assert truth.isPersistent() and not truth.isActive()

        dom.create()
        assert truth.isActive()
        assert default_console.domains.get(dom_uuid).id == default_truth.lookupByUUIDString(dom_uuid).ID() > 0
        assert dom.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING

        dom.destroy()
        assert not truth.isActive()
        assert default_console.domains.get(dom_uuid).id == -1

        dom.undefine()
        with pytest.raises(UnknownRefError):
            default_console.domains.get(dom_uuid)
        assert libvirt_code(lambda: default_truth.lookupByUUIDString(dom_uuid)) == libvirt.VIR_ERR_NO_DOMAIN
    finally:
        for dom_name in default_truth.listDefinedDomains():
            if dom_name == name:
                default_truth.lookupByName(name).undefine()


def test_domain_create_xml_is_transient(default_console: Console, default_truth: libvirt.virConnect) -> None:
    name, dom_uuid = unique("virtq-tmp"), str(uuid.uuid4())
    node = only_node(default_console)
    try:
        dom = node.domainCreateXML(xmlDesc=domain_xml(name, dom_uuid), flags=0)
        assert isinstance(dom, RemoteObject)
        assert (dom.uuid, dom.name) == (dom_uuid, name)
        truth = default_truth.lookupByUUIDString(dom_uuid)
        assert truth.isActive() and not truth.isPersistent()
        assert dom.id == truth.ID() > 0
        assert default_console.domains.get(name).id == dom.id

        dom.destroy()
        with pytest.raises(UnknownRefError):
            default_console.domains.get(dom_uuid)
        assert libvirt_code(lambda: default_truth.lookupByUUIDString(dom_uuid)) == libvirt.VIR_ERR_NO_DOMAIN
    finally:
        if name in [d.name() for d in default_truth.listAllDomains()]:
            default_truth.lookupByName(name).destroy()


# --- Pools and volumes on node.xml ---------------------------------------------------------------

def test_pool_getinfo_and_getxmldesc_match_libvirt(console: Console, node_truth: libvirt.virConnect) -> None:
    assert {p.name for p in console.pools} == {"images", "isos"}
    for pool in console.pools:
        truth = node_truth.storagePoolLookupByUUIDString(pool.uuid)
        assert pool.getInfo() == dict(zip(POOL_INFO, truth.info()))
        xml = pool.getXMLDesc()
        assert xml == truth.XMLDesc(0)
        assert f"<uuid>{pool.uuid}</uuid>" in xml and f"<name>{pool.name}</name>" in xml
    images = console.pools.get("images").getInfo()
    assert (images["state"], images["capacity"], images["allocation"]) == \
        (libvirt.VIR_STORAGE_POOL_RUNNING, 100 * GiB, 7 * GiB)


def test_volume_getinfo_and_getxmldesc_match_libvirt(console: Console, node_truth: libvirt.virConnect) -> None:
    assert len(console.volumes) == 3
    for vol in console.volumes:
        truth = node_truth.storageVolLookupByKey(vol.key)
        assert vol.getInfo() == dict(zip(VOLUME_INFO, truth.info()))
        xml = vol.getXMLDesc(flags=0)
        assert xml == truth.XMLDesc(0)
        assert f"<key>{vol.key}</key>" in xml
    assert console.volumes.get("web1.img").getInfo() == \
        {"type": libvirt.VIR_STORAGE_VOL_FILE, "capacity": 10 * GiB, "allocation": 2 * GiB}


def test_pool_destroy_hides_its_volumes_and_create_brings_them_back(console: Console) -> None:
    isos = console.pools.get("isos")
    iso = console.volumes.get("debian.iso")
    assert iso.pool == isos.object_id

    assert isinstance(isos.destroy(), Job)  # void methods return their job
    assert isos.getInfo()["state"] == libvirt.VIR_STORAGE_POOL_INACTIVE
    assert console.pools.get("isos").uuid == isos.uuid  # a persistent pool stays
    with pytest.raises(UnknownRefError):
        console.volumes.get("debian.iso")

    assert isinstance(isos.create(), Job)  # void methods return their job
    assert isos.getInfo()["state"] == libvirt.VIR_STORAGE_POOL_RUNNING
    back = console.volumes.get("debian.iso")
    assert (back.key, back.path, back.pool) == (iso.key, iso.path, isos.object_id)

    assert isinstance(isos.refresh(), Job)  # void methods return their job
    assert {v.name for v in console.volumes} == {"web1.img", "db1.qcow2", "debian.iso"}


def test_volume_delete_removes_it(console: Console) -> None:
    iso = console.volumes.get("/var/lib/virtq-test/isos/debian.iso")
    assert isinstance(iso.delete(), Job)  # void methods return their job
    with pytest.raises(UnknownRefError):
        console.volumes.get(iso.key)
    isos = console.pools.get("isos")
    isos.refresh(flags=0)  # libvirt re-reads the pool: the volume stays deleted
    assert {v.name for v in console.volumes} == {"web1.img", "db1.qcow2"}
    assert isos.getInfo()["allocation"] == 0


def test_pool_refresh_is_callable_as_an_attribute_like_every_other_method(console: Console) -> None:
    images = console.pools.get("images")
    assert isinstance(images.refresh(flags=0), Job)  # void methods return their job


def test_undefine_an_inactive_pool_removes_it(console: Console) -> None:
    isos = console.pools.get("isos")
    isos.destroy()
    assert isinstance(isos.undefine(), Job)  # void methods return their job
    with pytest.raises(UnknownRefError):
        console.pools.get("isos")
    assert {p.name for p in console.pools} == {"images"}


# --- Pools and volumes created through the Node, checked on the shared test:///default -----------

def test_pool_define_create_volume_lifecycle_undefine(default_console: Console,
                                                      default_truth: libvirt.virConnect) -> None:
    name, pool_uuid = unique("virtq-pool"), str(uuid.uuid4())
    node = only_node(default_console)
    try:
        pool = node.storagePoolDefineXML(xml=pool_xml(name, f"/virtq-test/{name}", pool_uuid))
        assert isinstance(pool, RemoteObject) and pool.class_name == "Pool"
        assert (pool.uuid, pool.name, pool.node) == (pool_uuid, name, node.object_id)
        assert default_console.pools.get(pool_uuid) == pool
        truth = default_truth.storagePoolLookupByUUIDString(pool_uuid)
        assert truth.isPersistent() and not truth.isActive()
        assert pool.getInfo()["state"] == libvirt.VIR_STORAGE_POOL_INACTIVE

        pool.create(flags=0)
        assert truth.isActive()
        assert pool.getInfo() == dict(zip(POOL_INFO, truth.info()))

        vol = pool.storageVolCreateXML(xmlDesc=VOLUME_XML)
        assert isinstance(vol, RemoteObject) and vol.class_name == "Volume"
        truth_vol = default_truth.storageVolLookupByKey(vol.key)
        assert (vol.key, vol.name, vol.path) == (truth_vol.key(), "disk0.img", truth_vol.path())
        assert vol.pool == pool.object_id
        assert default_console.volumes.get(vol.key) == vol
        assert vol.getInfo() == dict(zip(VOLUME_INFO, truth_vol.info()))
        assert vol.getInfo()["capacity"] == 10 * 1024 * 1024
        assert f"<key>{vol.key}</key>" in vol.getXMLDesc()

        pool.refresh()
        assert default_console.volumes.get(vol.key) == vol

        vol.delete()
        with pytest.raises(UnknownRefError):
            default_console.volumes.get(vol.key)
        assert libvirt_code(lambda: default_truth.storageVolLookupByKey(vol.key)) == libvirt.VIR_ERR_NO_STORAGE_VOL

        pool.destroy()
        assert not truth.isActive()
        pool.undefine()
        with pytest.raises(UnknownRefError):
            default_console.pools.get(pool_uuid)
        assert libvirt_code(lambda: default_truth.storagePoolLookupByUUIDString(pool_uuid)) == \
            libvirt.VIR_ERR_NO_STORAGE_POOL
    finally:
        for leftover in default_truth.listAllStoragePools():
            if leftover.name() == name:
                if leftover.isActive():
                    leftover.destroy()
                leftover.undefine()


def test_pool_create_xml_is_transient(default_console: Console, default_truth: libvirt.virConnect) -> None:
    name, pool_uuid = unique("virtq-tpool"), str(uuid.uuid4())
    node = only_node(default_console)
    try:
        pool = node.storagePoolCreateXML(xmlDesc=pool_xml(name, f"/virtq-test/{name}", pool_uuid), flags=0)
        assert isinstance(pool, RemoteObject)
        assert (pool.uuid, pool.name) == (pool_uuid, name)
        truth = default_truth.storagePoolLookupByUUIDString(pool_uuid)
        assert truth.isActive() and not truth.isPersistent()
        assert pool.getInfo()["state"] == libvirt.VIR_STORAGE_POOL_RUNNING
        assert default_console.pools.get(name).object_id == pool.object_id

        pool.destroy()
        with pytest.raises(UnknownRefError):
            default_console.pools.get(pool_uuid)
        assert libvirt_code(lambda: default_truth.storagePoolLookupByUUIDString(pool_uuid)) == \
            libvirt.VIR_ERR_NO_STORAGE_POOL
    finally:
        for leftover in default_truth.listAllStoragePools():
            if leftover.name() == name:
                leftover.destroy()
