"""Consoles and channels from asyncio (console/_aio_streams.py): a real agent and real proton on loopback, each test in
asyncio.run. libvirt's test driver has no virDomainOpenConsole/OpenChannel (tests/integration/test_streams.py checks
it), so the agent's hypervisor is the test driver with a scripted guest behind those two (the way
tests/streaming.py's FileStreams serves them): it echoes what it is sent, and the test makes it speak, hang up or
fail."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import pytest

from virtq.agent import Agent
from virtq.agent.hypervisor import ForwardingHypervisor, HypervisorError, HypervisorStream
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import LibvirtError, NotConnectedError
from virtq.console._streams import ClientStream, ConsoleStream
from virtq.console.aio import AsyncConsole, AsyncConsoleStream
from virtq.schema.errors import StreamAbortedError
from virtq.testing import agent_url, wait_until

from ..helpers import DEFAULT_URI
from ..streaming import EchoStream
from .test_aio import Main, run

pytestmark = pytest.mark.integration

HANG_UP = b"hang up\n"  # the guest closes its side: the agent sends the end
BREAK = b"break\n"  # libvirt's stream fails


class Guest(EchoStream):
    """tests/streaming.py's echoing console, whose guest also says what the test tells it to (``say``), hangs up
    when sent HANG_UP and breaks on BREAK."""

    def __init__(self) -> None:
        super().__init__()
        self.received: List[bytes] = []

    def say(self, data: bytes) -> None:
        self.output.put(data)

    def send(self, data: bytes) -> None:
        self.received.append(data)
        super().send(data)

    def recv(self, nbytes: int) -> Union[bytes, int]:
        said = super().recv(nbytes)
        if said == BREAK:
            raise HypervisorError(38, "console device broke")
        return b"" if said == HANG_UP else said


class Guests(ForwardingHypervisor):
    """libvirt's test driver, with a :class:`Guest` behind every console and channel opened (``opened``). While
    ``gate`` is set, opening waits for it to be released (``entered`` says a call is in)."""

    def __init__(self) -> None:
        super().__init__(LibvirtHypervisor(DEFAULT_URI))
        self.opened: List[Tuple[str, Guest]] = []
        self.gate: Optional[threading.Event] = None
        self.entered = threading.Event()

    def open_stream(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
                    sparse: bool = False) -> Tuple[Any, HypervisorStream]:
        if function not in ("virDomainOpenConsole", "virDomainOpenChannel"):
            return self.inner.open_stream(class_name, key, function, args, sparse)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        guest = Guest()
        self.opened.append((function, guest))
        return None, guest

    @property
    def guest(self) -> Guest:
        return self.opened[-1][1]


@pytest.fixture
def guests() -> Guests:
    return Guests()


@pytest.fixture
def served(start_agent: Callable[..., Agent], guests: Guests) -> Callable[[Main], None]:
    agent = start_agent(guests)
    return lambda main: run(agent, main)


def waiting_threads() -> List[str]:
    """Threads whose stack is in a blocking console read (ConsoleStream.read or ClientStream.next)."""
    blocking = {ConsoleStream.read.__code__, ClientStream.next.__code__}
    names = {t.ident: t.name for t in threading.enumerate()}
    found = []
    for ident, frame in sys._current_frames().items():
        walked: Any = frame
        while walked is not None:
            if walked.f_code in blocking:
                found.append(names.get(ident, str(ident)))
                break
            walked = walked.f_back
    return found


async def pending(task: "asyncio.Task[Any]") -> None:
    """Let ``task`` run until it waits."""
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert not task.done()


def test_a_round_trip_then_the_guest_s_output_to_its_end(served: Callable[[Main], None], guests: Guests) -> None:
    async def main(console: AsyncConsole) -> None:
        serial = await console.domains.get("test").openConsole()
        assert isinstance(serial, AsyncConsoleStream) and not serial.closed
        assert await serial.write(b"root\n") == 5
        assert await serial.read(timeout=5) == b"root\n"  # the echo
        assert await serial.read(timeout=0.1) == b"" and not serial.closed  # nothing within the timeout
        for line in (b"login: ", b"Password: "):
            guests.guest.say(line)
        await serial.write(HANG_UP)
        assert [chunk async for chunk in serial] == [b"login: ", b"Password: "]  # in order, to the end
        assert serial.closed and await serial.read() == b""
        assert guests.guest.received == [b"root\n", HANG_UP]
    served(main)


def test_a_write_larger_than_the_window_waits_for_credit_on_the_loop(start_agent: Callable[..., Agent],
                                                                       guests: Guests) -> None:
    agent = start_agent(guests)
    agent.streams.chunk = 4096  # a window of 8 chunks is 32 KiB: the write below waits for credit many times
    data = bytes(range(256)) * 800 + b"tail"

    async def main(console: AsyncConsole) -> None:
        async with await console.domains.get("test").openConsole() as serial:
            echoed = bytearray()

            async def read_back() -> None:
                while len(echoed) < len(data):
                    echoed.extend(await serial.read(timeout=5) or b"?")

            reader = asyncio.ensure_future(read_back())
            assert await serial.write(data) == len(data)
            await reader
            assert bytes(echoed) == data
            assert b"".join(guests.guest.received) == data and max(map(len, guests.guest.received)) == 4096
    run(agent, main)


def test_a_waiting_read_leaves_the_loop_free_and_parks_no_thread(served: Callable[[Main], None],
                                                                 guests: Guests) -> None:
    async def main(console: AsyncConsole) -> None:
        async with await console.domains.get("test").openConsole() as serial:
            blocking = asyncio.ensure_future(asyncio.to_thread(serial.sync.read, 0.5))  # what asyncio must not do
            await asyncio.sleep(0.2)
            assert len(waiting_threads()) == 1 and await blocking == b""
            reading = asyncio.ensure_future(serial.read())
            ticks = 0
            loop = asyncio.get_running_loop()
            until = loop.time() + 0.3
            while loop.time() < until:  # another coroutine runs while the read waits
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks >= 10 and not reading.done()
            assert waiting_threads() == []
            guests.guest.say(b"late")
            assert await asyncio.wait_for(reading, 5) == b"late"
    served(main)


def test_a_cancelled_read_loses_nothing(served: Callable[[Main], None], guests: Guests) -> None:
    async def main(console: AsyncConsole) -> None:
        async with await console.domains.get("test").openConsole() as serial:
            reading = asyncio.ensure_future(serial.read())
            await pending(reading)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            assert waiting_threads() == []
            guests.guest.say(b"meanwhile")
            queued = serial.sync.stream.incoming
            assert await asyncio.to_thread(wait_until, lambda: queued.qsize() == 1, 5)  # came, nobody reading
            assert await serial.read(timeout=0) == b"meanwhile"
            for n in range(20):  # a read cancelled as its data comes: the data goes to it or to the next read
                reading = asyncio.ensure_future(serial.read())
                await asyncio.sleep(0)
                guests.guest.say(b"race %d" % n)
                while queued.qsize() == 0 and not reading.done():
                    await asyncio.sleep(0.001)
                reading.cancel()
                try:
                    got = await reading
                except asyncio.CancelledError:
                    got = await serial.read(timeout=5)
                assert got == b"race %d" % n
    served(main)


def test_errors_are_the_blocking_stream_s(served: Callable[[Main], None], guests: Guests) -> None:
    async def main(console: AsyncConsole) -> None:
        serial = await console.domains.get("test").openConsole()
        await serial.write(BREAK)
        with pytest.raises(LibvirtError) as raised:
            await serial.read(timeout=5)
        assert serial.closed and await serial.read() == b""
        with pytest.raises(LibvirtError, match="console device broke"):
            await serial.write(b"too late")  # as the blocking write: how the stream ended
        sync = await asyncio.to_thread(console.sync.domains.get("test").openConsole)
        sync.write(BREAK)
        with pytest.raises(LibvirtError) as sync_raised:
            await asyncio.to_thread(sync.read, 5)
        assert type(raised.value) is type(sync_raised.value)
        assert (raised.value.error_code, raised.value.error_text) == (sync_raised.value.error_code,
                                                                      sync_raised.value.error_text)
        assert "console device broke" in raised.value.error_text
    served(main)


def test_closing_ends_a_waiting_read_and_aborts_libvirt_s_stream(served: Callable[[Main], None],
                                                                  guests: Guests) -> None:
    async def main(console: AsyncConsole) -> None:
        serial = await console.domains.get("test").openConsole()
        reading = asyncio.ensure_future(serial.read())
        await pending(reading)
        await serial.aclose()
        assert await asyncio.wait_for(reading, 5) == b"" and serial.closed
        with pytest.raises(StreamAbortedError, match="closed"):
            await serial.write(b"after")
        assert await asyncio.to_thread(guests.guest.aborted.wait, 5)  # as virsh console does on Ctrl-]
        assert console.sync.streams.open_streams() == []
    served(main)


def test_a_channel_is_a_stream_too(served: Callable[[Main], None], guests: Guests) -> None:
    async def main(console: AsyncConsole) -> None:
        async with await console.domains.get("test").openChannel("org.qemu.guest_agent.0") as channel:
            await channel.write(b'{"execute": "guest-ping"}\n')
            assert await channel.read(timeout=5) == b'{"execute": "guest-ping"}\n'
        assert channel.closed and guests.opened[-1][0] == "virDomainOpenChannel"
    served(main)


def test_cancelling_the_open_leaves_nothing_open(served: Callable[[Main], None], guests: Guests) -> None:
    async def main(console: AsyncConsole) -> None:
        guests.gate = threading.Event()
        opening = asyncio.ensure_future(console.domains.get("test").openConsole())
        assert await asyncio.to_thread(guests.entered.wait, 5)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        guests.gate.set()  # the call ends after its task was cancelled: what it opened is closed
        assert await asyncio.to_thread(wait_until, lambda: bool(guests.opened) and guests.guest.aborted.is_set(), 5)
        assert console.sync.streams.open_streams() == []
    served(main)


def test_closing_the_console_fails_a_waiting_read(start_agent: Callable[..., Agent], guests: Guests) -> None:
    agent = start_agent(guests)

    async def main() -> None:
        async with AsyncConsole(agent_url(agent), timeout=5) as console:
            serial = await console.domains.get("test").openConsole()
            reading = asyncio.ensure_future(serial.read())
            await pending(reading)
        with pytest.raises(NotConnectedError):
            await asyncio.wait_for(reading, 5)
    asyncio.run(main())
