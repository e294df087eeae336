"""A console or channel (``await dom.openConsole()``, ``openChannel``) read and written on the event loop.

The sync :class:`~virtq.console._streams.ConsoleStream` does the bookkeeping; a read that finds data queued and a
write that has the agent's credit never block, so both run on the loop itself. When they must wait, they await a
wake-up: the transport's thread, having queued what came for the stream (data, credit, the end, a lost connection),
calls ``loop.call_soon_threadsafe`` (at most one wake-up in flight). No thread is parked per read, and a cancelled
read took nothing: what came meanwhile stays queued for the next one.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Optional, Set, Union

from virtq.schema.errors import StreamAbortedError

from ._aio_bridge import Wakeup
from ._streams import ConsoleStream

__all__ = ["AsyncConsoleStream", "open_console", "transfer"]

Data = Union[bytes, bytearray, memoryview]


class AsyncConsoleStream:
    """A bidirectional stream for asyncio: ``await read(timeout)``, ``await write(data)``, ``async for chunk in
    stream``, ``async with`` (or ``await close()``). ``sync`` is the ConsoleStream underneath."""

    def __init__(self, sync: ConsoleStream, loop: asyncio.AbstractEventLoop) -> None:
        self.sync = sync
        self._loop = loop
        self._waiters: Set["asyncio.Future[None]"] = set()
        sync.stream.on_arrival = Wakeup(loop, self._wake).signal

    @property
    def closed(self) -> bool:
        """Closed here, ended by the guest's side, or failed (after the read that raised)."""
        return self.sync.closed

    # --- waking ---------------------------------------------------------------------------------------

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _arrival(self, timeout: Optional[float]) -> bool:
        """Wait for the next wake-up (False after ``timeout``). Called right after looking, with no await in
        between: a wake-up for what came since is run by the loop after this waiter is registered."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)

    # --- reading and writing --------------------------------------------------------------------------

    async def read(self, timeout: Optional[float] = None) -> bytes:
        """What the guest wrote next: b"" when nothing came within ``timeout`` (None: wait) or at the end (then
        ``closed``). Raises the sync read's typed errors (StreamAbortedError, NotConnectedError, libvirt's)."""
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            data = self.sync.read(timeout=0)  # takes what is queued, never waits
            if data or self.sync.closed:
                return data
            left = None if deadline is None else deadline - self._loop.time()
            if left is not None and left <= 0:
                return b""
            await self._arrival(left)

    async def write(self, data: Data) -> int:
        """Send ``data`` to the guest, a chunk per credit the agent grants (awaited, on the loop); how many bytes.
        StreamAbortedError when no credit came for the stream's patience; a cancelled write may have sent a part."""
        view, sent = memoryview(data).cast("B"), 0
        patience = self.sync.stream.wait
        deadline = self._loop.time() + patience
        while True:
            went = self._send_now(view[sent:])
            if went:
                sent, deadline = sent + went, self._loop.time() + patience
            if sent >= len(view):
                return sent
            left = deadline - self._loop.time()
            if left <= 0 or not await self._arrival(left):
                raise StreamAbortedError(f"stream {self.sync.stream.id} ({self.sync.stream.label}): no credit from "
                                         f"the agent for {patience:g} s")

    def _send_now(self, view: memoryview) -> int:
        """What of ``view`` the credit lets go now, a chunk at a time; raises as the sync write does once ended."""
        stream, sent = self.sync.stream, 0
        assert stream.sender is not None
        while sent < len(view):
            with stream.room:
                if stream.sender.credit <= 0 and stream.error is None and not stream.closed:
                    break  # take_credit would wait
            piece = bytes(view[sent:sent + stream.descriptor.chunk])
            stream.send(stream.take_credit(piece))
            sent += len(piece)
        return sent

    async def close(self) -> None:
        """Close the console (the agent aborts libvirt's stream); pending reads return b"", pending writes raise."""
        self.sync.close()  # sends the cancel: never waits
        self._wake()

    aclose = close

    # --- protocols --------------------------------------------------------------------------------------

    async def __aenter__(self) -> "AsyncConsoleStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> "AsyncConsoleStream":
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    def __repr__(self) -> str:
        return f"<AsyncConsoleStream {self.sync.stream.label}{' closed' if self.closed else ''}>"


async def open_console(open_stream: Callable[..., ConsoleStream], *args: Any, **kwargs: Any) -> AsyncConsoleStream:
    """``open_stream(*args, **kwargs)`` (the sync snapshot's openConsole: a method call) on a thread, as an
    AsyncConsoleStream. A task cancelled meanwhile leaves nothing open: the console is closed once the call ends."""
    loop = asyncio.get_running_loop()
    opening = asyncio.ensure_future(asyncio.to_thread(open_stream, *args, **kwargs))
    try:
        sync = await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_unwanted)
        raise
    return AsyncConsoleStream(sync, loop)


def _close_unwanted(opening: "asyncio.Future[ConsoleStream]") -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def transfer(move: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A download, upload or screenshot: the file's worth moved by a thread (file work blocks), awaited. Cancelling
    the awaiting task cancels the stream too: the thread's next progress step (each chunk) raises, and the agent
    aborts libvirt's stream, instead of the file being moved to its end for nobody."""
    cancelled = threading.Event()
    progress: Optional[Callable[[int], None]] = kwargs.pop("progress", None)

    def step(moved: int) -> None:
        if cancelled.is_set():
            raise StreamAbortedError("stream cancelled: its asyncio task was cancelled")
        if progress is not None:
            progress(moved)

    try:
        return await asyncio.to_thread(move, *args, progress=step, **kwargs)
    except asyncio.CancelledError:
        cancelled.set()
        raise
