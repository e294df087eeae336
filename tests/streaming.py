"""Streams where libvirt's test driver has none: volume content in local files, a console that echoes.

libvirt's test driver takes screenshots and peeks at memory, but has no virStorageVolDownload/Upload and no
virDomainOpenConsole (VIR_ERR_NO_SUPPORT). :class:`FileStreams` wraps a real hypervisor (the test driver)
and serves those three from local files and an in-process echo, behind the same HypervisorStream interface
libvirt's streams use: everything else (the agent, the wire, the console) is the real thing.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from virtq.agent.hypervisor import STREAM, ForwardingHypervisor, Hypervisor, HypervisorError, HypervisorStream

__all__ = ["EchoStream", "FileStream", "FileStreams"]


class FileStream(HypervisorStream):
    """A volume's file read (download) or written (upload) from ``offset``, at most ``length`` bytes (0: all)."""

    def __init__(self, path: Path, offset: int, length: int, write: bool, sparse: bool) -> None:
        self.file = open(path, "r+b" if write else "rb")  # noqa: SIM115 - closed by finish/abort
        self.file.seek(offset)
        self.left = length or None
        self.sparse = sparse
        self.finished = self.aborted = False
        self.holes = 0  # sent or skipped as holes

    def recv(self, nbytes: int) -> Union[bytes, int]:
        n = nbytes if self.left is None else min(nbytes, self.left)
        data = self.file.read(n)
        if self.left is not None:
            self.left -= len(data)
        if self.sparse and data and not data.strip(b"\0"):
            self.holes += 1
            return len(data)
        return data

    def send(self, data: bytes) -> None:
        self.file.write(data)

    def send_hole(self, length: int) -> None:
        self.holes += 1
        self.file.seek(length, os.SEEK_CUR)

    def finish(self) -> None:
        self.file.close()
        self.finished = True

    def abort(self) -> None:
        self.file.close()
        self.aborted = True


class EchoStream(HypervisorStream):
    """A serial console whose guest echoes every line it is sent."""

    def __init__(self) -> None:
        self.output: "queue.Queue[bytes]" = queue.Queue()
        self.aborted = threading.Event()

    def recv(self, nbytes: int) -> Union[bytes, int]:
        while not self.aborted.is_set():
            try:
                return self.output.get(timeout=0.1)[:nbytes]
            except queue.Empty:
                continue
        raise HypervisorError(1, "stream aborted")

    def send(self, data: bytes) -> None:
        self.output.put(data)

    def send_hole(self, length: int) -> None:
        raise HypervisorError(3, "a console has no holes")

    def finish(self) -> None:
        self.aborted.set()

    def abort(self) -> None:
        self.aborted.set()


class FileStreams(ForwardingHypervisor):
    """``inner`` with volume downloads and uploads from files under ``directory`` (one per volume key, made on
    first use with ``size`` bytes of ``fill``) and consoles that echo. The streams it opened are kept in
    ``opened`` for tests to look at."""

    def __init__(self, inner: Hypervisor, directory: Path, size: int = 1024 * 1024, fill: bytes = b"") -> None:
        super().__init__(inner)
        self.directory = directory
        self.size = size
        self.fill = fill
        self.opened: Dict[str, HypervisorStream] = {}

    def path(self, key: str) -> Path:
        path = self.directory / key.strip("/").replace("/", "_")
        if not path.exists():
            pattern = self.fill or bytes(range(256))
            path.write_bytes((pattern * (self.size // len(pattern) + 1))[:self.size])
        return path

    def open_stream(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
                    sparse: bool = False) -> Tuple[Any, HypervisorStream]:
        values = [a for a in args if a is not STREAM]
        stream: HypervisorStream
        if function in ("virStorageVolDownload", "virStorageVolUpload") and key is not None:
            offset, length = values[0], values[1]
            stream = FileStream(self.path(key), offset, length, function.endswith("Upload"), sparse)
        elif function == "virDomainOpenConsole":
            stream = EchoStream()
        else:
            return self.inner.open_stream(class_name, key, function, args, sparse)
        self.opened[function] = stream
        return None, stream
