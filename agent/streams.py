"""The agent's end of streams (docs/PROTOCOL.md §14): libvirt's virStream on one side, the peer on the other.

A stream method's call (in its object's apartment) opens libvirt's stream and registers it here; from then on
the stream lives outside the apartment. What the peer sends arrives on the transport's thread and is only
checked, counted and queued. libvirt is read and written on the agent's worker pool: a download reads one
chunk per credit the peer granted and stops when the credit is spent, an upload writes what came and grants
credit back as it goes, so no worker waits on a peer and at most a window of chunks is held per stream (the
agent never holds a whole image). A console (both ways) has one thread of its own reading libvirt: a guest's
output comes when it comes. One watchdog thread aborts the streams whose peer made no progress for their
idle timeout, libvirt's stream with them (virStreamAbort).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from concurrent.futures import Executor
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Union

from virtq.logs import RateLimited, shown
from virtq.schema import errors
from virtq.schema.codec import (STREAM, ExceptionResponse, Message, MethodRequest, StreamControl, StreamData,
                                WireMessage, decode)
from virtq.schema.model import Method
from virtq.schema.streams import (BOTH, CHUNK_BYTES, DIRECTIONS, DOWNLOAD, IDLE_TIMEOUT, MAX_AGENT_STREAMS,
                                  SPARSE_FLAG, UPLOAD, WINDOW, Descriptor, Receiver, Sender, agreed_checksum)

from .hypervisor import STREAM as STREAM_SLOT
from .hypervisor import Hypervisor, HypervisorError, HypervisorStream

__all__ = ["AgentStream", "AgentStreams"]

log = logging.getLogger(__name__)
limited = RateLimited(log)

SPARSE_FUNCTIONS = frozenset({"virStorageVolDownload", "virStorageVolUpload"})
"""The stream functions whose flags may ask for a sparse stream (SPARSE_FLAG)."""


def _libvirt_error(exc: HypervisorError) -> errors.RemoteError:
    return errors.LibvirtError.from_libvirt(exc.code, exc.message)


class AgentStream:
    """One open stream: its libvirt stream, its sending and receiving ends, what came and is not written yet."""

    def __init__(self, owner: "AgentStreams", descriptor: Descriptor, libvirt: HypervisorStream, reply_to: str,
                 principal: Optional[str], label: str) -> None:
        self.owner = owner
        self.descriptor = descriptor
        self.id = descriptor.id
        self.libvirt = libvirt
        self.reply_to = reply_to
        self.principal = principal
        self.label = label  # "Volume:<key> download", for logs
        both = descriptor.direction == BOTH
        self.sender = Sender.of(descriptor) if descriptor.direction == DOWNLOAD or both else None
        self.receiver = Receiver.of(descriptor) if descriptor.direction == UPLOAD or both else None
        if self.receiver is not None:
            self.receiver.first_grant()  # given in the description (``credit``)
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # a console's reader waits here for credit
        self.inbox: Deque[Message] = collections.deque()  # chunks and the end, not written to libvirt yet
        self.reading = False  # a worker is reading libvirt for the peer (download)
        self.writing = False  # a worker is writing what came to libvirt
        self.closed = False
        self._held: Union[bytes, int, None] = None  # a download's hole or end read past a chunk
        self.progress = owner.clock()

    # --- what the peer sends (the transport's thread: count, check and queue only) ------------------

    def on_message(self, message: Message) -> None:
        self.progress = self.owner.clock()
        try:
            if isinstance(message, StreamControl) and message.op == "cancel":
                log.info("stream %s (%s) cancelled by its peer: %s", self.id, self.label,
                         shown(str(message.values.get("reason", ""))))
                self.close(abort=True)
            elif isinstance(message, StreamControl) and message.op == "credit":
                self._credit(message.values.get("credit"))
            elif isinstance(message, StreamData) or (isinstance(message, StreamControl) and message.op == "end"):
                self._incoming(message)
            else:
                raise errors.StreamAbortedError(f"stream {self.id}: unexpected {message.OPCODE} from the peer")
        except errors.RemoteError as exc:
            self.fail(exc)

    def _credit(self, credit: Any) -> None:
        if self.sender is None:
            raise errors.StreamAbortedError(f"stream {self.id}: credit on an upload")
        with self.lock:
            self.sender.grant(credit)
            if self.descriptor.direction == BOTH:
                self.room.notify_all()
                return
            start = not self.reading and not self.closed and self.sender.credit > 0
            self.reading = self.reading or start
        if start:
            self.owner.submit(self, self._pump)

    def _incoming(self, message: Message) -> None:
        if self.receiver is None:
            raise errors.StreamAbortedError(f"stream {self.id}: data on a download")
        with self.lock:
            if isinstance(message, StreamData):
                self.receiver.accept(message)
            self.inbox.append(message)
            start = not self.writing and not self.closed
            self.writing = self.writing or start
        if start:
            self.owner.submit(self, self._drain)

    # --- libvirt's side (the worker pool; a console's reader thread) ---------------------------------

    def _pump(self) -> None:
        """Download: one chunk read from libvirt per credit; stops when the credit is spent (the peer's next
        grant starts it again) or at the end."""
        assert self.sender is not None
        while True:
            with self.lock:
                if self.closed or self.sender.credit <= 0:
                    self.reading = False
                    return
            if not self._forward(self._full_chunk(), finish=True):
                self.reading = False
                return

    def _full_chunk(self) -> Union[bytes, int]:
        """A download's next chunk, filled to the descriptor's size: libvirt's recv gives one RPC packet at a time
        (256 KiB, then its 24-byte tail), and every chunk is a message the peer pays for, so four packets make
        one chunk. A hole or the end that comes after some data is held for the next call."""
        if self._held is not None:
            got, self._held = self._held, None
            return got
        parts: List[bytes] = []
        size = self.descriptor.chunk
        while size > 0:
            got = self.libvirt.recv(size)
            if isinstance(got, int) or got == b"":
                if not parts:
                    return got
                self._held = got
                break
            parts.append(got)
            size -= len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read_console(self) -> None:
        """Both ways: the guest's output to the peer, a chunk per credit, until either side closes."""
        assert self.sender is not None
        while True:
            with self.lock:
                while not self.closed and self.sender.credit <= 0:
                    self.room.wait(1.0)
                if self.closed:
                    return
            try:
                got = self.libvirt.recv(self.descriptor.chunk)
            except HypervisorError as exc:
                if not self.closed:
                    self.fail(_libvirt_error(exc))
                return
            if not self._forward(got, finish=False):
                return

    def _forward(self, got: Union[bytes, int], finish: bool) -> bool:
        """Send the peer what libvirt gave: a chunk (True: read on), or at its end the sender's end, finishing
        libvirt's stream (a download) or aborting it (a console whose guest side closed)."""
        assert self.sender is not None
        if got == b"":
            if finish:
                self.libvirt.finish()
            with self.lock:
                end = self.sender.end()
            self.owner.send(self, end)
            self.close(abort=not finish)
            return False
        data, hole = (b"", got) if isinstance(got, int) else (got, 0)
        self.sender.count(data, hole)
        with self.lock:
            if self.closed:
                return False
            chunk = self.sender.chunk(data, hole)
        self.owner.send(self, chunk)
        self.progress = self.owner.clock()
        return True

    def _drain(self) -> None:
        """Upload (and a console's input): write what came to libvirt, in order, granting credit back."""
        assert self.receiver is not None
        while True:
            with self.lock:
                if self.closed or not self.inbox:
                    self.writing = False
                    return
                message = self.inbox.popleft()
            if isinstance(message, StreamData):
                if message.hole:
                    self.libvirt.send_hole(message.hole)
                else:
                    self.libvirt.send(message.data)
                with self.lock:
                    credit = self.receiver.consumed()
                if credit:
                    self.owner.send(self, StreamControl(stream=self.id, op="credit", values={"credit": credit}))
            elif isinstance(message, StreamControl):  # the end
                self._ended(message)
                return

    def _ended(self, end: StreamControl) -> None:
        assert self.receiver is not None
        if self.descriptor.direction == UPLOAD:
            received = self.receiver.verify(end)  # StreamChecksumError: the caller aborts
            self.libvirt.finish()
        else:  # a console's input ends: the console is closed
            received = self.receiver.total
            self.libvirt.abort()
        self.owner.send(self, StreamControl(stream=self.id, op="done", values={"bytes": received}))
        self.close(abort=False)

    def run(self, work: Callable[[], None]) -> None:
        """One of the above on a worker: a libvirt failure or a bad end aborts the stream and tells the peer."""
        try:
            work()
        except HypervisorError as exc:
            self.fail(_libvirt_error(exc))
        except errors.RemoteError as exc:
            self.fail(exc)
        except Exception as exc:  # noqa: BLE001 - a stream's bug must not end a worker
            log.exception("stream %s (%s) failed", self.id, self.label)
            self.fail(errors.AgentError(f"internal error: {type(exc).__name__}: {exc}"))

    # --- the end -------------------------------------------------------------------------------------

    def waiting_on_peer(self) -> bool:
        """Whether the stream can only go on when its peer sends something (the watchdog's question)."""
        if self.descriptor.direction == BOTH:
            return True  # a console's peer sends credit (a keepalive) at least every third of the idle timeout
        if self.sender is not None:
            return not self.reading and self.sender.credit <= 0
        return not self.writing and not self.inbox

    def fail(self, error: errors.RemoteError) -> None:
        """Abort libvirt's stream and tell the peer why (an ``_exception`` with the stream's id)."""
        if self.closed:
            return
        log.info("stream %s (%s) aborted: %s", self.id, self.label, error.error_text)
        self.close(abort=True)
        self.owner.send(self, ExceptionResponse(error_code=error.error_code, error_text=error.error_text,
                                                correlation_id=self.id))

    def close(self, abort: bool) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.inbox.clear()
            self.room.notify_all()
        self.owner.forget(self)
        if abort:
            self.libvirt.abort()


class AgentStreams:
    """The agent's open streams: opened by stream methods, fed by ``deliver``, watched for stalls."""

    def __init__(self, hypervisor: Hypervisor, send: Callable[[WireMessage], object], agent_name: str,
                 pool: Executor, *, chunk: int = CHUNK_BYTES, window: int = WINDOW, idle: float = IDLE_TIMEOUT,
                 max_streams: int = MAX_AGENT_STREAMS, clock: Callable[[], float] = time.monotonic) -> None:
        self.hypervisor = hypervisor
        self._send = send
        self.agent_name = agent_name
        self.pool = pool
        self.chunk, self.window, self.idle, self.max_streams = chunk, window, idle, max_streams
        self.clock = clock
        self._streams: Dict[str, AgentStream] = {}
        self._opening = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchdog: Optional[threading.Thread] = None
        self.stalled = 0
        """Streams aborted because their peer made no progress for their idle timeout."""

    def open(self, request: MethodRequest, principal: Optional[str], class_name: str, key: Optional[str],
             method: Method, args: Sequence[Any]) -> Any:
        """A stream method's call (the dispatcher's, in the object's apartment): open libvirt's stream and
        answer the method's out-arguments, the stream's description among them. HypervisorError passes."""
        direction = DIRECTIONS.get(method.libvirt)
        if direction is None:
            raise errors.NotImplementedError_(f"{method.name}: {method.libvirt} is not a stream this agent serves")
        with self._lock:
            if len(self._streams) + self._opening >= self.max_streams:
                raise errors.ObjectBusyError(f"agent busy: {self.max_streams} streams open (the limit)")
            self._opening += 1
        try:
            inputs = iter(args)
            positional = [STREAM_SLOT if a.type == "stream" else next(inputs)
                          for a in method.arguments if a.is_input or a.type == "stream"]
            flags = dict(zip((a.name for a in method.inputs), args)).get("flags", 0)
            sparse = method.libvirt in SPARSE_FUNCTIONS and bool(flags & SPARSE_FLAG)
            result, libvirt = self.hypervisor.open_stream(class_name, key, method.libvirt, positional, sparse)
            descriptor = Descriptor(f"s-{secrets.token_hex(12)}", direction, self.chunk, self.window, self.idle,
                                    0 if direction == DOWNLOAD else self.window, sparse,
                                    agreed_checksum(request.stream_checksums))
            stream = AgentStream(self, descriptor, libvirt, request.reply_to or "", principal,
                                 f"{class_name}:{key} {method.name}")
            with self._lock:
                self._streams[stream.id] = stream
        finally:
            with self._lock:
                self._opening -= 1
        self._watch()
        if direction == BOTH:
            threading.Thread(target=stream.read_console, name=f"virtq-stream {stream.id}", daemon=True).start()
        log.info("stream %s opened: %s for %s", stream.id, stream.label, shown(principal or "anonymous"))
        values = [descriptor.to_wire() if a.type == "stream" else result for a in method.outputs]
        return values[0] if len(values) == 1 else values

    def deliverer(self, for_me: Callable[[WireMessage], bool],
                  rest: Callable[[WireMessage], None]) -> Callable[[WireMessage], None]:
        """What the transport calls on its thread: a stream message (``qmf.stream``) addressed to the agent goes
        to ``deliver`` — it is not a request, it does not count against the pending ones — the rest to ``rest``."""
        def receive(wire: WireMessage) -> None:
            if STREAM not in wire.properties:
                rest(wire)
            elif for_me(wire):
                self.deliver(wire)
        return receive

    def deliver(self, wire: WireMessage) -> None:
        """A stream message the transport received (on its thread): to its stream, from its opener only."""
        try:
            message = decode(wire)
        except errors.ProtocolError as exc:
            limited.warning("stream malformed", "dropping a malformed stream message: %s", shown(str(exc)))
            return
        stream_id = message.stream if isinstance(message, (StreamData, StreamControl)) else None
        stream = self._streams.get(stream_id or "")
        if stream is None:
            log.debug("message for stream %s, which is not open", shown(str(stream_id)))
            return
        if wire.principal != stream.principal:
            limited.warning("stream principal", "dropping a message for stream %s from %s, not its opener",
                            stream.id, shown(wire.principal or "anonymous"))
            return
        stream.on_message(message)

    def submit(self, stream: AgentStream, work: Callable[[], None]) -> None:
        try:
            self.pool.submit(stream.run, work)
        except RuntimeError:  # the agent is stopping
            stream.close(abort=True)

    def send(self, stream: AgentStream, message: Union[StreamData, StreamControl, ExceptionResponse]) -> None:
        wire = dataclasses.replace(message, agent=self.agent_name).encode(stream.reply_to)
        if isinstance(message, ExceptionResponse):  # marked, so the console hands it to the stream
            wire = dataclasses.replace(wire, properties={**wire.properties, STREAM: stream.id})
        self._send(wire)

    def forget(self, stream: AgentStream) -> None:
        with self._lock:
            self._streams.pop(stream.id, None)

    def open_streams(self) -> List[AgentStream]:
        with self._lock:
            return list(self._streams.values())

    # --- stalls ----------------------------------------------------------------------------------------

    def _watch(self) -> None:
        with self._lock:
            if self._watchdog is not None:
                return
            self._watchdog = threading.Thread(target=self._watch_loop, name="virtq-streams", daemon=True)
        self._watchdog.start()

    def _watch_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.idle / 4)):
            self.abort_stalled()

    def abort_stalled(self) -> int:
        """Abort every stream whose peer made no progress for its idle timeout; how many were."""
        now = self.clock()
        stalled = [s for s in self.open_streams() if s.waiting_on_peer() and now - s.progress > s.descriptor.idle]
        for stream in stalled:
            self.stalled += 1
            stream.fail(errors.StreamAbortedError(f"stream {stream.id} stalled: no progress from its peer for "
                                                  f"{stream.descriptor.idle:g} s"))
        return len(stalled)

    def stop(self) -> None:
        """The agent stops: every stream is aborted (its peer told), the watchdog ends."""
        self._stop.set()
        for stream in self.open_streams():
            stream.fail(errors.StreamAbortedError(f"stream {stream.id}: the agent is stopping"))
