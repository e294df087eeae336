"""A listener under floods and hostile peers (docs/ROBUSTNESS.md §2): it refuses what passes its limits,
keeps serving, and never dies of it. Each test runs a DirectListener in a process of its own
(listener_proc.py) so its connections and memory are its own; floods are plain sockets, since proton's
select() in this process could not poll them."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from proton import Connection as ProtonConnection
from proton import Endpoint, Message, Transport
from proton.handlers import MessagingHandler
from proton.reactor import Container
from proton.utils import BlockingConnection, LinkDetached

from virtq.schema.codec import TOPIC
from virtq.transport._limits import MESSAGE_SIZE_EXCEEDED, RESOURCE_LIMIT, RESOURCE_LOCKED

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Served:
    """A listener process: its port, its stats, its end."""

    def __init__(self, limits: Dict[str, Any]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.listener_proc", json.dumps(limits)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), line
        self.port = int(line.split()[1])
        self.url = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("stats\n")
            self.proc.stdin.flush()
            return dict(json.loads(self.proc.stdout.readline()))

    def wait_stats(self, predicate: Any, timeout: float = 10.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - the process is gone or stuck: end it
            self.proc.kill()
            self.proc.wait(5)
        finally:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()


@contextlib.contextmanager
def served(**limits: Any) -> Iterator[Served]:
    process = Served(limits)
    try:
        yield process
    finally:
        process.close()


@contextlib.contextmanager
def enough_descriptors(n: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def amqp_open_bytes() -> bytes:
    """What a client sends to open AMQP (protocol header and open frame), made with proton in memory."""
    connection = ProtonConnection()
    connection.container = f"flood-{uuid.uuid4().hex[:8]}"
    transport = Transport()
    transport.bind(connection)
    connection.open()
    data = transport.peek(transport.pending())
    assert data
    return bytes(data)


def flood(port: int, n: int, payload: bytes = b"") -> List[socket.socket]:
    socks = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if payload:
            with contextlib.suppress(OSError):
                sock.sendall(payload)
        socks.append(sock)
    return socks


class LowDescriptors:
    """Keeps a few low descriptors for this process's own proton clients while a flood holds the rest
    (proton's select() cannot poll descriptors >= 1024): give one back just before connecting."""

    def __init__(self, n: int = 48) -> None:
        self.held = [socket.socket() for _ in range(n)]

    def release(self, n: int = 8) -> None:
        for _ in range(min(n, len(self.held))):
            self.held.pop().close()

    def close(self) -> None:
        while self.held:
            self.held.pop().close()


def echo(url: str, timeout: float = 3.0) -> bool:
    """True if the listener answers a request; False if it refused the connection."""
    try:
        connection = BlockingConnection(url, timeout=timeout)
    except Exception:  # noqa: BLE001 - refused at accept, or closed: politely refused
        return False
    try:
        receiver = connection.create_receiver(None, dynamic=True, credit=4)
        sender = connection.create_sender("qmf.default.direct/echo")
        reply_to = receiver.link.remote_source.address
        sender.send(Message(body={"ping": 1}, reply_to=reply_to, correlation_id="c1"))
        reply = receiver.receive(timeout=timeout)
        receiver.accept()
        return bool(reply.correlation_id == "c1")
    except Exception:  # noqa: BLE001
        return False
    finally:
        with contextlib.suppress(Exception):
            connection.close()


# --- connection floods ------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", amqp_open_bytes()], ids=["bare-tcp", "idle-amqp"])
def test_a_flood_of_1100_connections_is_refused_and_the_listener_serves_again(payload: bytes) -> None:
    with enough_descriptors(4096), served(handshake_timeout=60.0) as listener:
        low = LowDescriptors()
        assert echo(listener.url)
        socks = flood(listener.port, 1100, payload)
        try:
            stats = listener.wait_stats(lambda s: s["held"] + s["refused"] >= 1100)
            assert stats["alive"] and stats["held"] <= 900 and stats["refused"] >= 200, stats
            low.release()
            served_during = echo(listener.url)  # served or politely refused: either way an answer, not a hang
            assert isinstance(served_during, bool)
        finally:
            for sock in socks:
                sock.close()
            low.close()
        stats = listener.wait_stats(lambda s: s["held"] == 0)
        assert stats["held"] == 0 and stats["alive"], stats
        assert echo(listener.url)


def test_half_open_connections_are_closed_by_the_handshake_deadline() -> None:
    with served(handshake_timeout=1.0) as listener:
        socks = flood(listener.port, 400)
        try:
            stats = listener.wait_stats(lambda s: s["expired"] >= 400, timeout=10.0)
            assert stats["expired"] == 400 and stats["held"] == 0 and stats["alive"], stats
            for sock in socks[:20]:
                sock.settimeout(2.0)
                assert sock.recv(16) == b""  # closed by the listener
        finally:
            for sock in socks:
                sock.close()
        assert echo(listener.url)


# --- a message too large ------------------------------------------------------------------------

class _Streamer(MessagingHandler):
    """Sends one message of ``size`` bytes (a data section) in 1 MiB chunks, never holding it whole."""

    CHUNK = 1024 * 1024

    def __init__(self, url: str, size: int) -> None:
        super().__init__()
        self.url = url
        self.size = size
        self.sent = 0
        self.condition: Optional[str] = None
        self.closed = False
        self.sender: Any = None
        self.deadline = time.monotonic() + 30

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        self.sender = event.container.create_sender(connection, "qmf.default.direct/echo")

    def on_sendable(self, event: Any) -> None:
        if self.sent == 0:
            self.sender.delivery(self.sender.delivery_tag())
            header = Message(reply_to="nowhere", correlation_id="big").encode()
            self.sender.stream(header + b"\x00\x53\x75\xb0" + self.size.to_bytes(4, "big"))
            self.sent = 1
            event.container.schedule(0.0, self)

    def on_timer_task(self, event: Any) -> None:
        if self.closed or time.monotonic() > self.deadline:
            event.container.stop()
            return
        if self.sent < self.size and self.sender.session.outgoing_bytes < 4 * self.CHUNK:
            chunk = min(self.CHUNK, self.size - self.sent)
            self.sender.stream(b"\x00" * chunk)
            self.sent += chunk
        event.container.schedule(0.002, self)

    def _end(self, event: Any, condition: Any) -> None:
        if condition is not None:
            self.condition = condition.name
        self.closed = True
        event.container.stop()

    def on_connection_remote_close(self, event: Any) -> None:
        self._end(event, event.connection.remote_condition)

    def on_transport_error(self, event: Any) -> None:
        self._end(event, event.transport.condition)

    def on_disconnected(self, event: Any) -> None:
        self._end(event, None)


def test_a_256_mib_message_is_refused_while_it_arrives() -> None:
    with served() as listener:
        before = listener.stats()["rss_kib"]
        streamer = _Streamer(listener.url, 256 * 1024 * 1024)
        Container(streamer).run()
        after = listener.stats()
        assert streamer.closed and streamer.condition == MESSAGE_SIZE_EXCEEDED, streamer.condition
        assert streamer.sent < 64 * 1024 * 1024  # it was stopped early, not after all of it
        assert (after["rss_kib"] - before) < 50 * 1024, (before, after)
        assert after["alive"] and after["received"] == 0
        assert echo(listener.url)


# --- a peer that grants no credit -----------------------------------------------------------------

def test_a_reply_link_without_credit_is_closed_and_its_memory_comes_back() -> None:
    with served() as listener:
        assert echo(listener.url)
        before = listener.stats()["rss_kib"]
        connection = BlockingConnection(listener.url, timeout=10)
        try:
            receiver = connection.create_receiver(None, dynamic=True, credit=0)
            reply_to = receiver.link.remote_source.address
            sender = connection.create_sender("qmf.default.direct/echo")
            link = receiver.link
            # 2,000 replies of 100 KB: 200 MB held before the limits, a closed link after 16 MiB now.
            # LinkDetached is how BlockingConnection says the listener closed the link.
            with contextlib.suppress(LinkDetached):
                sender.send(Message(subject="bulk", properties={"n": 2000, "size": 100_000}, reply_to=reply_to,
                                    body=None))
            with contextlib.suppress(LinkDetached):
                connection.wait(lambda: bool(link.state & Endpoint.REMOTE_CLOSED), timeout=10)
            assert link.state & Endpoint.REMOTE_CLOSED
            assert link.remote_condition is not None and link.remote_condition.name == RESOURCE_LIMIT
        finally:
            with contextlib.suppress(Exception):
                connection.close()
        after = listener.wait_stats(lambda s: s["held"] == 0)
        assert after["alive"] and (after["rss_kib"] - before) < 8 * 1024, (before, after)  # measured: +0.02 MB
        assert echo(listener.url)


# --- subscriptions ---------------------------------------------------------------------------------

class _Subscriber(MessagingHandler):
    """Attaches ``n`` topic receivers on one connection at once; counts those opened and refused."""

    def __init__(self, url: str, n: int, cap: int) -> None:
        super().__init__(prefetch=0)
        self.url, self.n, self.cap = url, n, cap
        self.opened = 0
        self.refused = 0
        self.conditions: set[str] = set()

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        for i in range(self.n):
            event.container.create_receiver(connection, f"{TOPIC}/agent.{i}", name=f"sub-{i}")
        event.container.schedule(20, self)

    def _done(self, event: Any) -> None:
        if self.opened >= self.n and self.opened - self.refused <= self.cap:
            event.connection.close()

    def on_link_opened(self, event: Any) -> None:
        self.opened += 1
        self._done(event)

    def on_link_remote_close(self, event: Any) -> None:
        self.refused += 1
        if event.link.remote_condition is not None:
            self.conditions.add(event.link.remote_condition.name)
        event.link.close()
        self._done(event)

    def on_link_opening(self, event: Any) -> None:  # opened remotely first: not for a receiver we attach
        pass

    def on_link_error(self, event: Any) -> None:
        pass

    def on_connection_closed(self, event: Any) -> None:
        event.container.stop()

    def on_timer_task(self, event: Any) -> None:
        event.container.stop()


def test_5000_subscriptions_are_refused_beyond_the_cap() -> None:
    with served(max_subscriptions=32) as listener:
        subscriber = _Subscriber(listener.url, 5000, 32)
        started = time.monotonic()
        Container(subscriber).run()
        # A refused link is attached, then closed at once with its reason.
        assert (subscriber.opened, subscriber.refused) == (5000, 5000 - 32)
        assert subscriber.conditions == {RESOURCE_LIMIT}
        assert time.monotonic() - started < 20
        stats = listener.stats()
        assert stats["alive"] and stats["refused_links"] >= 5000 - 32
        assert echo(listener.url)


# --- reply addresses ---------------------------------------------------------------------------------

def test_a_named_reply_address_cannot_be_taken_over_by_another_connection() -> None:
    with served() as listener:
        owner = BlockingConnection(listener.url, timeout=5)
        thief = BlockingConnection(listener.url, timeout=5)
        try:
            address = f"console-{uuid.uuid4().hex}"
            mine = owner.create_receiver(address, credit=4)
            with pytest.raises(LinkDetached, match=RESOURCE_LOCKED):
                thief.create_receiver(address, credit=4)
            sender = owner.create_sender("qmf.default.direct/echo")
            sender.send(Message(body={"ping": 2}, reply_to=address, correlation_id="c2"))
            assert mine.receive(timeout=5).correlation_id == "c2"  # the replies still come to their owner
            mine.accept()
        finally:
            for connection in (thief, owner):
                with contextlib.suppress(Exception):
                    connection.close()
