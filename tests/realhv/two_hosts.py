"""Two private libvirtds on one machine, each in its own mount namespace: two "hosts" to migrate between.

The recipe and its pitfalls are ../shared/notes/two-libvirtds.md (verified on libvirt 9.0, QEMU 7.2): each
daemon gets a tmpfs over /run/libvirt and its own copies of /var/lib/libvirt, /var/cache/libvirt,
/etc/libvirt and /var/log/libvirt, bound in a namespace made by ``unshare --mount``; its socket lives outside
them (``ROOT/X/sock``) so the host, the agents and the other daemon reach it; a distinct explicit
``host_uuid`` (libvirt refuses to migrate to "the same host"); no cgroup controllers (both daemons number
domains from 1). The daemons keep their namespace alive; each is stopped by its pid file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from virtq.testing import WaitTimeout, wait_until
from virtq.testing.processes import pid_alive

from .harness import HarnessError, Unavailable, answers, find_programs, guest_name

__all__ = ["Host", "TwoHosts", "dirtying_firmware", "migratable_guest_xml", "stop_hosts"]

BOUND = {"lib": "/var/lib/libvirt", "cache": "/var/cache/libvirt", "etc": "/etc/libvirt", "log": "/var/log/libvirt"}
"""ROOT/X/<folder> -> the system path it is bound over in X's namespace."""


@dataclass
class Host:
    """One libvirtd in its namespace: ``uri`` reaches it from anywhere on this machine."""

    name: str
    root: Path
    host_uuid: str
    namespace: str = ""  # its mount namespace ("mnt:[…]"): what runs in it is its (QEMUs, virtlogd)

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.root / 'sock' / 'libvirt-sock'}"

    def pid(self, daemon: str) -> int:
        try:
            return int((self.root / "run" / f"{daemon}.pid").read_text().strip())
        except (OSError, ValueError):
            return 0

    def running(self) -> bool:
        return answers(self.uri)

    def start(self, timeout: float = 30.0) -> None:
        """Start virtlogd and libvirtd in a new mount namespace; ready when the URI answers."""
        programs = find_programs()
        for folder in ("sock", "run", *BOUND):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._configure()
        binds = " && ".join(f"mkdir -p {target} && mount --bind {self.root / folder} {target}"
                            for folder, target in BOUND.items())
        script = (f"mkdir -p /run/libvirt && mount -t tmpfs tmpfs /run/libvirt && {binds} && "
                  f"{programs['virtlogd']} -d -f {self.root / 'virtlogd.conf'} -p {self.root / 'run/virtlogd.pid'} && "
                  "for i in $(seq 200); do [ -S /run/libvirt/virtlogd-sock ] && break; sleep 0.05; done && "
                  f"{programs['libvirtd']} -d -f {self.root / 'libvirtd.conf'} -p {self.root / 'run/libvirtd.pid'}")
        out = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", script],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise HarnessError(f"{self.name}: cannot start its libvirtd: {out.stderr.strip()}")
        try:
            wait_until(self.running, timeout, interval=0.05)
            self.namespace = os.readlink(f"/proc/{self.pid('libvirtd')}/ns/mnt")
        except (WaitTimeout, OSError) as exc:
            raise HarnessError(f"{self.name}: libvirtd does not answer at {self.uri}{self._log_tail()}") from exc

    def stop(self, timeout: float = 10.0) -> None:
        stop_hosts([self], timeout)

    def _signal(self, daemon: str, sig: int) -> List[int]:
        """Send ``sig`` to a daemon; its pid, if it was running."""
        pid = self.pid(daemon)
        if not pid or not pid_alive(pid):
            return []
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return []
        return [pid]

    def leftovers(self) -> List[int]:
        """The processes still in its namespace (its virtlogd, the QEMUs libvirtd leaves when it stops)."""
        if not self.namespace:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.readlink(entry / "ns" / "mnt") == self.namespace:
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def _configure(self) -> None:
        cached = Path("/var/cache/libvirt/qemu/capabilities")  # the host's QEMU probe: saves ~5 s per daemon
        if cached.is_dir() and not (self.root / "cache" / "qemu").exists():
            shutil.copytree(cached, self.root / "cache" / "qemu" / "capabilities")
        etc = self.root / "etc"
        for conf in Path("/etc/libvirt").glob("*.conf"):  # the host's defaults, not its domains
            shutil.copy(conf, etc / conf.name)
        (etc / "qemu").mkdir(exist_ok=True)
        # namespaces: QEMUs stay in the daemon's mount namespace, where stop() finds what libvirtd leaves running
        (etc / "qemu.conf").write_text('user = "root"\ngroup = "root"\ncgroup_controllers = [ ]\nnamespaces = [ ]\n')
        (self.root / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{self.root / "sock"}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            f'host_uuid = "{self.host_uuid}"\nlog_outputs = "3:file:{self.root / "libvirtd.log"}"\n')
        (self.root / "virtlogd.conf").write_text(f'log_outputs = "3:file:{self.root / "virtlogd.log"}"\n')

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.root / "libvirtd.log").read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n" + "\n".join(text)


def stop_hosts(hosts: List[Host], timeout: float = 10.0) -> None:
    """SIGTERM every libvirtd at once and wait (SIGKILL after ``timeout``); then SIGKILL what is left in their
    namespaces: virtlogd (nothing of its is kept) and the QEMUs libvirtd leaves running when it stops."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for host in hosts for pid in host._signal("libvirtd", sig)]
        try:
            wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout, interval=0.05)
            break
        except WaitTimeout:
            continue
    for host in hosts:
        for pid in host.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class TwoHosts:
    """Hosts ``a`` and ``b`` under ``root`` (root only: namespaces, mounts, QEMU as root)."""

    def __init__(self, root: Path) -> None:
        if os.geteuid() != 0:
            raise Unavailable("two private libvirtds need root (mount namespaces)")
        if shutil.which("unshare") is None:
            raise Unavailable("unshare (util-linux) is not installed")
        self.a = Host("a", root / "a", str(uuid.uuid4()))
        self.b = Host("b", root / "b", str(uuid.uuid4()))

    def start(self) -> None:
        try:
            self.a.start()
            self.b.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_hosts([self.a, self.b])


def migratable_guest_xml(tag: str, firmware: Optional[Path] = None) -> str:
    """A 64 MiB TCG guest with nothing local to move: no disk, no balloon, no serial file. With SeaBIOS it
    idles, looking for something to boot; with ``firmware`` (``dirtying_firmware``) it rewrites its memory
    without end, so a bandwidth-limited migration never converges (until aborted)."""
    loader = f"<loader readonly='yes' type='rom'>{firmware}</loader>" if firmware else ""
    return f"""<domain type='qemu'>
  <name>{guest_name(tag)}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>{loader}</os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def dirtying_firmware(path: Path) -> Path:
    """A 64 KiB x86 "BIOS" whose reset vector jumps to a loop that fills 512 KiB of low memory (0x10000-0x8FFFF)
    with a counter, again and again (~128 pages dirtied per pass)."""
    code = bytes([
        0xFA,                    # 00 cli
        0xFC,                    # 01 cld
        0x31, 0xC0,              # 02 xor ax, ax
        0xBA, 0x00, 0x10,        # 04 outer: mov dx, 0x1000
        0x8E, 0xC2,              # 07 segment: mov es, dx
        0x31, 0xFF,              # 09 xor di, di
        0xB9, 0x00, 0x80,        # 11 mov cx, 0x8000 (64 KiB)
        0xF3, 0xAB,              # 14 rep stosw
        0x81, 0xC2, 0x00, 0x10,  # 16 add dx, 0x1000
        0x81, 0xFA, 0x00, 0x90,  # 20 cmp dx, 0x9000
        0x75, 0xED,              # 24 jne segment (7)
        0x40,                    # 26 inc ax
        0xEB, 0xE7,              # 27 jmp outer (4)
    ])
    image = bytearray(64 * 1024)
    image[:len(code)] = code
    image[0xFFF0:0xFFF5] = bytes([0xEA, 0x00, 0x00, 0x00, 0xF0])  # reset vector: jmp far F000:0000
    path.write_bytes(bytes(image))
    path.chmod(0o644)
    return path
