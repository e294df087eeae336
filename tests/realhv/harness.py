"""A private libvirtd (QEMU driver, software emulation) for the real-hypervisor tier, and tiny guests.

``LibvirtDaemons`` starts virtlogd and libvirtd with their own configuration, log and pid
files in a work directory, libvirtd under ``tini -s`` (a child subreaper: QEMU processes
that libvirt daemonizes are reaped at once, so ``destroy`` takes ~0.2 s instead of ~2 s),
waits until ``qemu:///system`` answers, and stops both again. A libvirtd that already
answers (a developer's) is reused and left running.

The daemons serve the system paths (/run/libvirt sockets, /etc/libvirt/qemu for persistent
definitions, /etc/libvirt/qemu.conf) because the agent under test connects to
``qemu:///system``. Test sessions may run in parallel: each holds a shared lock on
LOCK_FILE while it uses the daemon, an exclusive one only to start it, and the session that
started it stops it once no other session holds the lock. Daemons left by a session that
was killed are adopted (stopped at the end) by the next one. Guests made here are named
``virtq-test-<pid>-*``; only those are ever destroyed or undefined, and only when their
session is this one or gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Callable, Dict, Iterator, List, Optional

import libvirt

from virtq.testing import WaitTimeout, wait_until
from virtq.testing.processes import kill_all, log_tails, pid_alive

URI = "qemu:///system"
GUEST_PREFIX = "virtq-test-"
BOOT_LINE = "virtq-test guest booted"
"""What every tiny guest's boot sector writes to COM1 (then it halts)."""

VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
QEMU_LOG_DIR = Path("/var/log/libvirt/qemu")
LOCK_FILE = Path("/run/lock" if os.access("/run/lock", os.W_OK) else "/tmp") / "virtq-realhv.lock"
STATE_FILE = LOCK_FILE.with_suffix(".json")
"""Who started the running daemons, and their pids: {"owner": pid, "pids": [tini, libvirtd, virtlogd]}."""
DAEMON_COMMANDS = {"tini", "libvirtd", "virtlogd"}
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def _quiet(ctx: object, error: object) -> None:
    """libvirt prints every error to stderr by default; polling makes plenty of expected ones."""


libvirt.registerErrorHandler(_quiet, None)


class HarnessError(Exception):
    """The real hypervisor could not be set up (a loud failure)."""


class Unavailable(HarnessError):
    """It cannot run on this machine at all: packages missing, or not root and no libvirtd running."""


# --- processes ---------------------------------------------------------------------------------------


def answers(uri: str = URI) -> bool:
    """True when a libvirt daemon serves ``uri`` now."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _is_daemon(pid: int) -> bool:
    """True when ``pid`` is a live (not zombie) tini, libvirtd or virtlogd."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    state = stat[stat.rindex(")") + 2:].split()[0]
    return comm in DAEMON_COMMANDS and state != "Z"


def _stop_pids(pids: List[int], timeout: float = 10.0) -> None:
    """Stop daemons we did not spawn ourselves (adopted): SIGTERM, wait, SIGKILL.
    Pids that are no longer a tini, libvirtd or virtlogd (gone, or reused) are left alone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        live = [pid for pid in pids if _is_daemon(pid)]
        for pid in live:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        with contextlib.suppress(WaitTimeout):  # the next signal, or left as they are
            wait_until(lambda: not any(_is_daemon(pid) for pid in live), wait, interval=0.05)


def _machine_id() -> str:
    try:
        value = Path("/etc/machine-id").read_text().strip()
    except OSError:
        return ""
    return value if re.fullmatch(r"[0-9a-f]{32}", value) and len(set(value)) > 1 else ""


def find_programs() -> Dict[str, str]:
    """Absolute paths of libvirtd, virtlogd, tini and qemu-system-x86_64; Unavailable if any is missing."""
    names = ("libvirtd", "virtlogd", "tini", "qemu-system-x86_64")
    found = {name: shutil.which(name, path=SBIN_PATH) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed: run `bash scripts/install-libvirtd.sh` "
                          "(`make test` does)")
    return {name: str(path) for name, path in found.items()}


def _flock(fd: int, mode: int, timeout: float) -> bool:
    """flock with a deadline; False when it could not be had in time. (On Linux a conversion
    that has to wait drops the lock held so far, so two sessions converting never deadlock.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _read_state() -> Dict[str, object]:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


class _Daemon:
    """One daemon process we spawn, in its own session (process group)."""

    def __init__(self, name: str, argv: List[str], workdir: Path) -> None:
        self.name = name
        self.pid_file = workdir / f"{name}.pid"
        self.log = workdir / f"{name}.log"
        self.console = workdir / f"{name}.out"
        self._out: IO[bytes] = open(self.console, "ab")
        self.proc = subprocess.Popen(argv + ["-p", str(self.pid_file)], stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def exited(self) -> Optional[int]:
        return self.proc.poll()

    def tail(self, lines: int = 15) -> str:
        return log_tails((self.console, self.log), self.name, lines)

    def pids(self) -> List[int]:
        """The process we spawned and, under tini, the daemon itself (from its pid file)."""
        try:
            daemon = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return [self.proc.pid]
        return [self.proc.pid] + ([daemon] if daemon != self.proc.pid else [])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the daemon (tini forwards it too), wait, then SIGKILL tini and the daemon.
        (tini puts its child in a process group of its own: killing tini's group would miss it.)"""
        if self.proc.poll() is None:
            pids = self.pids()
            try:
                os.kill(pids[-1], signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_all(reversed(pids))
                self.proc.wait(5)
        self._out.close()


# --- the daemons -------------------------------------------------------------------------------------


class LibvirtDaemons:
    """virtlogd + libvirtd serving ``qemu:///system``, or the libvirtd already running."""

    def __init__(self, workdir: Path, uri: str = URI) -> None:
        self.workdir = workdir
        self.uri = uri
        self.reused = False
        self._daemons: List[_Daemon] = []
        self._adopted: List[int] = []  # daemon pids left by a killed session
        self._lock: Optional[int] = None

    @property
    def owner(self) -> bool:
        """True when this object stops the daemons at the end."""
        return bool(self._daemons or self._adopted)

    def __enter__(self) -> "LibvirtDaemons":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        """Ready when the URI answers and QEMU's capabilities are probed (~2-8 s the first time)."""
        try:
            self._lock = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            self._lock = os.open(LOCK_FILE, os.O_RDONLY)
        try:
            if not _flock(self._lock, fcntl.LOCK_SH, 120):
                raise HarnessError(f"another test session held {LOCK_FILE} exclusively for 120 s")
            if not answers(self.uri) or self._orphaned():
                self._exclusive(timeout)
            self.reused = not self.owner
            self._warm_up()
            destroy_guests(self.uri, stale=True)  # left over by sessions that were killed
        except BaseException:
            self.stop()
            raise

    def _orphaned(self) -> bool:
        """True when the running daemons were started by a test session that is gone (root adopts them)."""
        owner = _read_state().get("owner")
        return os.geteuid() == 0 and isinstance(owner, int) and not pid_alive(owner)

    def _exclusive(self, timeout: float) -> None:
        """Start the daemons, or adopt a killed session's, under the exclusive lock; back to shared after."""
        assert self._lock is not None
        must_start = not answers(self.uri)
        if must_start:
            find_programs()
            if os.geteuid() != 0:
                raise Unavailable("no libvirtd is running and starting the system one needs root")
        # Adopting can wait: while another live session uses the orphaned daemons, just use them too.
        if not _flock(self._lock, fcntl.LOCK_EX, 120 if must_start else 1):
            if must_start:
                raise HarnessError(f"other test sessions held {LOCK_FILE} for 120 s")
        elif answers(self.uri):  # running (maybe started by another session meanwhile): adopt it if orphaned
            if self._orphaned():
                pids = _read_state().get("pids")
                self._adopted = [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []
                self._write_state()
        else:
            self._start(find_programs(), time.monotonic() + timeout)
            self._write_state()
        fcntl.flock(self._lock, fcntl.LOCK_SH)  # (a conversion that failed dropped the lock: take it again)

    def _write_state(self) -> None:
        pids = [pid for d in self._daemons for pid in d.pids()] + self._adopted
        STATE_FILE.write_text(json.dumps({"owner": os.getpid(), "pids": pids}))

    def _warm_up(self) -> None:
        try:
            conn = libvirt.open(self.uri)
            try:
                conn.getCapabilities()  # the first QEMU capability probe happens here, not in a test
            finally:
                conn.close()
        except libvirt.libvirtError as exc:
            raise HarnessError(f"{self.uri} answers but getCapabilities fails: {exc}{self._tails()}") from exc

    def _start(self, programs: Dict[str, str], deadline: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not _socket_answers(VIRTLOGD_SOCKET):
            conf = self._config("virtlogd")
            logd = self._spawn("virtlogd", [programs["virtlogd"], "-f", str(conf)])
            self._wait(lambda: _socket_answers(VIRTLOGD_SOCKET), logd, deadline)
        conf = self._config("libvirtd")
        daemon = self._spawn("libvirtd", [programs["tini"], "-s", "--", programs["libvirtd"], "-f", str(conf)])
        self._wait(lambda: answers(self.uri), daemon, deadline)

    def _config(self, name: str) -> Path:
        conf = self.workdir / f"{name}.conf"
        text = f'log_outputs = "3:file:{self.workdir / (name + ".log")}"\n'
        if name == "libvirtd" and _machine_id():
            # Without SMBIOS (containers, most CI machines) libvirtd makes up a new host UUID at every
            # start; the machine id keeps it, and so the Node's name, stable from one run to the next.
            text += 'host_uuid_source = "machine-id"\n'
        conf.write_text(text)
        return conf

    def _spawn(self, name: str, argv: List[str]) -> _Daemon:
        try:
            daemon = _Daemon(name, argv, self.workdir)
        except OSError as exc:
            raise HarnessError(f"cannot start {name}: {exc}") from exc
        self._daemons.append(daemon)
        return daemon

    def _wait(self, ready: Callable[[], bool], daemon: _Daemon, deadline: float) -> None:
        while not ready():
            code = daemon.exited()
            if code is not None:
                raise HarnessError(f"{daemon.name} exited with status {code}\n{daemon.tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{daemon.name} not ready in time\n{daemon.tail()}")
            time.sleep(0.05)

    def restart_libvirtd(self, timeout: float = 30.0, while_down: Optional[Callable[[], None]] = None) -> None:
        """Stop libvirtd and start it again (virtlogd and running guests stay), as an admin would;
        ``while_down`` runs in between (libvirtd starts again whatever it raises).

        Only for daemons this object spawned itself, and only while no other test session uses
        them: Unavailable otherwise (a reused or adopted daemon is never restarted).
        """
        daemon = next((d for d in self._daemons if d.name == "libvirtd"), None)
        if daemon is None or self._adopted or self._lock is None:
            raise Unavailable("libvirtd was not started by this session")
        if not _flock(self._lock, fcntl.LOCK_EX, 1.0):
            fcntl.flock(self._lock, fcntl.LOCK_SH)  # (the failed conversion dropped it)
            raise Unavailable("another test session is using libvirtd")
        try:
            daemon.stop()
            self._daemons.remove(daemon)
            try:
                if while_down is not None:
                    while_down()
            finally:
                conf = self.workdir / "libvirtd.conf"
                programs = find_programs()
                fresh = self._spawn("libvirtd", [programs["tini"], "-s", "--", programs["libvirtd"], "-f", str(conf)])
                self._wait(lambda: answers(self.uri), fresh, time.monotonic() + timeout)
                self._write_state()
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_SH)

    @contextlib.contextmanager
    def libvirtd_stopped(self) -> Iterator[int]:
        """libvirtd frozen with SIGSTOP for the block (a hung daemon: every call waits, sockets stay open),
        SIGCONT always on the way out, failure included. Yields its pid.

        Only for the libvirtd this object spawned, and only while no other test session uses it (it
        holds the exclusive lock meanwhile): Unavailable otherwise.
        """
        daemon = next((d for d in self._daemons if d.name == "libvirtd"), None)
        if daemon is None or self._adopted or self._lock is None or len(daemon.pids()) < 2:
            raise Unavailable("libvirtd was not started by this session")
        if not _flock(self._lock, fcntl.LOCK_EX, 1.0):
            fcntl.flock(self._lock, fcntl.LOCK_SH)  # (the failed conversion dropped it)
            raise Unavailable("another test session is using libvirtd")
        pid = daemon.pids()[-1]
        try:
            os.kill(pid, signal.SIGSTOP)
            try:
                yield pid
            finally:
                os.kill(pid, signal.SIGCONT)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_SH)

    def _tails(self) -> str:
        return "".join("\n" + d.tail() for d in self._daemons)

    def stop(self, wait_for_others: float = 300.0) -> None:
        """Destroy this session's guests; stop the daemons this object owns (libvirtd first) once
        no other session uses them. Never raises for a daemon that is already gone."""
        owner = self.owner
        try:
            if owner and self._lock is not None:
                _flock(self._lock, fcntl.LOCK_EX, wait_for_others)  # after the wait, stop anyway
            if answers(self.uri):
                # The owner is alone now: every test guest goes (before libvirtd, so no QEMU is left).
                destroy_guests(self.uri, owner=None if owner else os.getpid())
        except libvirt.libvirtError:
            pass
        finally:
            for daemon in reversed(self._daemons):
                daemon.stop()
            _stop_pids(self._adopted)
            self._daemons.clear()
            self._adopted.clear()
            if owner:
                STATE_FILE.unlink(missing_ok=True)
            if self._lock is not None:
                os.close(self._lock)  # releases the flock
                self._lock = None


# --- guests -----------------------------------------------------------------------------------------


def guest_name(tag: str) -> str:
    """A test guest's name: the prefix, this process's pid (so stale guests are recognizable), a tag."""
    return f"{GUEST_PREFIX}{os.getpid()}-{tag}"


def _guest_owner(name: str) -> Optional[int]:
    match = re.match(re.escape(GUEST_PREFIX) + r"(\d+)-", name)
    return int(match.group(1)) if match else None


def destroy_guests(uri: str = URI, names: Optional[List[str]] = None, owner: Optional[int] = None,
                   stale: bool = False) -> List[str]:
    """Destroy and undefine test guests: the ``names`` given, else those of session ``owner`` (a pid),
    else those whose session is gone (``stale``), else every ``virtq-test-*`` guest. Returns the names."""
    done = []
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains(0):
            name = dom.name()
            if names is not None:
                if name not in names:
                    continue
            elif not name.startswith(GUEST_PREFIX):
                continue
            elif owner is not None and _guest_owner(name) != owner:
                continue
            elif stale and (_guest_owner(name) or 0) > 0 and pid_alive(_guest_owner(name) or 0):
                continue  # its session is still running
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                    raise
            done.append(name)
    finally:
        conn.close()
    for name in set(done) | set(names or ()):
        for log in QEMU_LOG_DIR.glob(f"{name}.log*"):  # libvirt keeps each guest's QEMU log
            try:
                log.unlink()
            except OSError:
                pass
    return done


def boot_sector(line: str = BOOT_LINE) -> bytes:
    """512 bytes of x86 real-mode code: write ``line`` + CRLF to COM1 (0x3F8), then ``cli; hlt`` forever."""
    code = bytes([
        0xFA,              # 00 cli
        0x31, 0xC0,        # 01 xor ax, ax
        0x8E, 0xD8,        # 03 mov ds, ax
        0xFC,              # 05 cld
        0xBE, 0x18, 0x7C,  # 06 mov si, 0x7C18 (the message, at offset 24)
        0xBA, 0xF8, 0x03,  # 09 mov dx, 0x3F8
        0xAC,              # 12 next: lodsb
        0x84, 0xC0,        # 13 test al, al
        0x74, 0x03,        # 15 jz halt (20)
        0xEE,              # 17 out dx, al
        0xEB, 0xF8,        # 18 jmp next (12)
        0xFA,              # 20 halt: cli
        0xF4,              # 21 hlt
        0xEB, 0xFD,        # 22 jmp 21
    ])
    assert len(code) == 24
    sector = code + line.encode("ascii") + b"\r\n\0"
    if len(sector) > 510:
        raise ValueError("boot line too long")
    return sector.ljust(510, b"\0") + b"\x55\xAA"


def write_disk(path: Path, size: int = 1024 * 1024) -> Path:
    """A raw disk image that boots the sector above."""
    with open(path, "wb") as disk:
        disk.write(boot_sector())
        disk.truncate(size)
    return path


def guest_xml(name: str, disk: Path, serial: Path) -> str:
    """A tiny TCG guest: 64 MiB, 1 vCPU, no balloon, no graphics, boots ``disk``, COM1 to ``serial``."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{serial}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def sha256_file(path: Path) -> str:
    """A (large) file's sha256, read 4 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
