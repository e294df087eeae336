"""The stream state machine (docs/PROTOCOL.md §14): each end's bookkeeping, and the agent's end driving a
libvirt stream — window, checksum, cancel from either side, stall abort.

libvirt's stream is an in-memory one here (the test driver has no volume streams; tests/integration runs
the same over real proton); the clock is a counter, so a stall needs no sleeping.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import pytest

from virtq.agent.hypervisor import STREAM, HypervisorError, HypervisorStream
from virtq.agent.streams import AgentStreams
from virtq.console._streams import ClientStream, Streams
from virtq.schema import default_schema, errors
from virtq.schema.codec import (STREAM as STREAM_PROPERTY, ExceptionResponse, Message, MethodRequest, ObjectId,
                                StreamControl, StreamData, WireMessage, decode)
from virtq.schema.streams import CRC32, DOWNLOAD, SHA256, UPLOAD, Descriptor, Receiver, Sender
from virtq.transport._convert import roundtrip

SCHEMA = default_schema()
DOWNLOAD_METHOD = SCHEMA.cls("Volume").methods["download"]
UPLOAD_METHOD = SCHEMA.cls("Volume").methods["upload"]
REPLY = "reply-test"


def sent(sender: Sender, data: bytes = b"", hole: int = 0) -> StreamData:
    """A chunk as the agent's and the console's senders make one: counted, then taken against credit."""
    sender.count(data, hole)
    return sender.chunk(data, hole)


# --- the two ends on their own ------------------------------------------------------------------

def test_sender_and_receiver_agree_on_bytes_and_sha256() -> None:
    sender, receiver = Sender("s1", chunk=4, window=2), Receiver("s1", chunk=4, window=2)
    sender.grant(receiver.first_grant())
    for piece in (b"abcd", b"ef"):
        receiver.accept(sent(sender, piece))
    assert receiver.verify(sender.end()) == 6
    assert sender.end().values == {"bytes": 6, "sha256": hashlib.sha256(b"abcdef").hexdigest()}


def test_a_hole_counts_as_zeros() -> None:
    sender = Sender("s1", window=1)
    sender.grant(1)
    sent(sender, hole=3 * 1024 * 1024 + 1)
    assert sender.end().values["sha256"] == hashlib.sha256(bytes(3 * 1024 * 1024 + 1)).hexdigest()


def test_the_sender_never_exceeds_its_credit() -> None:
    sender = Sender("s1", window=2)
    sender.grant(2)
    sent(sender, b"a")
    sent(sender, b"b")
    with pytest.raises(AssertionError):
        sent(sender, b"c")
    with pytest.raises(errors.StreamAbortedError, match="bad credit"):
        sender.grant(3)  # a receiver granting beyond its window is broken
    with pytest.raises(errors.StreamAbortedError):
        sender.grant(-1)


def test_the_receiver_refuses_chunks_beyond_its_window_or_out_of_order() -> None:
    receiver = Receiver("s1", window=2)
    receiver.first_grant()
    receiver.accept(StreamData(stream="s1", seq=0, data=b"a"))
    with pytest.raises(errors.StreamAbortedError, match="out of order"):
        receiver.accept(StreamData(stream="s1", seq=2, data=b"c"))
    receiver.accept(StreamData(stream="s1", seq=1, data=b"b"))
    with pytest.raises(errors.StreamAbortedError, match="beyond the credit"):
        receiver.accept(StreamData(stream="s1", seq=2, data=b"c"))


def test_credit_comes_back_in_batches_of_half_the_window() -> None:
    receiver = Receiver("s1", window=8)
    assert receiver.first_grant() == 8
    for seq in range(8):
        receiver.accept(StreamData(stream="s1", seq=seq, data=b"x"))
    assert [receiver.consumed() for _ in range(8)] == [0, 0, 0, 4, 0, 0, 0, 4]
    assert receiver.outstanding == 8


def test_a_checksum_mismatch_is_typed() -> None:
    receiver = Receiver("s1", window=1)
    receiver.first_grant()
    receiver.accept(StreamData(stream="s1", seq=0, data=b"abc"))
    with pytest.raises(errors.StreamChecksumError, match="received 3 bytes"):
        receiver.verify(StreamControl(stream="s1", op="end", values={"bytes": 3, "sha256": "0" * 64}))
    assert errors.remote_error(errors.STATUS_STREAM_CHECKSUM, "x").__class__ is errors.StreamChecksumError
    assert errors.remote_error(errors.STATUS_STREAM_ABORTED, "x").__class__ is errors.StreamAbortedError


def test_stream_messages_survive_amqp() -> None:
    for message in (StreamData(stream="s1", seq=3, data=bytes(range(256))), StreamData(stream="s1", seq=4, hole=9),
                    StreamControl(stream="s1", op="credit", values={"credit": 4})):
        wire = roundtrip(message.encode(REPLY))
        assert decode(wire) == message


@pytest.mark.parametrize("properties,body", [({STREAM_PROPERTY: "s1"}, b"x"),  # no sequence number
                                             ({STREAM_PROPERTY: "s1", "qmf.seq": 0}, "text"),
                                             ({STREAM_PROPERTY: "s1", "qmf.seq": 0, "qmf.hole": 5}, b"x")])
def test_malformed_chunks_are_refused(properties: Any, body: Any) -> None:
    properties = {"qmf.opcode": "_stream_data", **properties}
    with pytest.raises(errors.ProtocolError):
        decode(WireMessage(REPLY, properties, body))


# --- the agent's end -----------------------------------------------------------------------------

class MemoryStream(HypervisorStream):
    """libvirt's stream as bytes in memory: what a download reads, what an upload wrote."""

    def __init__(self, content: bytes = b"") -> None:
        self.source = io.BytesIO(content)
        self.written = bytearray()
        self.finished = self.aborted = False
        self.reads = 0
        self.gate = threading.Event()  # cleared: writes wait (a slow disk)
        self.gate.set()

    def recv(self, nbytes: int) -> Union[bytes, int]:
        self.reads += 1
        return self.source.read(nbytes)

    def send(self, data: bytes) -> None:
        self.gate.wait(5)
        self.written += data

    def send_hole(self, length: int) -> None:
        self.written += bytes(length)

    def finish(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.aborted = True


class Hypervisor:
    def __init__(self, stream: MemoryStream) -> None:
        self.stream = stream
        self.args: Sequence[Any] = ()

    def open_stream(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
                    sparse: bool = False) -> Tuple[Any, HypervisorStream]:
        self.args = args
        return None, self.stream


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Agent:
    """An AgentStreams with what it sent collected, decoded."""

    def __init__(self, content: bytes = b"", window: int = 4, chunk: int = 4) -> None:
        self.stream = MemoryStream(content)
        self.hypervisor = Hypervisor(self.stream)
        self.sent: List[WireMessage] = []
        self.arrived = threading.Condition()
        self.clock = Clock()
        self.pool = ThreadPoolExecutor(2)
        self.streams = AgentStreams(self.hypervisor, self._send, "agent", self.pool,  # type: ignore[arg-type]
                                    chunk=chunk, window=window, idle=30.0, clock=self.clock)

    def _send(self, wire: WireMessage) -> None:
        with self.arrived:
            self.sent.append(wire)
            self.arrived.notify_all()

    def open(self, method: Any = DOWNLOAD_METHOD, checksums: str = "") -> Descriptor:
        request = roundtrip_request(MethodRequest(object_id=ObjectId("Volume:/v"), method_name=method.name,
                                                  reply_to=REPLY, stream_checksums=checksums))
        wire = self.streams.open(request, None, "Volume", "/v", method, [0, 0, 0])
        return Descriptor.from_wire(wire)

    def peer(self, message: Message) -> None:
        """What the console sends, as the transport hands it over."""
        self.streams.deliver(roundtrip(message.encode("qmf.default.direct/agent")))

    def wait(self, predicate: Callable[[List[Message]], bool], timeout: float = 5.0) -> List[Message]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: predicate(self.messages()), timeout), self.messages()
        return self.messages()

    def messages(self) -> List[Message]:
        return [decode(w) for w in self.sent]


@pytest.fixture
def agent() -> Iterator[Agent]:
    made = Agent(bytes(range(10)) * 3)
    yield made
    made.pool.shutdown()


def chunks(messages: List[Message]) -> List[StreamData]:
    return [m for m in messages if isinstance(m, StreamData)]


def test_a_download_sends_nothing_before_credit_and_never_more_than_granted(agent: Agent) -> None:
    descriptor = agent.open()
    assert descriptor.direction == DOWNLOAD and descriptor.credit == 0
    assert agent.hypervisor.args[0] is STREAM  # the binding's stream parameter, filled by the adapter
    time.sleep(0.05)
    assert agent.sent == [] and agent.stream.reads == 0
    agent.peer(StreamControl(stream=descriptor.id, op="credit", values={"credit": 2}))
    agent.wait(lambda m: len(chunks(m)) == 2)
    time.sleep(0.05)
    assert len(chunks(agent.messages())) == 2 and agent.stream.reads == 2  # nothing read ahead of credit
    for granted in (4, 6, 8):  # 30 bytes in chunks of 4: 8 chunks; the end is read with the next credit
        agent.peer(StreamControl(stream=descriptor.id, op="credit", values={"credit": 2}))
        agent.wait(lambda m: len(chunks(m)) == granted)
    agent.peer(StreamControl(stream=descriptor.id, op="credit", values={"credit": 1}))
    messages = agent.wait(lambda m: any(isinstance(x, StreamControl) and x.op == "end" for x in m))
    data = b"".join(c.data for c in chunks(messages))
    assert data == bytes(range(10)) * 3
    assert messages[-1] == StreamControl(stream=descriptor.id, op="end", agent="agent",
                                         values={"bytes": 30, "sha256": hashlib.sha256(data).hexdigest()})
    assert agent.stream.finished and not agent.stream.aborted and agent.streams.open_streams() == []


def test_cancel_from_the_console_aborts_libvirt_s_stream(agent: Agent) -> None:
    descriptor = agent.open()
    agent.peer(StreamControl(stream=descriptor.id, op="cancel", values={"reason": "KeyboardInterrupt"}))
    assert agent.stream.aborted and agent.streams.open_streams() == []
    agent.peer(StreamControl(stream=descriptor.id, op="credit", values={"credit": 2}))  # too late: ignored
    time.sleep(0.05)
    assert agent.sent == []


def test_a_stalled_stream_is_aborted_and_its_peer_told(agent: Agent) -> None:
    descriptor = agent.open()
    agent.clock.now += 29.0
    assert agent.streams.abort_stalled() == 0
    agent.clock.now += 2.0
    assert agent.streams.abort_stalled() == 1
    assert agent.stream.aborted and agent.streams.stalled == 1
    (wire,) = agent.sent
    assert wire.properties[STREAM_PROPERTY] == descriptor.id and wire.address == REPLY
    error = decode(wire)
    assert isinstance(error, ExceptionResponse) and error.error_code == errors.STATUS_STREAM_ABORTED
    assert "stalled: no progress from its peer for 30 s" in error.error_text


def test_an_upload_is_written_as_it_comes_and_finished_after_a_matching_end(agent: Agent) -> None:
    descriptor = agent.open(UPLOAD_METHOD)
    assert descriptor.direction == UPLOAD and descriptor.credit == 4
    sender = Sender(descriptor.id, chunk=4, window=4)
    sender.grant(descriptor.credit)
    for piece in (b"abcd", b"efgh"):
        agent.peer(sent(sender, piece))
    agent.peer(sender.end())
    messages = agent.wait(lambda m: any(isinstance(x, StreamControl) and x.op == "done" for x in m))
    assert bytes(agent.stream.written) == b"abcdefgh" and agent.stream.finished
    assert messages[-1] == StreamControl(stream=descriptor.id, op="done", agent="agent", values={"bytes": 8})


def roundtrip_request(request: MethodRequest) -> MethodRequest:
    """As the agent's dispatcher gets it: through AMQP and virtq's decode."""
    decoded = decode(roundtrip(request.encode("qmf.default.direct/agent")))
    assert isinstance(decoded, MethodRequest)
    return decoded


@pytest.mark.parametrize("asked, agreed", [
    ("crc32,sha256", CRC32), ("sha256,crc32", SHA256), ("", SHA256),  # "": a QMF client or an older console
    ("md5,crc32", CRC32), ("md5", SHA256),
])
def test_the_agent_takes_the_first_checksum_it_knows_of_those_asked(agent: Agent, asked: str, agreed: str) -> None:
    assert agent.open(UPLOAD_METHOD, asked).checksum == agreed


def test_an_upload_with_crc32_ends_with_crc32(agent: Agent) -> None:
    descriptor = agent.open(UPLOAD_METHOD, "crc32,sha256")
    sender = Sender.of(descriptor)
    sender.grant(descriptor.credit)
    agent.peer(sent(sender, b"abcd"))
    end = sender.end()
    assert end.values == {"bytes": 4, "crc32": f"{zlib.crc32(b'abcd'):08x}"}
    agent.peer(end)
    agent.wait(lambda m: any(isinstance(x, StreamControl) and x.op == "done" for x in m))
    assert agent.stream.finished


def test_a_checksum_the_receiver_did_not_agree_to_is_a_mismatch() -> None:
    """An end with sha256 where crc32 was agreed (or none where sha256 was): typed, never taken as a match."""
    receiver = Receiver("s1", window=1, checksum=CRC32)
    receiver.first_grant()
    receiver.accept(StreamData(stream="s1", seq=0, data=b"abc"))
    sha = hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(errors.StreamChecksumError, match="with crc32"):
        receiver.verify(StreamControl(stream="s1", op="end", values={"bytes": 3, "sha256": sha}))


def test_a_description_names_its_checksum_or_means_sha256() -> None:
    wire = Descriptor("s-1", DOWNLOAD, checksum=CRC32).to_wire()
    assert wire["checksum"] == "crc32" and Descriptor.from_wire(wire).checksum == CRC32
    older = {k: v for k, v in wire.items() if k != "checksum"}  # an agent before checksums were agreed
    assert Descriptor.from_wire(older).checksum == SHA256
    with pytest.raises(errors.ProtocolError):
        Descriptor.from_wire({**wire, "checksum": "md5"})


def test_an_upload_with_a_wrong_checksum_is_aborted_not_finished(agent: Agent) -> None:
    descriptor = agent.open(UPLOAD_METHOD)
    agent.peer(StreamData(stream=descriptor.id, seq=0, data=b"abcd"))
    agent.peer(StreamControl(stream=descriptor.id, op="end", values={"bytes": 4, "sha256": "0" * 64}))
    messages = agent.wait(lambda m: any(isinstance(x, ExceptionResponse) for x in m))
    assert messages[-1].error_code == errors.STATUS_STREAM_CHECKSUM  # type: ignore[attr-defined]
    assert agent.stream.aborted and not agent.stream.finished


def test_an_upload_beyond_the_window_is_aborted(agent: Agent) -> None:
    descriptor = agent.open(UPLOAD_METHOD)
    agent.stream.gate.clear()  # libvirt writes slowly: no credit comes back meanwhile
    for seq in range(5):  # the window is 4
        agent.peer(StreamData(stream=descriptor.id, seq=seq, data=b"x"))
    messages = agent.wait(lambda m: any(isinstance(x, ExceptionResponse) for x in m))
    assert "beyond the credit granted" in messages[-1].error_text  # type: ignore[attr-defined]
    assert agent.stream.aborted
    agent.stream.gate.set()


def test_only_the_opener_may_feed_a_stream(agent: Agent) -> None:
    descriptor = agent.open()
    wire = roundtrip(StreamControl(stream=descriptor.id, op="cancel").encode("qmf.default.direct/agent"))
    agent.streams.deliver(WireMessage(wire.address, wire.properties, wire.body, principal="mallory"))
    assert not agent.stream.aborted and len(agent.streams.open_streams()) == 1


def test_the_agent_s_limit_on_open_streams(agent: Agent) -> None:
    agent.streams.max_streams = 1
    agent.open()
    with pytest.raises(errors.ObjectBusyError, match="1 streams open"):
        agent.open()


def test_a_libvirt_failure_is_the_peer_s_typed_error(agent: Agent) -> None:
    descriptor = agent.open()

    def broken(nbytes: int) -> bytes:
        raise HypervisorError(38, "Unable to read from monitor")

    agent.stream.recv = broken  # type: ignore[method-assign]
    agent.peer(StreamControl(stream=descriptor.id, op="credit", values={"credit": 1}))
    messages = agent.wait(lambda m: any(isinstance(x, ExceptionResponse) for x in m))
    assert messages[-1].error_code == errors.STATUS_USER + 38  # type: ignore[attr-defined]
    assert agent.stream.aborted


# --- the console's end ----------------------------------------------------------------------------

class Transport:
    reply_address = REPLY

    def __init__(self) -> None:
        self.sent: List[Message] = []

    def send(self, wire: WireMessage) -> None:
        self.sent.append(decode(wire))


def client(direction: str = DOWNLOAD) -> Tuple[ClientStream, Transport]:
    transport = Transport()
    streams = Streams(lambda *a: (None, None), lambda agent: transport)  # type: ignore[arg-type,return-value]
    descriptor = Descriptor("s1", direction, chunk=4, window=2, idle=0.2, credit=2 if direction == UPLOAD else 0)
    return ClientStream(streams, transport, "agent", descriptor, "test"), transport  # type: ignore[arg-type]


def test_the_console_refuses_a_download_whose_checksum_does_not_match() -> None:
    stream, transport = client()
    stream.put(StreamData(stream="s1", seq=0, data=b"abc"))
    stream.put(StreamControl(stream="s1", op="end", values={"bytes": 3, "sha256": hashlib.sha256(b"abd").hexdigest()}))
    with pytest.raises(errors.StreamChecksumError):
        stream.download(io.BytesIO())
    assert transport.sent[0] == StreamControl(stream="s1", op="credit", values={"credit": 2}, reply_to=REPLY)
    assert [m for m in transport.sent if isinstance(m, StreamControl) and m.op == "cancel"] == []


def test_the_console_raises_the_agent_s_error_and_does_not_cancel_back() -> None:
    stream, transport = client()
    stream.put(ExceptionResponse(error_code=errors.STATUS_STREAM_ABORTED, error_text="stalled", correlation_id="s1"))
    with pytest.raises(errors.StreamAbortedError, match="stalled"):
        stream.download(io.BytesIO())
    stream.cancel("after the error")
    assert [m for m in transport.sent if isinstance(m, StreamControl) and m.op == "cancel"] == []


def test_an_upload_waits_for_credit_and_gives_up_when_none_comes() -> None:
    stream, transport = client(UPLOAD)
    stream.wait = 0.2
    with pytest.raises(errors.StreamAbortedError, match="no credit from the agent"):
        stream.upload(io.BytesIO(b"0123456789ab"))  # 3 chunks, credit for 2
    assert [m.seq for m in transport.sent if isinstance(m, StreamData)] == [0, 1]


# --- a volume download in segments (libvirt's client queues whatever libvirtd sends) -----------------------

@pytest.mark.parametrize("content, offset, length", [(bytes(range(10)), 0, 0), (bytes(range(8)), 0, 0),
                                                     (bytes(range(10)), 1, 6), (b"", 0, 0)])
def test_a_download_is_read_in_segments(monkeypatch: pytest.MonkeyPatch, content: bytes, offset: int,
                                        length: int) -> None:
    from virtq.agent import libvirt_streams
    monkeypatch.setattr(libvirt_streams, "SEGMENT_BYTES", 4)
    opened: List[Tuple[int, int]] = []

    def open_one(args: Sequence[Any]) -> Tuple[Any, HypervisorStream]:
        at, size = args[1], args[2]
        opened.append((at, size))
        return 0, MemoryStream(content[at:at + size])

    _, stream = libvirt_streams.open_segmented("virStorageVolDownload", [STREAM, offset, length, 0], open_one)
    got = b""
    while piece := stream.recv(3):
        assert isinstance(piece, bytes)
        got += piece
    assert got == (content[offset:offset + length] if length else content[offset:])
    assert all(size <= 4 for _, size in opened) and [at for at, _ in opened] == list(range(offset, offset + 4 *
                                                                                         len(opened), 4))


def test_a_lost_connection_fails_the_console_s_streams_at_once() -> None:
    stream, _ = client()
    threading.Timer(0.05, stream.lost, (errors.NotConnectedError("connection lost"),)).start()
    started = time.monotonic()
    with pytest.raises(errors.NotConnectedError, match="connection lost"):
        stream.download(io.BytesIO())
    assert time.monotonic() - started < stream.wait
