"""libvirt's virStream behind the HypervisorStream interface (with libvirt_adapter.py and libvirt_events.py, the
only modules that import libvirt).

Streams are blocking: each call is made by one of the agent's stream threads (agent/streams.py), never by the
reactor. A sparse stream reads with VIR_STREAM_RECV_STOP_AT_HOLE, so a hole comes back as its length
instead of as zeros. A volume download is read in segments (SEGMENT_BYTES), so libvirt's own client never
holds more than one segment the console has not taken yet.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import libvirt

from .hypervisor import STREAM, HypervisorError, HypervisorStream

__all__ = ["LibvirtStream", "SEGMENT_BYTES", "SegmentedDownload", "open_segmented", "open_stream"]

log = logging.getLogger(__name__)

HOLE_REACHED = -3
"""What virStreamRecvFlags returns with VIR_STREAM_RECV_STOP_AT_HOLE at a hole."""


def _failed(exc: libvirt.libvirtError) -> HypervisorError:
    return HypervisorError(exc.get_error_code() or 1, exc.get_error_message() or str(exc))


class LibvirtStream(HypervisorStream):
    def __init__(self, stream: Any, sparse: bool) -> None:
        self._stream = stream
        self._sparse = sparse

    def recv(self, nbytes: int) -> Union[bytes, int]:
        try:
            if not self._sparse:
                return bytes(self._stream.recv(nbytes))
            got = self._stream.recvFlags(nbytes, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
            if isinstance(got, int):
                if got != HOLE_REACHED:
                    raise HypervisorError(1, f"virStreamRecvFlags returned {got}")
                return int(self._stream.recvHole(0))
            return bytes(got)
        except libvirt.libvirtError as exc:
            raise _failed(exc) from exc

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                sent = self._stream.send(bytes(view))
                if sent <= 0:
                    raise HypervisorError(1, f"virStreamSend returned {sent}")
                view = view[sent:]
        except libvirt.libvirtError as exc:
            raise _failed(exc) from exc

    def send_hole(self, length: int) -> None:
        try:
            self._stream.sendHole(length, 0)
        except libvirt.libvirtError as exc:
            raise _failed(exc) from exc

    def finish(self) -> None:
        try:
            self._stream.finish()
        except libvirt.libvirtError as exc:
            raise _failed(exc) from exc

    def abort(self) -> None:
        try:
            self._stream.abort()
        except libvirt.libvirtError as exc:  # already finished, or the connection is gone
            log.debug("virStreamAbort: %s", exc.get_error_message())


SEGMENT_BYTES = 8 * 1024 * 1024
"""A volume download is read from libvirt in segments of this size, one virStorageVolDownload each. libvirt's
remote client queues every byte libvirtd sends on a stream, read or not (its RPC streams have no flow control:
virNetClientStreamQueuePacket), so a whole volume would pile up in the agent whenever the console reads slower
than libvirtd reads the disk; a segment at a time bounds that to SEGMENT_BYTES."""

Opener = Callable[[Sequence[Any]], Tuple[Any, HypervisorStream]]
"""Opens one libvirt stream: the binding's positional arguments (STREAM where the stream goes) -> (result, stream)."""


class SegmentedDownload(HypervisorStream):
    """A volume download as successive libvirt streams of SEGMENT_BYTES, opened as the previous one ends."""

    def __init__(self, open_segment: Callable[[int, int], HypervisorStream], first: HypervisorStream,
                 offset: int, length: int, first_size: int) -> None:
        self._open_segment = open_segment
        self._current: Optional[HypervisorStream] = first
        self._size = first_size  # what the current segment asked for
        self._got = 0  # what it gave so far
        self._offset = offset + first_size  # where the next segment starts
        self._left = None if length == 0 else length - first_size  # None: to the end of the volume

    def recv(self, nbytes: int) -> Union[bytes, int]:
        while self._current is not None:
            got = self._current.recv(nbytes)
            if got != b"":
                self._got += got if isinstance(got, int) else len(got)
                return got
            self._current.finish()
            self._current = None
            if self._got < self._size or self._left == 0:
                return b""  # the volume (or the length asked for) ended within this segment
            self._size = SEGMENT_BYTES if self._left is None else min(SEGMENT_BYTES, self._left)
            self._current, self._got = self._open_segment(self._offset, self._size), 0
            self._offset += self._size
            if self._left is not None:
                self._left -= self._size
        return b""

    def send(self, data: bytes) -> None:
        raise HypervisorError(1, "a download takes no data")

    def send_hole(self, length: int) -> None:
        raise HypervisorError(1, "a download takes no data")

    def finish(self) -> None:
        if self._current is not None:
            self._current.finish()

    def abort(self) -> None:
        if self._current is not None:
            self._current.abort()


def open_segmented(function: str, args: Sequence[Any], open_one: Opener) -> Tuple[Any, HypervisorStream]:
    """``open_one(args)``, but a volume download (args: STREAM, offset, length, flags) in segments."""
    if function != "virStorageVolDownload":
        return open_one(args)
    _, offset, length, *rest = args
    size = SEGMENT_BYTES if length == 0 else min(SEGMENT_BYTES, length)

    def segment(at: int, size: int) -> HypervisorStream:
        try:
            return open_one([STREAM, at, size, *rest])[1]
        except libvirt.libvirtError as exc:  # looking the volume up again
            raise _failed(exc) from exc

    result, first = open_one([STREAM, offset, size, *rest])
    return result, SegmentedDownload(segment, first, offset, length, size)


def open_stream(conn: Any, call: Callable[..., Any], args: Sequence[Any], sparse: bool) -> Tuple[Any, LibvirtStream]:
    """Call ``call`` (a bound binding method) with a new virStream where ``args`` hold STREAM."""
    stream = conn.newStream(0)
    opened = LibvirtStream(stream, sparse)
    try:
        result = call(*[stream if a is STREAM else a for a in args])
    except libvirt.libvirtError as exc:
        opened.abort()
        raise _failed(exc) from exc
    except BaseException:
        opened.abort()
        raise
    return result, opened
