"""Node XML for libvirt's test driver: a host with a given mix of running, paused and shut-off domains.

``test:///path/to/node.xml`` opens a private test-driver instance loaded from the file, so
each generated file is one simulated hypervisor. Names and uuids are deterministic
(derived from the host name), so several hosts generated for a fleet never collide and a
re-generated file describes the same objects.

By default every domain has the devices of a modest real guest (two disks, a NIC, serial
console, graphics, video, balloon), so ``getXMLDesc`` answers are of a realistic size
(about 2.5 KB as the test driver formats them); ``devices=False`` gives bare domains.

    python -m bench.fleetxml --running 30 --paused 5 --shutoff 5 -o /tmp/node.xml

(``bench.fleetxml`` re-exports it and keeps the command line.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List
from xml.sax.saxutils import escape

NAMESPACE = uuid.UUID("1f3e1c52-7a0d-4c8e-9b6a-5d2f0e4a7c31")

RUNNING, PAUSED, SHUTOFF = 1, 3, 5
"""virDomainState values the test driver's <test:runstate> accepts."""
STATE_NAMES = {RUNNING: "running", PAUSED: "paused", SHUTOFF: "shutoff"}


@dataclass(frozen=True)
class DomainSpec:
    name: str
    uuid: str
    state: int  # RUNNING, PAUSED or SHUTOFF
    memory_mib: int
    vcpus: int
    index: int


@dataclass(frozen=True)
class NodeSpec:
    host: str
    domains: List[DomainSpec]

    def by_state(self, state: int) -> List[DomainSpec]:
        return [d for d in self.domains if d.state == state]


def plan(host: str = "host0", running: int = 30, paused: int = 5, shutoff: int = 5,
         prefix: str = "vm") -> NodeSpec:
    """The domains of one host: running first, then paused, then shut off."""
    states = [RUNNING] * running + [PAUSED] * paused + [SHUTOFF] * shutoff
    domains = []
    for i, state in enumerate(states):
        name = f"{prefix}{i:04d}"
        domains.append(DomainSpec(name, str(uuid.uuid5(NAMESPACE, f"{host}/{name}")), state,
                                  memory_mib=(512, 1024, 2048, 4096)[i % 4], vcpus=1 + i % 4, index=i))
    return NodeSpec(host, domains)


def _mac(spec: DomainSpec, host: str) -> str:
    raw = uuid.uuid5(NAMESPACE, f"{host}/{spec.name}/mac").bytes
    return "52:54:00:" + ":".join(f"{b:02x}" for b in raw[:3])


def _devices(spec: DomainSpec, host: str) -> str:
    image = f"/var/lib/libvirt/images/{host}/{spec.name}"
    return f"""
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2' cache='none' io='native'/>
        <source file='{image}-root.qcow2'/>
        <target dev='vda' bus='virtio'/>
        <serial>{spec.uuid[:20]}</serial>
      </disk>
      <disk type='file' device='disk'>
        <driver name='qemu' type='raw' cache='none' io='native'/>
        <source file='{image}-data.img'/>
        <target dev='vdb' bus='virtio'/>
      </disk>
      <disk type='file' device='cdrom'>
        <driver name='qemu' type='raw'/>
        <target dev='sdc' bus='sata'/>
        <readonly/>
      </disk>
      <interface type='bridge'>
        <mac address='{_mac(spec, host)}'/>
        <source bridge='ovirtmgmt'/>
        <model type='virtio'/>
        <filterref filter='vdsm-no-mac-spoofing'/>
      </interface>
      <serial type='pty'>
        <target port='0'/>
      </serial>
      <console type='pty'>
        <target type='serial' port='0'/>
      </console>
      <channel type='unix'>
        <target type='virtio' name='org.qemu.guest_agent.0'/>
      </channel>
      <input type='tablet' bus='usb'/>
      <graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0'/>
      <video>
        <model type='vga' vram='16384' heads='1'/>
      </video>
      <memballoon model='virtio'/>
    </devices>"""


def fleet_domain_xml(spec: DomainSpec, host: str = "host0", devices: bool = True) -> str:
    """A production-sized domain (an oVirt guest's devices unless ``devices`` is False) in ``spec``'s run
    state: an element of a node file, or what the fleet's churn defines."""
    kib = spec.memory_mib * 1024
    return f"""
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{escape(spec.name)}</name>
    <uuid>{spec.uuid}</uuid>
    <title>{escape(spec.name)} on {escape(host)}</title>
    <memory unit='KiB'>{kib}</memory>
    <currentMemory unit='KiB'>{kib}</currentMemory>
    <vcpu placement='static'>{spec.vcpus}</vcpu>
    <os>
      <type arch='i686'>hvm</type>
      <boot dev='hd'/>
    </os>
    <features>
      <acpi/>
      <apic/>
    </features>
    <clock offset='utc'/>
    <on_poweroff>destroy</on_poweroff>
    <on_reboot>restart</on_reboot>
    <on_crash>destroy</on_crash>{_devices(spec, host) if devices else ""}
    <test:runstate>{spec.state}</test:runstate>
  </domain>"""


def node_xml(spec: NodeSpec, devices: bool = True, memory_mib: int = 262144) -> str:
    """The whole node file: CPU, memory, the domains and one storage pool."""
    pool_uuid = uuid.uuid5(NAMESPACE, f"{spec.host}/pool/images")
    domains = "".join(fleet_domain_xml(d, spec.host, devices) for d in spec.domains)
    return f"""<?xml version="1.0"?>
<!-- Generated by bench.fleetsim.nodexml: host {escape(spec.host)}, {len(spec.by_state(RUNNING))} running,
     {len(spec.by_state(PAUSED))} paused, {len(spec.by_state(SHUTOFF))} shut off. -->
<node>
  <cpu>
    <mhz>2400</mhz>
    <model>i686</model>
    <nodes>1</nodes>
    <sockets>2</sockets>
    <cores>16</cores>
    <threads>2</threads>
    <active>64</active>
  </cpu>
  <memory>{memory_mib * 1024}</memory>{domains}
  <pool type='dir'>
    <name>images</name>
    <uuid>{pool_uuid}</uuid>
    <target>
      <path>/var/lib/libvirt/images/{escape(spec.host)}</path>
    </target>
  </pool>
</node>
"""


def write_node_xml(path: Path, host: str = "host0", running: int = 30, paused: int = 5, shutoff: int = 5,
                   devices: bool = True, prefix: str = "vm") -> NodeSpec:
    """Write one host's node file; returns what it holds. Open it as ``test://<absolute path>``."""
    spec = plan(host, running, paused, shutoff, prefix)
    path.write_text(node_xml(spec, devices))
    return spec


def node_uri(path: Path) -> str:
    return f"test://{path.resolve()}"
