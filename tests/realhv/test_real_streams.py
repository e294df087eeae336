"""Streams on a real libvirtd with the QEMU driver: a 256 MiB volume uploaded and downloaded with the agent's RSS
watched, a screenshot of a guest with a VGA device, a round trip through a guest's serial console, a guest's
virtio-serial channels (virDomainOpenChannel).

The agent runs as its own process (``virtq-agent``), so its resident memory is its own: it is sampled every
20 ms while the volume moves both ways, and the peak must stay far below the volume's size (the agent holds at
most a window of chunks per stream). The numbers are printed (``-s``) and written to ``streams.json`` in the
test's directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Tuple

import libvirt
import pytest

from virtq.console import Console, ConsoleStream
from virtq.schema import errors
from virtq.testing import free_port, wait_until

from ..helpers import agent_process
from .harness import GUEST_PREFIX, destroy_guests, guest_name, sha256_file

pytestmark = pytest.mark.realhv

MiB = 1024 * 1024
VOLUME_MIB = 256
RSS_BOUND = 96 * MiB
"""The agent's RSS may grow by this much at most while 256 MiB go through it (measured: 57 MiB; a window is 8 MiB, a
libvirt segment 8 MiB, and each chunk is copied a few times on its way)."""
POLICY = "[principal anonymous]\nroles = admin\n"
"""Loopback only, for the test: anonymous consoles may do everything."""


def echo_sector(line: bytes = b"virtq echo ready\r\n") -> bytes:
    """512 bytes of x86 real-mode code: print ``line`` on COM1, then echo every byte COM1 receives (polling)."""
    code = bytes([
        0xFA,              # 00 cli
        0x31, 0xC0,        # 01 xor ax, ax
        0x8E, 0xD8,        # 03 mov ds, ax
        0xFC,              # 05 cld
        0xBE, 0x23, 0x7C,  # 06 mov si, 0x7C23 (the line, at offset 35)
        0xBA, 0xF8, 0x03,  # 09 mov dx, 0x3F8
        0xAC,              # 12 print: lodsb
        0x84, 0xC0,        # 13 test al, al
        0x74, 0x03,        # 15 jz echo (20)
        0xEE,              # 17 out dx, al
        0xEB, 0xF8,        # 18 jmp print (12)
        0xBA, 0xFD, 0x03,  # 20 echo: mov dx, 0x3FD (line status)
        0xEC,              # 23 wait: in al, dx
        0xA8, 0x01,        # 24 test al, 1 (data ready)
        0x74, 0xFB,        # 26 jz wait (23)
        0xBA, 0xF8, 0x03,  # 28 mov dx, 0x3F8
        0xEC,              # 31 in al, dx
        0xEE,              # 32 out dx, al
        0xEB, 0xF1,        # 33 jmp echo (20)
    ])
    assert len(code) == 35
    return (code + line + b"\0").ljust(510, b"\0") + b"\x55\xAA"


def echo_guest(name: str, disk: Path) -> str:
    """A tiny TCG guest with a VGA device whose serial console (a pty) echoes what it is sent."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='hda' bus='ide'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@pytest.fixture
def files() -> Iterator[Path]:
    """A world-traversable directory (a reused libvirtd may run QEMU as another user)."""
    folder = Path(tempfile.mkdtemp(prefix=GUEST_PREFIX))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def agent(real_libvirt: str, tmp_path: Path) -> Iterator[Tuple[str, int]]:
    """A virtq-agent process on the real libvirtd: (its URL, its pid)."""
    policy = tmp_path / "policy.ini"
    policy.write_text(POLICY)
    port = free_port()
    args = ["--libvirt", real_libvirt, "--listen", f"amqp://127.0.0.1:{port}", "--policy", str(policy),
            "--instance", f"streams-{uuid.uuid4().hex[:8]}", "--heartbeat", "2", "--log-level", "warning"]
    with agent_process(args, port, tmp_path) as (proc, _):
        yield f"amqp://127.0.0.1:{port}", proc.pid


@pytest.fixture
def truth(real_libvirt: str) -> Iterator[libvirt.virConnect]:
    conn = libvirt.open(real_libvirt)
    yield conn
    conn.close()


@pytest.fixture
def echo_domain(truth: libvirt.virConnect, real_libvirt: str, files: Path) -> Iterator[str]:
    """A running echo guest (its name); destroyed afterwards."""
    name = guest_name(uuid.uuid4().hex[:8])
    disk = files / "echo.img"
    disk.write_bytes(echo_sector())
    with open(disk, "r+b") as f:
        f.truncate(MiB)
    disk.chmod(0o666)
    truth.createXML(echo_guest(name, disk), 0)
    try:
        yield name
    finally:
        destroy_guests(real_libvirt, names=[name])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssWatch:
    """Samples a process's RSS every ``every`` seconds until stopped; ``peak`` is the largest seen."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every = pid, every
        self.samples: List[int] = [rss(pid)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(rss(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return max(self.samples)


def write_source(path: Path, mib: int) -> None:
    """``mib`` MiB that differ in every MiB (a random block, numbered)."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(i.to_bytes(8, "big") + block[8:])


def test_upload_then_download_256_mib_with_the_agent_s_rss_bounded(agent: Tuple[str, int], truth: libvirt.virConnect,
                                                                   files: Path, tmp_path: Path) -> None:
    url, pid = agent
    pool_name = guest_name(f"pool-{uuid.uuid4().hex[:6]}")
    pool_dir = files / "pool"
    pool_dir.mkdir(mode=0o755)
    # The volume is there before its pool starts: libvirt has no volume events, so a volume made after the pool's
    # start is seen only at the agent's next reconcile, which may come after the console loaded.
    with open(pool_dir / "big.img", "wb") as volume:
        volume.truncate(VOLUME_MIB * MiB)
    pool = truth.storagePoolCreateXML(f"<pool type='dir'><name>{pool_name}</name><target><path>{pool_dir}</path>"
                                      "</target></pool>", 0)
    try:
        source, back = tmp_path / "source.img", tmp_path / "back.img"
        write_source(source, VOLUME_MIB)
        expected = sha256_file(source)
        with Console(url, timeout=30) as console:
            assert wait_until(lambda: any(v.name == "big.img" for v in console.volumes), 20)
            vol = console.volumes.get(f"{pool_dir}/big.img")
            baseline = rss(pid)
            watch = RssWatch(pid)
            started = time.monotonic()
            with open(source, "rb") as f:
                assert vol.upload(f) == VOLUME_MIB * MiB
            uploaded = time.monotonic()
            upload_peak = max(watch.samples)
            with open(back, "wb") as f:
                assert vol.download(f) == VOLUME_MIB * MiB
            downloaded = time.monotonic()
            peak = watch.stop()
        assert sha256_file(pool_dir / "big.img") == expected  # what libvirt wrote
        assert sha256_file(back) == expected  # what came back
        report = {"volume_mib": VOLUME_MIB, "agent_rss_baseline_mib": round(baseline / MiB, 1),
                  "agent_rss_peak_mib": round(peak / MiB, 1), "agent_rss_upload_peak_mib": round(upload_peak / MiB, 1), "agent_rss_growth_mib": round((peak - baseline) / MiB, 1),
                  "upload_mib_s": round(VOLUME_MIB / (uploaded - started), 1),
                  "download_mib_s": round(VOLUME_MIB / (downloaded - uploaded), 1), "samples": len(watch.samples)}
        (tmp_path / "streams.json").write_text(json.dumps(report, indent=2))
        print("\nstreams:", json.dumps(report))
        assert peak - baseline < RSS_BOUND, report
    finally:
        try:
            pool.destroy()
        except libvirt.libvirtError:
            pass


def test_a_screenshot_of_a_guest_with_vga(agent: Tuple[str, int], echo_domain: str) -> None:
    url, _ = agent
    with Console(url, timeout=30) as console:
        assert wait_until(lambda: any(d.name == echo_domain for d in console.domains), 20)
        mime, image = console.domains.get(echo_domain).screenshot()
    assert mime in ("image/x-portable-pixmap", "image/png"), mime
    if mime == "image/png":  # the size of the whole VGA screen, from the PNG's header
        assert image.startswith(b"\x89PNG\r\n\x1a\n") and image[12:16] == b"IHDR"
        size = (int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big"))
    else:
        magic, width, height = image.split(maxsplit=3)[:3]
        assert magic == b"P6"
        size = (int(width), int(height))
    assert size[0] >= 640 and size[1] >= 400, size
    print(f"\nscreenshot: {mime}, {size[0]}x{size[1]}, {len(image)} bytes")


def test_a_serial_console_round_trip(agent: Tuple[str, int], echo_domain: str) -> None:
    url, _ = agent
    with Console(url, timeout=30) as console:
        assert wait_until(lambda: any(d.name == echo_domain for d in console.domains), 20)
        serial: ConsoleStream
        with console.domains.get(echo_domain).openConsole() as serial:
            line = f"virtq round trip {uuid.uuid4().hex[:8]}\r".encode()
            got = b""
            deadline = time.monotonic() + 30
            while line not in got and time.monotonic() < deadline:
                serial.write(line)  # the guest may still be booting: say it again until it echoes
                got += serial.read(timeout=1.0)
            assert line in got, got
        print(f"\nconsole: {got!r}")


# --- a virtio-serial channel (virDomainOpenChannel): QEMU accepts only a UNIX socket source ----------------------

BOUND, CONNECTED = "org.virtq.test.bound", "org.virtq.test.connected"
"""The echo guest's two channels: QEMU listens on the first (its path made by libvirt); the second is QEMU's
connection to a socket the test listens on, which libvirt's openChannel connects to as well."""


def channel_guest(name: str, disk: Path, connect_to: Path) -> str:
    """The echo guest with a virtio-serial controller and two channels whose sources are UNIX sockets."""
    channels = f"""<controller type='virtio-serial' index='0'/>
    <channel type='unix'><source mode='bind'/><target type='virtio' name='{BOUND}'/></channel>
    <channel type='unix'><source mode='connect' path='{connect_to}'/><target type='virtio' name='{CONNECTED}'/>
    </channel>
    <memballoon"""
    return echo_guest(name, disk).replace("<memballoon", channels, 1)


class EchoSocket:
    """A UNIX socket that echoes, on each connection it accepts, whatever that connection sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        path.chmod(0o777)  # QEMU may run as another user (libvirt also relabels it)
        self.listener.listen(4)
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@pytest.fixture
def channel_domain(truth: libvirt.virConnect, real_libvirt: str, files: Path) -> Iterator[Tuple[str, EchoSocket]]:
    """A running guest with the two channels (its name), and the socket its second channel connects to."""
    name = guest_name(uuid.uuid4().hex[:8])
    disk = files / "channel.img"
    disk.write_bytes(echo_sector())
    disk.chmod(0o666)
    echo = EchoSocket(files / "echo.sock")
    try:
        truth.createXML(channel_guest(name, disk, echo.path), 0)
        try:
            yield name, echo
        finally:
            destroy_guests(real_libvirt, names=[name])
    finally:
        echo.close()


def channel_busy(truth: libvirt.virConnect, name: str, channel: str) -> bool:
    """Whether libvirt refuses another (unforced) stream on the channel: someone holds it."""
    stream = truth.newStream(libvirt.VIR_STREAM_NONBLOCK)
    try:
        truth.lookupByName(name).openChannel(channel, stream, 0)
    except libvirt.libvirtError as exc:
        assert exc.get_error_code() == libvirt.VIR_ERR_OPERATION_FAILED, exc
        return True
    stream.abort()
    return False


def test_a_channel_is_held_while_open_takes_writes_and_is_released_on_close(
        agent: Tuple[str, int], truth: libvirt.virConnect, channel_domain: Tuple[str, EchoSocket]) -> None:
    """No guest driver reads the port, so what is written stays in QEMU's socket: the write is accepted, the
    stream stays up, libvirt counts the channel as taken while the console holds it and free once it closed."""
    url, _ = agent
    name, _ = channel_domain
    assert not channel_busy(truth, name, BOUND)
    with Console(url, timeout=30) as console:
        assert wait_until(lambda: any(d.name == name for d in console.domains), 20)
        channel: ConsoleStream
        with console.domains.get(name).openChannel(BOUND) as channel:
            assert channel.write(b"virtq channel bytes\n" * 64) == 20 * 64
            assert channel.read(timeout=1.0) == b"" and not channel.closed  # no error came back
            assert channel_busy(truth, name, BOUND)
        assert channel.closed
        assert wait_until(lambda: not channel_busy(truth, name, BOUND), 10, message="the channel released")


def test_a_channel_round_trip_through_its_unix_socket(
        agent: Tuple[str, int], channel_domain: Tuple[str, EchoSocket]) -> None:
    """The second channel's socket echoes: bytes written go through the agent and libvirt's stream to the socket
    and come back the same way."""
    url, _ = agent
    name, echo = channel_domain
    with Console(url, timeout=30) as console:
        assert wait_until(lambda: any(d.name == name for d in console.domains), 20)
        with console.domains.get(name).openChannel(CONNECTED) as channel:
            line = f"virtq channel {uuid.uuid4().hex}\n".encode() * 100
            assert channel.write(line) == len(line)
            got = b""
            deadline = time.monotonic() + 20
            while len(got) < len(line) and time.monotonic() < deadline:
                got += channel.read(timeout=1.0)
            assert got == line
    assert echo.accepted == 2  # QEMU's connection and libvirt's
    print(f"\nchannel: {len(got)} bytes echoed")


def test_an_unknown_channel_is_libvirt_s_error(agent: Tuple[str, int],
                                               channel_domain: Tuple[str, EchoSocket]) -> None:
    url, _ = agent
    name, _ = channel_domain
    with Console(url, timeout=30) as console:
        assert wait_until(lambda: any(d.name == name for d in console.domains), 20)
        with pytest.raises(errors.LibvirtError) as raised:
            console.domains.get(name).openChannel("org.virtq.nowhere")
    assert raised.value.libvirt_code == libvirt.VIR_ERR_INTERNAL_ERROR
    assert "cannot find channel org.virtq.nowhere" in str(raised.value)
