"""What the fleet measures with: libvirt calls per thread kind, message categories, and this process's
CPU, RSS and TCP bytes read from /proc and the kernel's tcp_info (no psutil, no resource module).

``MeteredHypervisor`` and ``category`` serve the other benchmarks too (``bench.push_vs_poll``, ``bench.common``).
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import threading
import uuid as uuidlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from virtq.agent.hypervisor import (DOMAIN_INFO_FIELDS, DomainIdentity, ForwardingHypervisor, Hypervisor, Identity,
                                    NodeIdentity, PoolIdentity, VolumeIdentity)
from virtq.schema.codec import CONTENT, OPCODE, WireMessage

# --- message categories ----------------------------------------------------------------------------


def category(wire: WireMessage) -> str:
    """A short name for what a message is: stats/Domain, data/Domain, event, heartbeat, query_response …

    Read from the properties and subject only (no decoding), so it is cheap enough to run on every
    message a console receives.
    """
    properties = wire.properties if isinstance(wire.properties, Mapping) else {}
    opcode = str(properties.get(OPCODE, "?")).strip("_")
    if opcode == "data_indication":
        content = str(properties.get(CONTENT, "_data")).strip("_")
        parts = wire.subject.split(".")
        return f"{content}/{parts[4]}" if content in ("data", "stats") and len(parts) > 4 else content
    if opcode == "agent_heartbeat_indication":
        return "heartbeat"
    return opcode


# --- a hypervisor that counts libvirt calls and reports cpuTime as QEMU does --------------------------

CPU_TIME = DOMAIN_INFO_FIELDS.index("cpuTime")
STATE = DOMAIN_INFO_FIELDS.index("state")
ACTIVE_STATES = (1, 2)  # running, blocked: the only states in which a guest consumes CPU
SHUTOFF = 5


def thread_kind(name: str) -> str:
    """A thread's kind from its name: ``virtq-sample_3`` -> ``virtq-sample``, ``virtq-worker_0`` -> …"""
    return name.split("_")[0].rstrip("0123456789-") or name


class MeteredHypervisor(ForwardingHypervisor):
    """Wraps the agent's hypervisor: counts libvirt calls per thread kind and, unless ``raw``,
    makes virDomainGetInfo's cpuTime behave as on QEMU.

    libvirt's test driver reports the wall clock as cpuTime for every domain, paused and shut
    off ones included, so every domain would look busy at every sample. QEMU reports a paused
    domain's cpuTime frozen and a shut-off domain's as 0; with ``raw=False`` this wrapper does
    the same (running domains keep the driver's ever-changing value: the worst case).

    ``node`` overrides the node's identity (a fleet's simulated hosts all run on this machine, whose
    hostname the test driver reports for every one of them).
    """

    def __init__(self, inner: Hypervisor, raw: bool = False, node: Optional[NodeIdentity] = None) -> None:
        super().__init__(inner)
        self.raw = raw
        self._node = node
        self._frozen: Dict[str, int] = {}
        self._lock = threading.Lock()
        self.calls: Dict[str, int] = collections.Counter()

    def _count(self, what: str) -> None:
        kind = thread_kind(threading.current_thread().name)
        with self._lock:
            self.calls[f"{kind}:{what}"] += 1

    def calls_by_thread(self) -> Dict[str, int]:
        with self._lock:
            totals: Dict[str, int] = collections.Counter()
            for key, n in self.calls.items():
                totals[key.split(":")[0]] += n
            return dict(totals)

    def _qemu_like(self, key: str, info: List[int]) -> List[int]:
        if self.raw:
            return info
        with self._lock:
            if info[STATE] in ACTIVE_STATES:
                self._frozen[key] = info[CPU_TIME]
            elif info[STATE] == SHUTOFF:
                self._frozen.pop(key, None)
                info[CPU_TIME] = 0
            else:
                info[CPU_TIME] = self._frozen.setdefault(key, info[CPU_TIME])
        return info

    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        self._count(function)
        result = self.inner.invoke(class_name, key, function, args)
        if function == "virDomainGetInfo" and key is not None and isinstance(result, (list, tuple)):
            result = self._qemu_like(key, list(result))
        return result

    def bulk_domain_info(self) -> Dict[str, Dict[str, int]]:
        self._count("virConnectGetAllDomainStats")
        found = self.inner.bulk_domain_info()
        for key, values in found.items():
            row = self._qemu_like(key, [values[f] for f in DOMAIN_INFO_FIELDS])
            found[key] = dict(zip(DOMAIN_INFO_FIELDS, row))
        return found

    def bulk_domain_info_of(self, keys: Sequence[str]) -> Dict[str, Dict[str, int]]:
        self._count("virDomainListGetStats")
        found = self.inner.bulk_domain_info_of(keys)
        for key, values in found.items():
            row = self._qemu_like(key, [values[f] for f in DOMAIN_INFO_FIELDS])
            found[key] = dict(zip(DOMAIN_INFO_FIELDS, row))
        return found

    def node(self) -> NodeIdentity:
        return self._node if self._node is not None else self.inner.node()

    def list_domains(self) -> List[DomainIdentity]:
        self._count("virConnectListAllDomains")
        return self.inner.list_domains()

    def list_pools(self) -> List[PoolIdentity]:
        self._count("virConnectListAllStoragePools")
        return self.inner.list_pools()

    def list_volumes(self, pool_uuid: str) -> List[VolumeIdentity]:
        self._count("virStoragePoolListAllVolumes")
        return self.inner.list_volumes(pool_uuid)

    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        self._count(f"lookup{class_name}")
        return self.inner.lookup(class_name, key)



HOST_NAMESPACE = uuidlib.UUID("0c6f3a8e-5d41-4b7a-8f0e-2a9d6c1b7e53")


def host_identity(host: str, uri: str) -> NodeIdentity:
    """A simulated host's node identity: its own hostname and a UUID derived from it."""
    return NodeIdentity(str(uuidlib.uuid5(HOST_NAMESPACE, host)), host, uri)


# --- this process: CPU, memory, TCP bytes ------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: str = "self") -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def rss_bytes(pid: str = "self") -> int:
    """Resident set size, from /proc/<pid>/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


_TCP_INFO_BYTES = struct.Struct("=QQ")
_TCP_INFO_BYTES_OFFSET = 120  # struct tcp_info: tcpi_bytes_acked (u64) at 120, tcpi_bytes_received at 128
_TCP_INFO_LEN = 136


def tcp_bytes() -> Tuple[int, int]:
    """(bytes sent and acknowledged, bytes received) over every TCP socket this process holds now:
    the AMQP payload with its framing, as the kernel counted it (TCP/IP headers not included)."""
    sent = received = 0
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return 0, 0
    for name in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = os.dup(int(name))
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
            if len(info) >= _TCP_INFO_LEN:
                acked, got = _TCP_INFO_BYTES.unpack_from(info, _TCP_INFO_BYTES_OFFSET)
                sent += acked
                received += got
        except OSError:
            pass
        finally:
            sock.close()
    return sent, received


def snapshot() -> Dict[str, Any]:
    """CPU seconds, RSS and TCP bytes of this process, now."""
    sent, received = tcp_bytes()
    return {"cpu": cpu_seconds(), "rss": rss_bytes(), "tcp_sent": sent, "tcp_received": received}
