"""A bare proton echo on loopback: the round trip of the wire and proton alone, the baseline virtq's hops are
measured against (bench/event_latency, issue 12).

Two processes, each a ``MessagingHandler`` on its own reactor (``proton.reactor.Container``): the echo process
listens and sends every message it receives back to its reply-to address; the caller's side connects, sends
one message, waits for its echo, sends the next — ``count`` round trips after ``warmup`` — and times each from
just before ``send`` to its echo's ``on_message``. No virtq code on either side.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Dict, List

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

from virtq.testing import free_port, port_open, wait_until

__all__ = ["echo_rtts"]

ADDRESS = "echo"
REPLY = "echo-reply"
BODY = {"_what": "OBJECT", "_object_id": {"_object_name": "Domain:6695eb01-f6a4-8304-79aa-97f2502e193f"}}
"""About the size of a small QMF request."""


class _EchoServer(MessagingHandler):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.replies: Dict[str, Any] = {}  # reply address -> the sender link attached to it

    def on_start(self, event: Any) -> None:
        event.container.listen(self.url)

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            link.source.address = link.remote_source.address
            self.replies[link.remote_source.address] = link
        else:
            link.target.address = link.remote_target.address

    def on_transport_error(self, event: Any) -> None:
        """Quiet: the caller's readiness probe connects and leaves without speaking AMQP."""

    def on_message(self, event: Any) -> None:
        link = self.replies.get(event.message.reply_to)
        if link is not None:
            link.send(Message(body=event.message.body, correlation_id=event.message.correlation_id))


class _EchoClient(MessagingHandler):
    def __init__(self, url: str, count: int, warmup: int, timeout: float) -> None:
        super().__init__()
        self.url = url
        self.count = count
        self.warmup = warmup
        self.timeout = timeout
        self.rtts: List[float] = []  # milliseconds
        self._sent = 0
        self._started = 0
        self._sender: Any = None
        self._receiver_open = False
        self._waiting = False

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url)
        event.container.schedule(self.timeout, self)  # on_timer_task: give up on an echo that stopped
        self._sender = event.container.create_sender(connection, ADDRESS)
        event.container.create_receiver(connection, REPLY)

    def on_link_opened(self, event: Any) -> None:
        if event.receiver is not None:
            self._receiver_open = True
            self._next()

    def on_sendable(self, event: Any) -> None:
        self._next()

    def _next(self) -> None:
        if self._waiting or not self._receiver_open or self._sender is None or self._sender.credit <= 0:
            return
        self._waiting = True
        self._sent += 1
        self._started = time.perf_counter_ns()
        self._sender.send(Message(body=BODY, reply_to=REPLY, correlation_id=str(self._sent)))

    def on_timer_task(self, event: Any) -> None:
        if self._sender is not None:
            self._sender.connection.close()

    def on_connection_closed(self, event: Any) -> None:
        event.container.stop()

    def on_message(self, event: Any) -> None:
        arrived = time.perf_counter_ns()
        self._waiting = False
        if self._sent > self.warmup:
            self.rtts.append((arrived - self._started) / 1e6)
        if len(self.rtts) >= self.count:
            event.connection.close()
            return
        self._next()


def _serve(url: str) -> None:
    """The echo process's entry point (multiprocessing, spawn): serves until killed."""
    Container(_EchoServer(url)).run()


def echo_rtts(count: int = 500, warmup: int = 20, timeout: float = 30.0) -> List[float]:
    """``count`` round trips through a bare proton echo in another process, in milliseconds."""
    port = free_port()
    url = f"127.0.0.1:{port}"
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(url,), name="proton-echo",
                                                           daemon=True)
    process.start()
    try:
        wait_until(lambda: port_open(port), timeout)
        client = _EchoClient(url, count, warmup, timeout)
        Container(client).run()
        return client.rtts
    finally:
        process.kill()
        process.join(5)

