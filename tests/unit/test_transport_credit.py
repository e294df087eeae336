"""Back-pressure: a listener grants credit only while its consumer says it has room, so a peer cannot queue
requests faster than the agent takes them; credit comes back once it has room again."""

from __future__ import annotations

import socket
import threading
from typing import List

from proton import Message, Timeout
from proton.utils import BlockingConnection

from virtq.schema.codec import WireMessage
from virtq.transport import DirectListener
from virtq.transport._reactor import PREFETCH


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_credit_is_granted_only_while_the_consumer_is_ready() -> None:
    room = threading.Event()
    received: List[WireMessage] = []
    listener = DirectListener(f"amqp://127.0.0.1:{_port()}", on_death=lambda e: None)
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
