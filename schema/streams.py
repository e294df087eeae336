"""Streams over AMQP (docs/PROTOCOL.md §14): the limits, which methods open one, and each end's bookkeeping.

A method whose schema declares an out-argument of type ``stream`` opens one: the agent opens libvirt's
virStream, answers with its description (:class:`Descriptor`), and the data flows as ``_stream_data`` chunks
under credit the receiver grants (never more than ``window`` chunks in flight), closed by an ``end`` carrying
the byte count and the checksum (crc32 when the console asked for it, else sha256) the receiver checks.
:class:`Sender` and :class:`Receiver` are that bookkeeping as pure state machines (no threads, no
transport): the agent (agent/streams.py) and the console (console/_streams.py) drive the same two.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Type, TypeVar

from .codec import StreamControl, StreamData
from .errors import InvalidParameterError, ProtocolError, StreamAbortedError, StreamChecksumError
from .model import Argument, Method

__all__ = ["BOTH", "CHUNK_BYTES", "DIRECTIONS", "DOWNLOAD", "Descriptor", "IDLE_TIMEOUT", "MAX_AGENT_STREAMS",
           "MAX_CONSOLE_STREAMS", "PEEK_MAX_BYTES", "Receiver", "Sender", "UPLOAD", "WINDOW", "check_peek",
           "stream_argument"]

CHUNK_BYTES = 1024 * 1024
"""Largest chunk (bytes of one ``_stream_data``): under the transport's 8 MiB message limit. Bigger chunks go
faster: with 8 in flight, 256 KiB chunks moved 43 MiB/s and 1 MiB ones 70-130 MiB/s agent to console on loopback
(bench/stream_download.py, the transport's own ceiling for bulk messages being about that); the window bounds what
they cost in memory."""
WINDOW = 8
"""Chunks a receiver grants at most ahead (8 x 1 MiB: each end holds at most 8 MiB of a stream)."""
IDLE_TIMEOUT = 30.0
"""Seconds a stream may wait on its peer without progress before the agent aborts it (libvirt's stream too)."""
MAX_AGENT_STREAMS = 16
"""Streams open at once per agent; another is refused with object busy (8)."""
MAX_CONSOLE_STREAMS = 8
"""Streams a console opens at once; another is refused before anything is sent."""

DOWNLOAD, UPLOAD, BOTH = "download", "upload", "both"
DIRECTIONS: Mapping[str, str] = {
    "virStorageVolDownload": DOWNLOAD, "virDomainScreenshot": DOWNLOAD,
    "virStorageVolUpload": UPLOAD,
    "virDomainOpenConsole": BOTH, "virDomainOpenChannel": BOTH,
}
"""Which way each stream function's data flows: download (agent to console), upload, or both."""
SHA256, CRC32 = "sha256", "crc32"
CHECKSUMS = (CRC32, SHA256)
"""The checksums an end may carry, in the order a virtq console prefers them (``STREAM_CHECKSUMS`` on its request).
CRC-32 costs a fifth of SHA-256's CPU (zlib: 0.2 ms per MiB on each side, against 0.5), and the checksum travels
with the data, unsigned, so SHA-256 protects against nothing CRC-32 does not: whoever could change the chunks could
change the end. SHA-256 is what a peer that names none gets (QMF clients, consoles older than the field)."""
SPARSE_FLAG = 1
"""VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM = VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM: holes go as holes."""


PEEK_MAX_BYTES = 4 * 1024 * 1024
"""The most one blockPeek or memoryPeek may read: libvirt's own bound over its remote protocol
(REMOTE_DOMAIN_BLOCK_PEEK_BUFFER_MAX, REMOTE_DOMAIN_MEMORY_PEEK_BUFFER_MAX), held by the agent whatever the
driver (a local one, like the test driver's, has none): a binary return stays one bounded message."""


def check_peek(method: Method, args: Sequence[Any]) -> None:
    """InvalidParameterError for a peek (its ``size`` argument) above PEEK_MAX_BYTES; nothing for other methods."""
    if method.libvirt not in ("virDomainBlockPeek", "virDomainMemoryPeek"):
        return
    size = dict(zip((a.name for a in method.inputs), args)).get("size")
    if isinstance(size, int) and size > PEEK_MAX_BYTES:
        raise InvalidParameterError(f"{method.name}: size {size} exceeds {PEEK_MAX_BYTES} bytes: read it in pieces")


def stream_argument(method: Method) -> Optional[Argument]:
    """The out-argument that makes ``method`` open a stream, if it has one."""
    return next((a for a in method.outputs if a.type == "stream"), None)


@dataclass(frozen=True)
class Descriptor:
    """A stream as the method's answer describes it (the ``stream`` out-argument's map)."""

    id: str
    direction: str
    chunk: int = CHUNK_BYTES
    window: int = WINDOW
    idle: float = IDLE_TIMEOUT
    credit: int = 0  # chunks the console may send at once (upload, both): the agent's first grant
    sparse: bool = False
    checksum: str = SHA256  # what the end carries: one of CHECKSUMS

    def to_wire(self) -> Dict[str, Any]:
        return {"id": self.id, "direction": self.direction, "chunk": self.chunk, "window": self.window,
                "idle": self.idle, "credit": self.credit, "sparse": self.sparse, "checksum": self.checksum}

    @classmethod
    def from_wire(cls, value: Any) -> "Descriptor":
        try:
            made = cls(str(value["id"]), str(value["direction"]), int(value["chunk"]), int(value["window"]),
                       float(value["idle"]), int(value.get("credit", 0)), bool(value.get("sparse", False)),
                       str(value.get("checksum", SHA256)))
        except (TypeError, KeyError, ValueError) as exc:
            raise ProtocolError(f"stream description: {exc}") from None
        if made.direction not in (DOWNLOAD, UPLOAD, BOTH) or made.chunk <= 0 or made.window <= 0 \
                or made.checksum not in CHECKSUMS:
            raise ProtocolError(f"stream description: {value!r}")
        return made


def agreed_checksum(asked: Any) -> str:
    """The checksum an agent uses for a stream whose opening request asked for ``asked`` (the request's
    STREAM_CHECKSUMS, the console's preference first): the first it knows, else SHA-256."""
    names = asked.split(",") if isinstance(asked, str) else []
    return next((name for name in names if name in CHECKSUMS), SHA256)


class _Digest:
    """Bytes counted and checksummed as they pass (``checksum``: one of CHECKSUMS); a hole counts as that many
    zero bytes."""

    ZEROS = bytes(1024 * 1024)

    def __init__(self, checksum: str = SHA256) -> None:
        self.count = 0
        self.checksum = checksum
        self._sha = hashlib.sha256() if checksum == SHA256 else None
        self._crc = 0

    def add(self, data: bytes, hole: int = 0) -> None:
        self.count += len(data) + hole
        self._update(data)
        while hole > 0:
            step = min(hole, len(self.ZEROS))
            self._update(memoryview(self.ZEROS)[:step])
            hole -= step

    def _update(self, data: Any) -> None:
        if self._sha is not None:
            self._sha.update(data)
        else:
            self._crc = zlib.crc32(data, self._crc)

    @property
    def hexdigest(self) -> str:
        return self._sha.hexdigest() if self._sha is not None else f"{self._crc:08x}"


E = TypeVar("E", bound="_End")


class _End:
    """What both ends of a stream know: its id, its chunk size and window, its checksum, the bytes that passed."""

    def __init__(self, stream_id: str, chunk: int = CHUNK_BYTES, window: int = WINDOW,
                 checksum: str = SHA256) -> None:
        self.stream_id = stream_id
        self.chunk_bytes = chunk
        self.window = window
        self._digest = _Digest(checksum)

    @classmethod
    def of(cls: Type[E], descriptor: "Descriptor") -> E:
        """This end of the stream ``descriptor`` describes."""
        return cls(descriptor.id, descriptor.chunk, descriptor.window, descriptor.checksum)

    @property
    def total(self) -> int:
        """Bytes sent or received so far (holes included)."""
        return self._digest.count


class Sender(_End):
    """The sending end: chunks only against credit, numbered from 0; the end says how many bytes and their sha256."""

    def __init__(self, stream_id: str, chunk: int = CHUNK_BYTES, window: int = WINDOW,
                 checksum: str = SHA256) -> None:
        super().__init__(stream_id, chunk, window, checksum)
        self.credit = 0
        self.seq = 0

    def grant(self, credit: Any) -> None:
        """More chunks the receiver takes; a receiver may never have granted more than its window ahead."""
        if isinstance(credit, bool) or not isinstance(credit, int) or credit < 0 \
                or self.credit + credit > self.window:
            raise StreamAbortedError(f"stream {self.stream_id}: bad credit {credit!r} (window {self.window})")
        self.credit += credit

    def count(self, data: bytes = b"", hole: int = 0) -> None:
        """What the next chunk carries, counted and hashed. Called by the one thread that makes the chunks, in
        their order, before ``chunk`` and outside any lock: hashing a MiB takes half a millisecond, which a lock
        shared with the transport's thread (credit arriving) would make the transport wait for."""
        if len(data) > self.chunk_bytes:
            raise AssertionError(f"a chunk of {len(data)} bytes (at most {self.chunk_bytes})")
        self._digest.add(data, hole)

    def chunk(self, data: bytes = b"", hole: int = 0) -> StreamData:
        """The next chunk (``data``, or ``hole`` zero bytes not sent; ``count`` ed first); only while there is
        credit."""
        if self.credit <= 0:
            raise AssertionError("a chunk without credit")
        self.credit -= 1
        message = StreamData(stream=self.stream_id, seq=self.seq, data=data, hole=hole)
        self.seq += 1
        return message

    def end(self) -> StreamControl:
        return StreamControl(stream=self.stream_id, op="end",
                             values={"bytes": self._digest.count, self._digest.checksum: self._digest.hexdigest})


class Receiver(_End):
    """The receiving end: checks order and window, returns credit as chunks are consumed, checks the end."""

    def __init__(self, stream_id: str, chunk: int = CHUNK_BYTES, window: int = WINDOW,
                 checksum: str = SHA256) -> None:
        super().__init__(stream_id, chunk, window, checksum)
        self.expected = 0
        self.outstanding = 0  # credit granted and not used yet
        self._consumed = 0  # chunks consumed since the last grant

    def first_grant(self) -> int:
        """The credit to grant when the stream opens: the whole window."""
        granted = self.window - self.outstanding
        self.outstanding = self.window
        return granted

    def accept(self, message: StreamData) -> None:
        """A chunk that arrived: in order, within the credit granted and the chunk size, or the stream is aborted."""
        where = f"stream {self.stream_id}: chunk {message.seq}"
        if message.seq != self.expected:
            raise StreamAbortedError(f"{where} out of order (expected {self.expected})")
        if self.outstanding <= 0:
            raise StreamAbortedError(f"{where} beyond the credit granted (window {self.window})")
        if len(message.data) > self.chunk_bytes:
            raise StreamAbortedError(f"{where} of {len(message.data)} bytes (at most {self.chunk_bytes})")
        self.expected += 1
        self.outstanding -= 1
        self._digest.add(message.data, message.hole)

    def consumed(self) -> int:
        """One chunk was written out: the credit to grant now (in batches of half the window), else 0."""
        self._consumed += 1
        if self._consumed < max(1, self.window // 2):
            return 0
        granted, self._consumed = self._consumed, 0
        self.outstanding += granted
        return granted

    def verify(self, end: StreamControl) -> int:
        """The sender's end against what came: the byte count, or StreamChecksumError."""
        name = self._digest.checksum
        sent_bytes, sent_sum = end.values.get("bytes"), end.values.get(name)
        if sent_bytes != self._digest.count or sent_sum != self._digest.hexdigest:
            raise StreamChecksumError(f"stream {self.stream_id}: received {self._digest.count} bytes with {name} "
                                      f"{self._digest.hexdigest}, the sender sent {sent_bytes} with {sent_sum}")
        return self._digest.count
