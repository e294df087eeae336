"""A bare AMQP 1.0 client for what virtq's own code never does: bind a key it may not, publish a key it
may not, forge a user-id — and see exactly how the broker answers.

Each :class:`Attempt` is one connection that attaches its receivers (``/topic/<binding key>``) and its
sender, sends its messages, and records what happened: which links opened, which deliveries were
accepted, and how the connection ended (the condition of the session, connection or transport end the
broker caused). :func:`run` runs several attempts side by side in one proton container, until each
ended or lingered ``linger`` seconds after it had done everything (a refusal may come after the links
opened: RabbitMQ refuses a publish when it sees the message).

What RabbitMQ 3.10's AMQP 1.0 plugin does (seen here): a refused publish or a forged user-id ends the
session at once (``amqp:unauthorized-access``, ``amqp:precondition-failed``) and then the connection;
a refused bind crashes the session, the link never opens, and the connection is aborted ~3 s later
(the client sees a transport error, "connection aborted"); a refused login is a transport error
``amqp:unauthorized-access`` ("Authentication failed") ~3 s after the attempt.
"""

from __future__ import annotations

import time
from typing import Any, List, Optional, Sequence, Set

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

from virtq.transport import TlsConfig


class Attempt(MessagingHandler):
    """One connection's try; the outcome is in ``opened``, ``accepted``, ``ended`` and ``elapsed``."""

    def __init__(self, url: str, tls: Optional[TlsConfig] = None, *, mechanisms: str = "PLAIN",
                 receive: Sequence[str] = (), send_to: str = "", messages: Sequence[Message] = (),
                 linger: float = 0.3, timeout: float = 8.0) -> None:
        super().__init__()
        self.url = url
        self.tls = tls
        self.mechanisms = mechanisms
        self.receive = list(receive)
        self.send_to = send_to
        self.messages = list(messages)
        self.linger = linger
        self.timeout = timeout
        self.opened: Set[str] = set()
        self.accepted = 0
        self.ended = ""
        """``<condition name>: <description>`` of the end the broker caused ("" if none)."""
        self.elapsed = 0.0
        self._pending: List[Message] = list(self.messages)
        self._connection: Any = None
        self._timer: Any = None
        self._started = 0.0
        self._group: Sequence[Attempt] = (self,)  # the attempts run together
        self.finished = False

    @property
    def refused(self) -> bool:
        return bool(self.ended)

    def begin(self, container: Any) -> None:
        self._started = time.monotonic()
        domain = self.tls.client_domain() if self.tls is not None else None
        self._connection = container.connect(self.url, handler=self, ssl_domain=domain, reconnect=False,
                                             allowed_mechs=self.mechanisms, allow_insecure_mechs=True)
        for i, address in enumerate(self.receive):
            container.create_receiver(self._connection, address, name=f"raw-in-{i}-{id(self):x}")
        if self.send_to:
            container.create_sender(self._connection, self.send_to, name=f"raw-out-{id(self):x}")
        self._timer = container.schedule(self.timeout, self)

    def _done_sending(self) -> bool:
        return not self._pending and self.accepted == len(self.messages)

    def _maybe_finish(self, event: Any) -> None:
        if self._done_sending() and len(self.opened) == len(self.receive) + bool(self.send_to):
            self._timer.cancel()
            self._timer = event.container.schedule(self.linger, self)

    def _end(self, why: str) -> None:
        self.ended = self.ended or why
        self.elapsed = time.monotonic() - self._started

    @staticmethod
    def _condition(condition: Any) -> str:
        return f"{condition.name}: {condition.description}" if condition is not None else ""

    def on_timer_task(self, event: Any) -> None:
        if self._connection is not None:
            self._connection.close()

    def on_link_opened(self, event: Any) -> None:
        self.opened.add(event.link.name)
        self._maybe_finish(event)

    def on_sendable(self, event: Any) -> None:
        while self._pending and event.sender.credit > 0:
            event.sender.send(self._pending.pop(0))

    def on_accepted(self, event: Any) -> None:
        self.accepted += 1
        self._maybe_finish(event)

    def on_session_remote_close(self, event: Any) -> None:
        self._end(self._condition(event.session.remote_condition) or "session ended")
        event.connection.close()

    def on_link_remote_close(self, event: Any) -> None:
        self._end(self._condition(event.link.remote_condition) or "link closed")
        event.connection.close()

    def on_connection_remote_close(self, event: Any) -> None:
        condition = self._condition(event.connection.remote_condition)
        if condition:
            self._end(condition)
        event.connection.close()

    def on_transport_error(self, event: Any) -> None:
        self._end(self._condition(event.transport.condition) or "transport error")

    def on_transport_closed(self, event: Any) -> None:
        self.elapsed = self.elapsed or time.monotonic() - self._started
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
        if all(attempt.finished for attempt in self._group):
            # (else the container lingers until the broker drops the socket: ~3 s after a refusal)
            event.container.stop()


class _Starter(MessagingHandler):
    def __init__(self, attempts: Sequence[Attempt]) -> None:
        super().__init__()
        self.attempts = attempts

    def on_start(self, event: Any) -> None:
        for attempt in self.attempts:
            attempt._group = self.attempts
            attempt.begin(event.container)


def run(*attempts: Attempt) -> List[Attempt]:
    """Run the attempts side by side until each has ended; returns them."""
    Container(_Starter(attempts)).run()
    return list(attempts)
