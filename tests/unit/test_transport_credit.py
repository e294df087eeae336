"""Back-pressure: a listener grants credit only while its consumer says it has room, so a peer cannot queue
requests faster than the agent takes them; credit comes back once it has room again."""

from __future__ import annotations

import threading
from typing import List

import pytest
from proton import Message, Timeout
from proton.utils import BlockingConnection

from virtq.schema.codec import WireMessage
from virtq.testing import free_port
from virtq.transport import DirectListener, _client_handler
from virtq.transport._connection import Connection
from virtq.transport._reactor import PREFETCH
from virtq.transport.profiles import QmfProfile


def test_credit_is_granted_only_while_the_consumer_is_ready() -> None:
    room = threading.Event()
    received: List[WireMessage] = []
    listener = DirectListener(f"amqp://127.0.0.1:{free_port()}", on_death=lambda e: None)
    listener.set_ready(room.is_set)
    listener.start(received.append)
    connection = BlockingConnection(listener.url.split("://")[1], timeout=5)
    try:
        sender = connection.create_sender("qmf.default.direct/x")
        try:
            connection.wait(lambda: sender.link.credit > 0, timeout=0.3)
            granted = True
        except Timeout:
            granted = False
        assert not granted and sender.link.credit == 0  # not ready: no credit at all
        room.set()
        connection.wait(lambda: sender.link.credit > 0, timeout=5)  # ready again: credit within RECHECK
        assert sender.link.credit == PREFETCH
        sender.send(Message(body={"n": 1}))
        assert received and received[0].body == {"n": 1}
    finally:
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - closing is best effort here
            pass
        listener.stop()


def test_sender_links_are_bounded_least_recently_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console sending to many destinations (one link each through a router) keeps at most
    MAX_SENDER_LINKS links: idle ones are closed, the least recently used first."""
    class Link:
        def __init__(self, target: str) -> None:
            self.target, self.closed, self.credit, self.state = target, False, 0, 0

        def close(self) -> None:
            self.closed = True
            closed.append(self.target.rsplit("/", 1)[1])

    connection = Connection(["amqp://127.0.0.1:1"], QmfProfile(), role="console")
    handler = connection._handler
    created: List[Link] = []
    closed: List[str] = []

    class Container:
        def create_sender(self, conn: object, target: str, name: str) -> Link:
            created.append(Link(target))
            return created[-1]

    monkeypatch.setattr(_client_handler, "MAX_SENDER_LINKS", 3)
    handler.container = Container()
    handler.connection = object()
    connection._connected = True
    for agent in ("a", "b", "c", "a", "d", "e"):
        handler.send(WireMessage(f"qmf.default.direct/{agent}", {}, {}))
    # every link still holds its message (the peer granted no credit): none is idle, so none is closed
    assert len(handler.senders) == 5 and not any(link.closed for link in created)
    for box in handler.senders.values():
        box.pending.clear()  # delivered
    handler.send(WireMessage("qmf.default.direct/f", {}, {}))
    assert [t.rsplit("/", 1)[1] for t in handler.senders] == ["d", "e", "f"]
    assert closed == ["b", "c", "a"]  # least recently used first: a was used again after b and c
    connection.kill()
