"""Generated methods end to end: a console over real AMQP, an agent on tests/data/node.xml.

Hand-picked methods whose shapes the generic sweep (tests/unit/test_generated_methods.py) checks
one call at a time: lists of objects, objects as arguments, several out-arguments, statistics
records holding objects; and the CLI's object arguments and `virtq schema coverage`.
"""

from __future__ import annotations

import json
from typing import Any, List

import libvirt
import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.console.objects import RemoteObject
from virtq.schema import errors
from virtq.schema.codec import ObjectId

from ..helpers import failed, ok, virtq

pytestmark = pytest.mark.integration

CLONE_XML = "<volume><name>web1-clone.img</name><capacity unit='GiB'>10</capacity></volume>"


def names(objects: List[Any]) -> List[str]:
    assert all(isinstance(o, RemoteObject) for o in objects), objects
    return sorted(o.name for o in objects)


def test_lists_of_objects_come_back_as_snapshots(console: Console) -> None:
    (node,) = list(console.nodes)
    assert names(node.listAllDomains()) == ["build", "db1", "web1", "web2"]
    assert names(node.listAllDomains(flags=libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE)) == ["build"]
    assert names(node.listAllStoragePools()) == ["images", "isos"]
    images = console.pools.get("images")
    assert names(images.listAllVolumes()) == ["db1.qcow2", "web1.img"]
    assert sorted(node.listDefinedDomains()) == ["build"]  # lists of names stay names
    assert node.numOfDomains() == 3


def test_looked_up_objects_are_the_repositorys(console: Console) -> None:
    (node,) = list(console.nodes)
    web1 = console.domains.get("web1")
    assert node.domainLookupByName(name="web1").object_id == web1.object_id
    assert node.domainLookupByUUIDString(web1.uuid).object_id == web1.object_id
    vol = console.volumes.get("web1.img")
    assert vol.storagePoolLookupByVolume().object_id == console.pools.get("images").object_id
    assert console.pools.get("images").storageVolLookupByName("web1.img").object_id == vol.object_id
    with pytest.raises(errors.LibvirtError) as info:
        node.domainLookupByName("no-such-domain")
    assert info.value.libvirt_code == libvirt.VIR_ERR_NO_DOMAIN


def test_several_out_arguments_and_out_structures(console: Console) -> None:
    web1, db1 = console.domains.get("web1"), console.domains.get("db1")
    assert web1.getState() == {"state": libvirt.VIR_DOMAIN_RUNNING, "reason": libvirt.VIR_DOMAIN_RUNNING_UNKNOWN}
    assert db1.getState(flags=0)["state"] == libvirt.VIR_DOMAIN_PAUSED
    vcpus = web1.getVcpus()
    assert list(vcpus) == ["info", "cpumaps"]
    assert [set(v) for v in vcpus["info"]] == [{"number", "state", "cpuTime", "cpu"}]
    assert all(isinstance(b, bool) for b in vcpus["cpumaps"][0])
    (node,) = list(console.nodes)
    cpumap = node.getCPUMap()
    assert cpumap["cpus"] == len(cpumap["cpumap"]) == 8
    assert node.getSecurityModel() == {"model": "testSecurity", "doi": ""}
    assert web1.getCPUStats(total=True)[0].keys() >= {"cpu_time"}
    assert web1.isActive() == 1 and console.domains.get("build").isActive() == 0


def test_statistics_records_hold_domain_snapshots(console: Console) -> None:
    (node,) = list(console.nodes)
    records = node.getAllDomainStats(stats=libvirt.VIR_DOMAIN_STATS_STATE)
    by_name = {r["domain"].name: r["stats"] for r in records}
    assert set(by_name) == {"web1", "web2", "db1", "build"}
    assert by_name["db1"]["state.state"] == libvirt.VIR_DOMAIN_PAUSED
    web1, web2 = console.domains.get("web1"), console.domains.get("web2")
    picked = node.domainListGetStats([web1, web2.object_id], libvirt.VIR_DOMAIN_STATS_STATE)
    assert [r["domain"].object_id for r in picked] == [web1.object_id, web2.object_id]


def test_an_object_passed_as_an_argument(console: Console) -> None:
    images, web1_img = console.pools.get("images"), console.volumes.get("web1.img")
    clone = images.storageVolCreateXMLFrom(CLONE_XML, web1_img)
    assert isinstance(clone, RemoteObject) and clone.class_name == "Volume"
    assert clone.name == "web1-clone.img" and clone.pool == images.object_id
    assert console.volumes.get("web1-clone.img").object_id == clone.object_id  # pushed before the reply
    assert clone.getInfo()["capacity"] == web1_img.getInfo()["capacity"]


def test_an_object_of_the_wrong_class_is_refused_by_the_agent(console: Console) -> None:
    images = console.pools.get("images")
    with pytest.raises(errors.InvalidParameterError, match="is a Domain, not a Volume"):
        images.storageVolCreateXMLFrom(CLONE_XML, console.repository("domain").get("web1"))  # mypy would refuse it
    with pytest.raises(errors.InvalidParameterError, match="no such object"):
        images.storageVolCreateXMLFrom(CLONE_XML, ObjectId("Volume:/no/such.img"))


def test_arguments_are_checked_by_the_console_before_sending(console: Console) -> None:
    web1 = console.repository("domain").get("web1")  # untyped: mypy would refuse these calls
    with pytest.raises(errors.InvalidParameterError, match="missing argument memory"):
        web1.setMemory()
    with pytest.raises(errors.InvalidParameterError, match="argument memory: expected uint64, got str"):
        web1.setMemory(memory="lots")
    with pytest.raises(errors.InvalidParameterError, match="unknown argument"):
        web1.setMemory(memory=1024, size=2)


def test_the_cli_takes_objects_by_reference(node_agent: Agent, console: Console) -> None:
    out = ok(virtq("--json", "call", "pool", "images", "storageVolCreateXMLFrom", f"xmlDesc={CLONE_XML}",
                   "clonevol=web1.img", urls=[node_agent]))
    assert json.loads(out)["result"]["name"] == "web1-clone.img"
    out = ok(virtq("--json", "call", "node", node_agent.registry.node.uuid, "domainListGetStats",
                   "doms=web1,db1", "stats=1", urls=[node_agent]))
    assert [r["domain"]["name"] for r in json.loads(out)["result"]] == ["web1", "db1"]
    assert "no-such" in failed(virtq("call", "pool", "images", "storageVolCreateXMLFrom", "xmlDesc=<volume/>",
                                     "clonevol=no-such", urls=[node_agent]), 4)


def test_schema_coverage_command() -> None:
    text = ok(virtq("schema", "coverage"))
    report = json.loads(ok(virtq("--json", "schema", "coverage")))
    assert "total" in text and f"{report['total']['coverage']:.1f}%" in text and "UNACCOUNTED" not in text
    assert report["ok"] is True and report["unaccounted"] == []
    assert report["total"]["coverage"] >= 95.0
    assert [c["class"] for c in report["classes"]] == ["Node", "Domain", "Pool", "Volume", "DomainSnapshot",
                                                       "DomainCheckpoint"]
    assert json.loads(ok(virtq("schema", "coverage", "--json"))) == report
    assert "libvirt-dev" in failed(virtq("schema", "coverage", "--api", "/no/such/libvirt-api.xml"), 1)


def test_methods_describes_one_method() -> None:
    text = ok(virtq("methods", "domain", "reboot"))
    assert text.startswith("Domain.reboot  (virDomainReboot)")
    assert "VIR_DOMAIN_REBOOT_ACPI_POWER_BTN = 0x1" in text
    detail = json.loads(ok(virtq("--json", "methods", "pool", "storageVolCreateXMLFrom")))
    clonevol = next(a for a in detail["arguments"] if a["name"] == "clonevol")
    assert (clonevol["type"], clonevol["references"]) == ("objId", "Volume")
    assert "frobnicate" in failed(virtq("methods", "domain", "frobnicate"), 2)
    rows = json.loads(ok(virtq("--json", "methods", "domain")))
    assert len(rows) > 130 and {"getState", "getVcpus", "setMemory", "migrateToURI3"} <= {r["method"] for r in rows}
