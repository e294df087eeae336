"""The console's end of streams (docs/PROTOCOL.md §14): a stream method's call, and the data after it.

A stream method (its schema declares a ``stream`` out-argument: ``vol.download``, ``vol.upload``,
``dom.screenshot``, ``dom.openConsole``) is called like any method; its answer describes the stream, which is
registered here before any data can come (the agent sends nothing before the console's first credit, and grants
an upload's first credit in the description). What a transport receives for a stream is handed to it on the
transport's own thread, not through the inbox: credit is applied at once, the rest is queued, at most a window
of chunks. The caller's thread does the work: it writes what came to its file and grants credit back, or reads
its file into chunks as credit allows; the end's checksum is checked (StreamChecksumError). Leaving early
(an error, Ctrl-C) cancels the stream on the agent.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import queue
import threading
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

from virtq.logs import shown
from virtq.schema import errors
from virtq.schema.codec import STREAM, ExceptionResponse, Message, StreamControl, StreamData, WireMessage, decode, \
    direct_address
from virtq.schema.model import Method
from virtq.schema.streams import (BOTH, DIRECTIONS, DOWNLOAD, MAX_CONSOLE_STREAMS, UPLOAD, Descriptor, Receiver,
                                  Sender, stream_argument)
from virtq.transport import Transport

__all__ = ["ClientStream", "ConsoleStream", "Progress", "Streams"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Told the bytes moved so far, after every chunk."""
Deliver = Callable[[WireMessage], None]
Run = Callable[[Any, str, Dict[str, Any]], Tuple[Any, Any]]
"""The session's method call: (object, method name, arguments) -> (job, result)."""


class ClientStream:
    """One stream as the console holds it: what came for it, and its sending or receiving end."""

    def __init__(self, owner: "Streams", transport: Transport, agent: str, descriptor: Descriptor,
                 label: str) -> None:
        self.owner = owner
        self.transport = transport
        self.agent = agent
        self.descriptor = descriptor
        self.id = descriptor.id
        self.label = label
        self.sender = Sender.of(descriptor) if descriptor.direction in (UPLOAD, BOTH) else None
        if self.sender is not None:
            self.sender.grant(descriptor.credit)
        self.receiver = Receiver.of(descriptor) if descriptor.direction in (DOWNLOAD, BOTH) else None
        self.incoming: "queue.Queue[Message]" = queue.Queue()
        self.room = threading.Condition()  # a writer waits here for credit
        self.error: Optional[errors.VirtqError] = None  # how the agent (or the connection) ended it
        self.on_arrival: Optional[Callable[[], None]] = None
        """Called on the delivering thread (so quick, never blocking) once anything came or the stream was lost."""
        self.closed = False
        self.wait = descriptor.idle + 10.0
        """Seconds to wait for the agent's next message (it aborts a stalled stream after ``idle``)."""

    def put(self, message: Message) -> None:
        """What came for this stream (the transport's thread): credit at once, the rest queued."""
        with self.room:
            if isinstance(message, StreamControl) and message.op == "credit" and self.sender is not None:
                try:
                    self.sender.grant(message.values.get("credit"))
                except errors.StreamAbortedError as exc:
                    self.error = exc
                self.room.notify_all()
                self._arrived()
                return
            if isinstance(message, ExceptionResponse):
                self.error = errors.remote_error(message.error_code, message.error_text)
            elif isinstance(message, StreamControl) and message.op == "cancel":
                self.error = errors.StreamAbortedError(f"stream {self.id} cancelled by the agent: "
                                                       f"{message.values.get('reason', '')}")
            self.room.notify_all()
        self.incoming.put(message)
        self._arrived()

    def lost(self, error: errors.VirtqError) -> None:
        """The connection went away: whoever waits on the stream raises ``error`` now, not at its timeout."""
        with self.room:
            self.error = error
            self.room.notify_all()
        self.incoming.put(ExceptionResponse(error_text=str(error), correlation_id=self.id))
        self._arrived()

    def _arrived(self) -> None:
        if self.on_arrival is not None:
            self.on_arrival()

    def send(self, message: Message) -> None:
        wire = dataclasses.replace(message, reply_to=self.transport.reply_address)
        self.transport.send(wire.encode(direct_address(self.agent)))

    def next(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next data, end or done; None when nothing came within ``timeout``. Raises how the agent ended it."""
        try:
            message = self.incoming.get(timeout=self.wait if timeout is None else timeout)
        except queue.Empty:
            if timeout is not None:
                return None
            raise errors.StreamAbortedError(f"stream {self.id} ({self.label}): nothing from the agent for "
                                            f"{self.wait:g} s") from None
        if isinstance(message, ExceptionResponse) or (isinstance(message, StreamControl) and message.op == "cancel"):
            self.closed = True
            raise self.error or errors.StreamAbortedError(f"stream {self.id} ended")
        return message

    def credit_after_chunk(self) -> None:
        assert self.receiver is not None
        credit = self.receiver.consumed()
        if credit:
            self.send(StreamControl(stream=self.id, op="credit", values={"credit": credit}))

    def take_credit(self, data: bytes = b"", hole: int = 0) -> StreamData:
        """The next chunk, once the agent granted credit for it."""
        assert self.sender is not None
        self.sender.count(data, hole)
        with self.room:
            while self.sender.credit <= 0 and self.error is None and not self.closed:
                if not self.room.wait(self.wait):
                    raise errors.StreamAbortedError(f"stream {self.id} ({self.label}): no credit from the agent "
                                                    f"for {self.wait:g} s")
            if self.error is not None:
                raise self.error
            if self.closed:
                raise errors.StreamAbortedError(f"stream {self.id} is closed")
            return self.sender.chunk(data, hole)

    def cancel(self, reason: str) -> None:
        """Leave early: the agent aborts libvirt's stream (nothing is sent when the agent ended it)."""
        if not self.closed and self.error is None:
            try:
                self.send(StreamControl(stream=self.id, op="cancel", values={"reason": reason[:200]}))
            except errors.VirtqError:
                log.debug("cancelling stream %s", self.id, exc_info=True)
        self.closed = True
        with self.room:
            self.room.notify_all()
        self.owner.forget(self)

    # --- the two one-way uses ---------------------------------------------------------------------

    def download(self, sink: IO[bytes], progress: Optional[Progress] = None) -> int:
        """Write everything the agent sends to ``sink``; the byte count, checked against the end's checksum."""
        assert self.receiver is not None
        self.send(StreamControl(stream=self.id, op="credit", values={"credit": self.receiver.first_grant()}))
        hole_last = False
        while True:
            message = self.next()
            if isinstance(message, StreamData):
                self.receiver.accept(message)
                hole_last = _write(sink, message)
                if progress is not None:
                    progress(self.receiver.total)
                self.credit_after_chunk()
            elif isinstance(message, StreamControl) and message.op == "end":
                received = self.receiver.verify(message)
                if hole_last:
                    sink.truncate()  # a trailing hole: the file ends where the stream does
                self.closed = True
                return received
            else:
                raise errors.StreamAbortedError(f"stream {self.id}: unexpected {type(message).__name__}")

    def upload(self, source: IO[bytes], progress: Optional[Progress] = None) -> int:
        """Send ``source`` to its end as credit allows; the byte count the agent confirmed (``done``)."""
        assert self.sender is not None
        while True:
            data = source.read(self.descriptor.chunk)
            if not data:
                break
            hole = self.descriptor.sparse and not data.strip(b"\0")
            self.send(self.take_credit(b"", len(data)) if hole else self.take_credit(bytes(data)))
            if progress is not None:
                progress(self.sender.total)
        self.send(self.sender.end())
        message = self.next()
        if not isinstance(message, StreamControl) or message.op != "done":
            raise errors.StreamAbortedError(f"stream {self.id}: no done after the end")
        self.closed = True
        return int(message.values.get("bytes", self.sender.total))


def _write(sink: IO[bytes], message: StreamData) -> bool:
    """A chunk into the file: a hole by seeking past it where the file can (else as zeros). True for a hole."""
    if not message.hole:
        sink.write(message.data)
        return False
    if sink.seekable():
        sink.seek(message.hole, io.SEEK_CUR)
    else:
        left = message.hole
        while left:
            step = min(left, 1024 * 1024)
            sink.write(bytes(step))
            left -= step
    return True


class ConsoleStream:
    """A bidirectional stream (``dom.openConsole()``): what the guest writes is read, what is written goes to it.

    Use as a context manager, or call close(). While it is open a thread tells the agent every third of the
    idle timeout that the console is still there (a console may stay silent for hours; a vanished one must not
    keep the agent's stream)."""

    def __init__(self, stream: ClientStream) -> None:
        self._stream = stream
        self._ended = False
        assert stream.receiver is not None
        stream.send(StreamControl(stream=stream.id, op="credit", values={"credit": stream.receiver.first_grant()}))
        self._keepalive = threading.Thread(target=self._keep_alive, name=f"virtq-stream {stream.id}", daemon=True)
        self._keepalive.start()

    @property
    def closed(self) -> bool:
        return self._stream.closed or self._ended

    def read(self, timeout: Optional[float] = None) -> bytes:
        """What the guest wrote next: b"" when nothing came within ``timeout`` (None: wait) or at the end
        (then ``closed``)."""
        if self.closed:
            return b""
        message = self._stream.next(timeout if timeout is not None else 365 * 86400.0)
        if message is None:
            return b""
        if isinstance(message, StreamData):
            assert self._stream.receiver is not None
            self._stream.receiver.accept(message)
            self._stream.credit_after_chunk()
            return message.data
        self._ended = True  # the guest's side ended (end, done)
        self._stream.owner.forget(self._stream)
        return b""

    def write(self, data: bytes) -> int:
        """Send ``data`` to the guest (in chunks, as credit allows); how many bytes."""
        view = memoryview(data)
        while view:
            piece = bytes(view[:self._stream.descriptor.chunk])
            self._stream.send(self._stream.take_credit(piece))
            view = view[len(piece):]
        return len(data)

    @property
    def stream(self) -> ClientStream:
        """The stream underneath: its credit, and its ``on_arrival`` hook (asyncio's: console/_aio_streams.py)."""
        return self._stream

    def close(self) -> None:
        """Close the console (the agent aborts libvirt's stream, as virsh console does on Ctrl-])."""
        self._stream.cancel("closed")

    def _keep_alive(self) -> None:
        stream = self._stream
        while not self.closed:
            with stream.room:
                stream.room.wait(stream.descriptor.idle / 3)
            if self.closed:
                return
            try:
                stream.send(StreamControl(stream=stream.id, op="credit", values={"credit": 0}))
            except errors.VirtqError:
                return

    def __enter__(self) -> "ConsoleStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Streams:
    """The console's open streams: made by stream methods' calls, fed by the transports."""

    def __init__(self, run: Run, route: Callable[[str], Transport], limit: int = MAX_CONSOLE_STREAMS) -> None:
        self._run = run
        self._route = route
        self.limit = limit
        self._open: Dict[str, ClientStream] = {}
        self._lock = threading.Lock()
        self._calling = 0

    def deliverer(self, transport: Transport, rest: Deliver) -> Deliver:
        """What a transport calls on its thread: stream messages to their stream, everything else to ``rest``."""
        def deliver(wire: WireMessage) -> None:
            if STREAM in wire.properties:
                self.deliver(transport, wire)
            else:
                rest(wire)
        return deliver

    def deliver(self, transport: Transport, wire: WireMessage) -> None:
        stream = self._open.get(str(wire.properties.get(STREAM)))
        try:
            message = decode(wire)
        except errors.ProtocolError as exc:
            log.warning("dropping a malformed stream message: %s", shown(str(exc)))
            return
        if stream is None or stream.transport is not transport or message.agent != stream.agent:
            log.debug("dropping a message for stream %s: not open here", shown(str(wire.properties.get(STREAM))))
            return
        stream.put(message)

    def forget(self, stream: ClientStream) -> None:
        with self._lock:
            self._open.pop(stream.id, None)

    def open_streams(self) -> List[ClientStream]:
        with self._lock:
            return list(self._open.values())

    def fail(self, transport: Optional[Transport], error: errors.VirtqError) -> None:
        """Streams on ``transport`` (None: all) can go no further: they fail now."""
        for stream in self.open_streams():
            if transport is None or stream.transport is transport:
                stream.lost(error)

    def call(self, obj: Any, method: Method, args: Sequence[Any], kwargs: Dict[str, Any]) -> Any:
        """A stream method called on a snapshot (console/objects.py): see the module docstring for the shapes."""
        others = [a for a in method.outputs if a.type != "stream"]
        direction = DIRECTIONS.get(method.libvirt, BOTH)
        takes_file = direction == UPLOAD or (direction == DOWNLOAD and not others)
        values = list(args)
        file: Optional[IO[bytes]] = kwargs.pop("file", None)
        if takes_file and file is None:
            if not values:
                raise errors.InvalidParameterError(f"{method.name} needs a file object")
            file = values.pop(0)
        progress: Optional[Progress] = kwargs.pop("progress", None)
        if len(values) > len(method.inputs):
            raise errors.InvalidParameterError(f"{method.name} takes {len(method.inputs)} argument(s)")
        arguments = dict(zip((a.name for a in method.inputs), values), **kwargs)
        stream, results = self._open_stream(obj, method, arguments)
        if direction == BOTH:
            return ConsoleStream(stream)
        try:
            if direction == UPLOAD:
                assert file is not None
                return stream.upload(file, progress)
            sink = file if file is not None else io.BytesIO()
            moved = stream.download(sink, progress)
        except BaseException as exc:
            stream.cancel(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.forget(stream)
        if file is not None:
            return moved
        assert isinstance(sink, io.BytesIO)
        return (*[results[a.name] for a in others], sink.getvalue())

    def _open_stream(self, obj: Any, method: Method, arguments: Dict[str, Any]) -> Tuple[ClientStream, Any]:
        with self._lock:
            if len(self._open) + self._calling >= self.limit:
                raise errors.ObjectBusyError(f"console busy: {self.limit} streams open (the limit)")
            self._calling += 1
        try:
            _, result = self._run(obj, method.name, arguments)
            argument = stream_argument(method)
            assert argument is not None
            results = result if isinstance(result, dict) and argument.name in result else {argument.name: result}
            descriptor = Descriptor.from_wire(results[argument.name])
            stream = ClientStream(self, self._route(obj.agent), obj.agent, descriptor,
                                  f"{obj.object_id.object_name} {method.name}")
            with self._lock:
                self._open[stream.id] = stream
        finally:
            with self._lock:
                self._calling -= 1
        return stream, results
