"""virtq against a real libvirtd with the QEMU driver: a real guest's whole life through a console."""

from __future__ import annotations

from typing import Callable, Iterator

import libvirt
import pytest

from virtq.agent import Agent
from virtq.console import Console, RemoteObject
from virtq.schema.errors import UnknownRefError
from virtq.testing import wait_until

from .conftest import TinyGuest

pytestmark = pytest.mark.realhv

RUNNING, PAUSED, SHUTOFF = libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTOFF


@pytest.fixture
def qemu_agent(admin_agent: Callable[..., Agent]) -> Agent:
    return admin_agent()


@pytest.fixture
def qemu_console(admin_console: Callable[..., Console], qemu_agent: Agent) -> Console:
    return admin_console(qemu_agent, timeout=20)


@pytest.fixture
def truth(real_libvirt: str) -> Iterator[libvirt.virConnect]:
    """A second, direct libvirt connection: the ground truth."""
    conn = libvirt.open(real_libvirt)
    yield conn
    conn.close()


def node_of(console: Console, agent: Agent) -> RemoteObject:
    (node,) = console.repository("node").of_agent(agent.name)
    return node


def has_domain(console: Console, uuid: str) -> bool:
    try:
        console.domains.get(uuid)
    except UnknownRefError:
        return False
    return True


def test_guest_lifecycle(qemu_console: Console, qemu_agent: Agent, tiny_guest: Callable[[], TinyGuest],
                         truth: libvirt.virConnect) -> None:
    guest = tiny_guest()
    node = node_of(qemu_console, qemu_agent)

    dom = node.domainDefineXML(xml=guest.xml)
    assert isinstance(dom, RemoteObject), dom
    assert (dom.name, dom.id) == (guest.name, -1)
    assert qemu_console.domains.get(guest.name).uuid == dom.uuid
    assert qemu_console.domains.get(dom.uuid).id == -1
    assert truth.lookupByName(guest.name).UUIDString() == dom.uuid

    dom.create()
    assert dom.getInfo()["state"] == RUNNING
    running = dom.latest()
    assert running.id > 0
    assert running.id == truth.lookupByName(guest.name).ID()
    assert wait_until(guest.booted, timeout=20), f"serial output: {guest.serial_text()!r}"

    dom.suspend()
    assert dom.getInfo()["state"] == PAUSED
    dom.resume()
    assert dom.getInfo()["state"] == RUNNING

    dom.destroy()
    assert dom.getInfo()["state"] == SHUTOFF
    assert dom.latest().id == -1
    assert truth.lookupByName(guest.name).ID() == -1

    dom.undefine()
    wait_until(lambda: not has_domain(qemu_console, dom.uuid))
    assert guest.name not in {d.name() for d in truth.listAllDomains(0)}


def test_capabilities_carry_the_node_uuid(qemu_console: Console, qemu_agent: Agent,
                                          truth: libvirt.virConnect) -> None:
    node = node_of(qemu_console, qemu_agent)
    capabilities = node.getCapabilities()
    assert f"<uuid>{node.uuid}</uuid>" in capabilities.lower()
    assert capabilities == truth.getCapabilities()
