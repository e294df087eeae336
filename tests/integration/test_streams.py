"""Streams over real proton on loopback (docs/PROTOCOL.md §14): screenshots and peeks on libvirt's test driver;
volume downloads and uploads and a serial console on tests/streaming.py's FileStreams (the test driver has no
virStorageVolDownload/Upload and no virDomainOpenConsole: VIR_ERR_NO_SUPPORT, checked below); the CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import libvirt
import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console
from virtq.console.aio import AsyncConsole
from virtq.console.typed import Volume
from virtq.schema import errors
from virtq.schema.streams import CHUNK_BYTES, PEEK_MAX_BYTES, Descriptor
from virtq.testing import agent_url, wait_until

from ..helpers import DEFAULT_URI, failed, ok, process_env, virtq
from ..streaming import EchoStream, FileStream, FileStreams

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SIZE = 20 * MiB + 12345  # more than a window of chunks, and not a multiple of the chunk size


@pytest.fixture
def files(tmp_path: Path) -> FileStreams:
    return FileStreams(LibvirtHypervisor(DEFAULT_URI), tmp_path, size=SIZE)


@pytest.fixture
def served(start_agent: Callable[..., Agent], connect: Callable[..., Console],
           files: FileStreams) -> Tuple[Agent, Console, Volume]:
    agent = start_agent(files)
    console = connect(agent)
    name = f"streamed-{os.getpid()}-{time.monotonic_ns()}.img"
    console.pools.get("default-pool").storageVolCreateXML(
        f"<volume><name>{name}</name><capacity>{SIZE}</capacity></volume>", 0)
    return agent, console, console.volumes.get(name)


def test_a_screenshot_from_the_test_driver(start_agent: Callable[..., Agent], connect: Callable[..., Console]) -> None:
    console = connect(start_agent(DEFAULT_URI))
    mime, image = console.domains.get("test").screenshot()
    conn = libvirt.open(DEFAULT_URI)
    stream = conn.newStream(0)
    assert conn.lookupByName("test").screenshot(stream, 0, 0) == mime == "image/png"
    direct = b""
    while chunk := stream.recv(MiB):
        direct += chunk
    stream.finish()
    assert image == direct and image.startswith(b"\x89PNG")


def test_peeks_are_binary_returns(start_agent: Callable[..., Agent], connect: Callable[..., Console]) -> None:
    dom = connect(start_agent(DEFAULT_URI)).domains.get("test")
    assert dom.memoryPeek(0, 16, libvirt.VIR_MEMORY_VIRTUAL) == bytes(range(16))
    assert len(dom.memoryPeek(0, PEEK_MAX_BYTES, libvirt.VIR_MEMORY_VIRTUAL)) == PEEK_MAX_BYTES
    with pytest.raises(errors.InvalidParameterError, match="exceeds 4194304 bytes"):
        dom.memoryPeek(0, PEEK_MAX_BYTES + 1, libvirt.VIR_MEMORY_VIRTUAL)
    with pytest.raises(errors.LibvirtError) as raised:  # the test driver has no block peek
        dom.blockPeek("/guest/diskimage1", 0, 16)
    assert raised.value.libvirt_code == libvirt.VIR_ERR_NO_SUPPORT


def test_the_test_driver_has_no_volume_or_console_streams(start_agent: Callable[..., Agent],
                                                          connect: Callable[..., Console]) -> None:
    console = connect(start_agent(DEFAULT_URI))
    with pytest.raises(errors.LibvirtError, match="not supported"):
        console.domains.get("test").openConsole()
    assert console.streams.open_streams() == []


def test_download_with_progress_and_checksum(served: Tuple[Agent, Console, Volume], files: FileStreams) -> None:
    agent, console, vol = served
    sink = io.BytesIO()
    seen: List[int] = []
    assert vol.download(sink, progress=seen.append) == SIZE
    assert hashlib.sha256(sink.getvalue()).digest() == hashlib.sha256(files.path(vol.key).read_bytes()).digest()
    assert seen == sorted(seen) and seen[-1] == SIZE and len(seen) == -(-SIZE // CHUNK_BYTES)
    part = io.BytesIO()
    assert vol.download(part, 1000, 3000) == 3000
    assert part.getvalue() == files.path(vol.key).read_bytes()[1000:4000]
    assert agent.streams.open_streams() == [] and console.streams.open_streams() == []


def test_upload_then_download(served: Tuple[Agent, Console, Volume], files: FileStreams) -> None:
    _, _, vol = served
    content = os.urandom(3 * MiB + 7)
    assert vol.upload(io.BytesIO(content)) == len(content)
    assert files.path(vol.key).read_bytes()[:len(content)] == content
    back = io.BytesIO()
    vol.download(back, 0, len(content))
    assert back.getvalue() == content


def test_a_sparse_download_keeps_holes(served: Tuple[Agent, Console, Volume], files: FileStreams,
                                       tmp_path: Path) -> None:
    _, _, vol = served
    files.path(vol.key).write_bytes(b"head" + bytes(2 * MiB) + b"tail")
    target = tmp_path / "sparse.img"
    with open(target, "wb") as sink:
        vol.download(sink, 0, 0, 1)  # VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM
    assert target.read_bytes() == files.path(vol.key).read_bytes()
    assert isinstance(files.opened["virStorageVolDownload"], FileStream)


def test_cancel_from_the_console_aborts_the_agent_s_stream(served: Tuple[Agent, Console, Volume],
                                                           files: FileStreams) -> None:
    agent, console, vol = served

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vol.download(io.BytesIO(), progress=interrupt)
    stream = files.opened["virStorageVolDownload"]
    assert isinstance(stream, FileStream)
    assert wait_until(lambda: stream.aborted and agent.streams.open_streams() == [], 5)
    assert console.streams.open_streams() == []


def test_a_console_that_stops_reading_is_aborted_by_the_agent(served: Tuple[Agent, Console, Volume],
                                                              files: FileStreams) -> None:
    agent, console, vol = served
    agent.streams.idle = 0.5
    opened = Descriptor.from_wire(console.call(vol, "download"))  # the method alone: nobody reads the stream
    assert opened.direction == "download" and opened.idle == 0.5
    assert opened.checksum == "crc32"  # asked for by the console's request (qmf.stream_checksums)
    stream = files.opened["virStorageVolDownload"]
    assert isinstance(stream, FileStream)
    assert wait_until(lambda: stream.aborted, 5)
    assert agent.streams.stalled == 1 and agent.streams.open_streams() == []


def test_the_agent_s_limit_on_streams(served: Tuple[Agent, Console, Volume]) -> None:
    agent, console, vol = served
    agent.streams.max_streams = 1
    console.call(vol, "download")
    with pytest.raises(errors.ObjectBusyError, match="1 streams open"):
        vol.download(io.BytesIO())


def test_a_serial_console_round_trip(served: Tuple[Agent, Console, Volume], files: FileStreams) -> None:
    _, console, _ = served
    with console.domains.get("test").openConsole() as serial:
        serial.write(b"echo hello\n")
        got = b""
        deadline = time.monotonic() + 5
        while b"hello\n" not in got and time.monotonic() < deadline:
            got += serial.read(timeout=0.5)
        assert got == b"echo hello\n"
    echo = files.opened["virDomainOpenConsole"]
    assert isinstance(echo, EchoStream)
    assert wait_until(echo.aborted.is_set, 5)  # closing the console aborts libvirt's stream, as virsh does


def test_cli_screenshot_and_volume_transfers(served: Tuple[Agent, Console, Volume], files: FileStreams,
                                             tmp_path: Path) -> None:
    agent, _, vol = served
    shot = tmp_path / "shot.png"
    assert ok(virtq("screenshot", "test", str(shot), urls=[agent])).startswith("image/png: ")
    assert shot.read_bytes().startswith(b"\x89PNG")
    down = tmp_path / "down.img"
    assert f"download: {SIZE} bytes in" in ok(virtq("volume", "download", vol.name, str(down), urls=[agent]))
    assert down.read_bytes() == files.path(vol.key).read_bytes()
    up = tmp_path / "up.img"
    up.write_bytes(b"virtq" * 1000)
    assert '"bytes": 5000' in ok(virtq("--json", "volume", "upload", vol.name, str(up), urls=[agent]))
    assert files.path(vol.key).read_bytes()[:5000] == b"virtq" * 1000
    assert "nosuch" in failed(virtq("screenshot", "nosuch", str(shot), urls=[agent]), 4)
    assert "virtq volume download|upload" in failed(virtq("call", "volume", vol.name, "download", urls=[agent]), 2)


def test_cli_console_with_stdin_from_a_pipe(served: Tuple[Agent, Console, Volume]) -> None:
    agent, _, _ = served
    done = subprocess.run([sys.executable, "-m", "virtq.console.cli", "-u", agent_url(agent), "console", "test",
                           "--wait", "2"], input=b"root\n", capture_output=True, timeout=60, env=process_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"root\n"


def test_streams_from_asyncio(served: Tuple[Agent, Console, Volume], files: FileStreams) -> None:
    agent, _, vol = served

    async def main() -> Tuple[str, bytes, int]:
        async with AsyncConsole(agent_url(agent), timeout=5) as console:
            mime, image = await console.domains.get("test").screenshot()  # moved by a thread, awaited
            sink = io.BytesIO()
            moved = await console.volumes.get(vol.name).download(sink)
            return mime, image, moved

    mime, image, moved = asyncio.run(main())
    assert mime == "image/png" and image.startswith(b"\x89PNG") and moved == SIZE


def test_cancelling_an_asyncio_download_aborts_the_agent_s_stream(served: Tuple[Agent, Console, Volume],
                                                                  files: FileStreams) -> None:
    agent, _, vol = served

    class SlowFile(io.BytesIO):
        def write(self, data: Any) -> int:
            time.sleep(0.05)
            return super().write(data)

    async def main() -> SlowFile:
        async with AsyncConsole(agent_url(agent), timeout=5) as console:
            sink = SlowFile()
            task = asyncio.ensure_future(console.volumes.get(vol.name).download(sink))
            while sink.tell() == 0:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stream = files.opened["virStorageVolDownload"]
            assert isinstance(stream, FileStream)
            assert await asyncio.to_thread(wait_until, lambda: stream.aborted and agent.streams.open_streams() == [],
                                           5)  # told by the console (still open), not the idle timeout
            return sink

    assert 0 < len(asyncio.run(main()).getvalue()) < SIZE


def test_a_sparse_upload_sends_holes(served: Tuple[Agent, Console, Volume], files: FileStreams) -> None:
    _, _, vol = served
    content = b"head" + bytes(3 * CHUNK_BYTES) + b"tail"
    files.path(vol.key).write_bytes(bytes(SIZE))  # a hole is skipped (seeked over), as into a new file
    assert vol.upload(io.BytesIO(content), 0, 0, 1) == len(content)  # VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM
    assert files.path(vol.key).read_bytes()[:len(content)] == content
    stream = files.opened["virStorageVolUpload"]
    assert isinstance(stream, FileStream) and stream.holes == 2  # the two chunks of zeros only


def test_cli_console_on_a_terminal_leaves_on_ctrl_bracket(served: Tuple[Agent, Console, Volume]) -> None:
    agent, _, _ = served
    pid, fd = pty.fork()
    if pid == 0:  # the child: virtq console on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "virtq.console.cli", "-u", agent_url(agent), "console",
                                   "test"], process_env())
    output = b""

    def read_until(marker: bytes, timeout: float = 20) -> bool:
        nonlocal output
        deadline = time.monotonic() + timeout
        while marker not in output and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    output += os.read(fd, 4096)
                except OSError:
                    return False
        return marker in output

    try:
        assert read_until(b"Escape character is ^]"), output
        os.write(fd, b"hello\r")
        assert read_until(b"hello\r"), output  # raw mode: no local echo, what comes back is the guest's
        os.write(fd, b"\x1d")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, output
    finally:
        os.close(fd)
