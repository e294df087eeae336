"""The first end-to-end path: a console over real AMQP sees exactly libvirt's objects."""

from __future__ import annotations

import libvirt
import pytest

from virtq.console import Console

from ..helpers import NODE_URI

pytestmark = pytest.mark.integration


def test_console_mirrors_libvirt_objects(console: Console) -> None:
    truth = libvirt.open(NODE_URI)  # a second connection: same initial state from the file
    try:
        doms = {(d.UUIDString(), d.name(), d.ID()) for d in truth.listAllDomains()}
        pools = {(p.UUIDString(), p.name()) for p in truth.listAllStoragePools()}
        vols = {(v.key(), v.name(), v.path()) for p in truth.listAllStoragePools() for v in p.listAllVolumes()}
    finally:
        truth.close()
    assert {(d.uuid, d.name, d.id) for d in console.domains} == doms
    assert {(p.uuid, p.name) for p in console.pools} == pools
    assert {(v.key, v.name, v.path) for v in console.volumes} == vols
    assert len(console.nodes) == 1 and len(console.agents) == 1


def test_suspend_changes_state_seen_through_getinfo(console: Console) -> None:
    dom = console.domains.get("web1")
    assert dom.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    dom.suspend()
    assert dom.getInfo()["state"] == libvirt.VIR_DOMAIN_PAUSED
    dom.resume()
    assert dom.getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
