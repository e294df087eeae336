"""Direct mode: AMQP 1.0 with no broker. The agent listens, consoles connect to it (with a
:class:`~virtq.transport.Connection` and the ``qmf`` profile: see :func:`direct_connection`).

The listener plays the small part of a broker the QMF addresses need: consoles attach
receivers on ``qmf.default.topic[/<binding>]`` (indications, matched by subject) and
dynamic receivers (their reply addresses), and senders to ``qmf.default.direct/<agent>``
or ``qmf.default.topic`` (requests, agent locate).
"""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from proton import Endpoint

from virtq.schema.codec import TOPIC, WireMessage
from virtq.schema.errors import NotConnectedError

from ._convert import from_proton, to_proton
from ._reactor import ReactorHandler, ReactorThread
from .base import Audience, Deliver, StateListener, Transport, topic_matches
from .tls import TlsConfig, TlsError, check_scheme, is_loopback, is_tls

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
"""Pending connections the listening socket queues. proton's Container.listen() uses 10: 250 consoles
connecting at once took 133 s of refusals and retries, 0.4 s with 1024."""

MAX_BACKLOG = 10_000
"""Messages held per link while the peer grants no credit; beyond it the oldest are dropped."""


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1].rsplit("@", 1)[-1]


class _Outbox:
    """Messages waiting for credit on one sender link (``principal``: who the peer is)."""

    def __init__(self, link: Any, name: str, principal: Optional[str] = None, user_id: Optional[str] = None) -> None:
        self.link = link
        self.name = name
        self.principal = principal
        self.user_id = user_id  # set on what it sends
        self.pending: Deque[WireMessage] = collections.deque()
        self.dropped = 0

    def push(self, wire: WireMessage) -> None:
        self.pending.append(wire)
        if len(self.pending) > MAX_BACKLOG:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.warning("link %s: peer grants no credit, %d message(s) dropped", self.name, self.dropped)
        self.flush()

    def flush(self) -> None:
        while self.pending and self.link.credit > 0 and not self.link.state & Endpoint.LOCAL_CLOSED:
            self.link.send(to_proton(self.pending.popleft(), self.user_id))


class _ListenerHandler(ReactorHandler):
    def __init__(self, owner: "DirectListener") -> None:
        super().__init__()
        self.owner = owner
        self.replies: Dict[str, _Outbox] = {}
        self.subscriptions: List[Tuple[str, _Outbox]] = []
        self.connections: Set[Any] = set()
        self.principals: Dict[Any, Optional[str]] = {}
        """Each connection's principal: its client certificate's CN (None without TLS)."""
        self._when_closed: Optional[Callable[[], None]] = None

    def on_connection_opening(self, event: Any) -> None:
        self.connections.add(event.connection)
        principal = None
        if self.owner.tls:  # the handshake verified the certificate before the peer could open
            principal = event.connection.transport.ssl().get_cert_common_name() or None
        self.principals[event.connection] = principal
        log.info("a console connected as %s", principal or "anonymous")

    def principal(self, connection: Any) -> Optional[str]:
        return self.principals.get(connection)

    def on_connection_remote_close(self, event: Any) -> None:
        self._gone(event.connection)

    def _gone(self, connection: Any) -> None:
        self.connections.discard(connection)
        self.principals.pop(connection, None)
        if self._when_closed is not None and not self.connections:
            done, self._when_closed = self._when_closed, None
            done()

    def close_connections(self, done: Callable[[], None]) -> None:
        """Close every console's connection; ``done()`` once all peers have closed theirs (or gone)."""
        self._when_closed = done
        for connection in list(self.connections):
            connection.close()
        self._gone(None)

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            principal = self.principal(link.connection)
            source = link.remote_source
            if source.dynamic:
                address = f"reply-{uuid.uuid4()}"
                link.source.address = address
                self.replies[address] = _Outbox(link, address, principal)
            else:
                address = source.address or ""
                link.source.address = address
                if address == TOPIC or address.startswith(TOPIC + "/"):
                    pattern = address[len(TOPIC) + 1:] or "#"
                    self.subscriptions.append((pattern, _Outbox(link, address, principal)))
                else:  # a named reply address the console chose
                    self.replies[address] = _Outbox(link, address, principal)
        else:
            link.target.address = link.remote_target.address

    def on_sendable(self, event: Any) -> None:
        for box in self._boxes():
            if box.link == event.sender:
                box.flush()

    def _boxes(self) -> List[_Outbox]:
        return list(self.replies.values()) + [box for _, box in self.subscriptions]

    def _forget(self, closed: Any) -> None:
        self.replies = {a: b for a, b in self.replies.items() if not closed(b.link)}
        self.subscriptions = [(p, b) for p, b in self.subscriptions if not closed(b.link)]

    def on_link_closing(self, event: Any) -> None:
        self._forget(lambda link: link == event.link)

    def on_transport_closed(self, event: Any) -> None:
        # Every console connection's end, whether it went away or we were closing it (proton's
        # on_disconnected comes only for connections still open here).
        if event.connection is not None:
            self._forget(lambda link: link.connection == event.connection)
            self._gone(event.connection)

    def on_transport_error(self, event: Any) -> None:
        """A console's connection that ended without a close (it went away, or aborted): its business."""
        condition = event.transport.condition
        log.info("a console's connection ended: %s", condition.description if condition else "transport error")

    def on_message(self, event: Any) -> None:
        target = event.link.target.address if event.link is not None else None
        self.owner._deliver(from_proton(event.message, target, self.last_delivery_size,
                                        self.principal(event.connection)))

    def route(self, wire: WireMessage) -> None:
        if wire.address == TOPIC or wire.address.startswith(TOPIC + "/"):
            audience = self.owner.audience
            seen: Dict[Optional[str], Optional[WireMessage]] = {}  # what each principal may see of it
            for pattern, box in self.subscriptions:
                if topic_matches(pattern, wire.subject):
                    if audience is None:
                        box.push(wire)
                        continue
                    if box.principal not in seen:
                        try:
                            seen[box.principal] = audience(box.principal, wire)
                        except Exception:  # noqa: BLE001 - a failing filter shows nothing, never everything
                            log.exception("filtering a push for %s", box.principal or "anonymous")
                            seen[box.principal] = None
                    shown = seen[box.principal]
                    if shown is not None:
                        box.push(shown)
            return
        reply_box = self.replies.get(wire.address)
        if reply_box is None:
            log.info("no link for reply address %s; message dropped", wire.address)
            return
        reply_box.push(wire)


def _raise_backlog(acceptor: Any, backlog: int = LISTEN_BACKLOG) -> None:
    """listen() again on the acceptor's socket with a longer queue (Linux takes a second listen() as a
    new backlog); proton keeps the socket as its selectable's delegate."""
    sock = getattr(getattr(acceptor, "_selectable", None), "_delegate", None)
    if sock is None or not hasattr(sock, "listen"):
        log.debug("cannot reach the listening socket to raise its backlog")
        return
    try:
        sock.listen(backlog)
    except OSError as exc:
        log.debug("cannot raise the listen backlog: %s", exc)


class DirectListener(Transport):
    """The agent's side of direct mode: an AMQP 1.0 endpoint consoles connect to.

    ``amqps://`` listens with mutual TLS (``tls`` must name certificate, key and the CA that signs
    client certificates; a TLS URL never falls back to plain AMQP); each connection's principal is
    its client certificate's CN, and every message it sends is delivered with that principal.
    ``audience`` (set by the agent) decides what each principal's subscriptions see of a push.
    """

    def __init__(self, url: str, tls: Optional[TlsConfig] = None) -> None:
        check_scheme(url)
        self.url = url
        self.tls = is_tls(url)
        self._ssl_domain: Any = None
        if self.tls:
            self._ssl_domain = (tls or TlsConfig()).server_domain()
        elif tls:
            raise TlsError(f"{url}: TLS files were given for a plain amqp:// listener; use amqps://")
        self.audience: Optional[Audience] = None
        self._handler = _ListenerHandler(self)
        self._reactor = ReactorThread(self._handler, f"virtq-listener-{_host_port(url)}")
        self._deliver_fn: Optional[Deliver] = None
        self._running = False
        self.acceptor: Any = None

    def _deliver(self, wire: WireMessage) -> None:
        if self._deliver_fn is not None:
            self._deliver_fn(wire)

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        self._deliver_fn = deliver
        try:
            # Before the reactor thread runs, so a port in use fails here, in the caller.
            self.acceptor = self._reactor.container.listen(_host_port(self.url), ssl_domain=self._ssl_domain)
        except Exception as exc:
            raise NotConnectedError(f"cannot listen on {self.url}: {exc}") from exc
        _raise_backlog(self.acceptor)
        self._reactor.start()
        self._running = True
        if on_state is not None:
            on_state(True)

    def set_audience(self, audience: Optional[Audience]) -> None:
        self.audience = audience

    @property
    def exposed(self) -> bool:
        return not is_loopback(self.url)

    @property
    def port(self) -> int:
        return int(_host_port(self.url).rsplit(":", 1)[1])

    def send(self, message: WireMessage) -> None:
        if not self._running:
            raise NotConnectedError("listener is not running")
        self._reactor.call(lambda: self._handler.route(message))

    def stop(self, timeout: float = 5.0) -> None:
        was_running, self._running = self._running, False
        closed = threading.Event()

        def close() -> None:
            if self.acceptor is not None:
                self.acceptor.close()
            # Consoles must see the agent go (a clean AMQP close) rather than a silent socket.
            self._handler.close_connections(closed.set)

        if was_running and self._reactor.running:
            self._reactor.call(close)
            closed.wait(timeout)
        self._reactor.stop(None, timeout)

    @property
    def reply_address(self) -> str:
        return ""

    @property
    def connected(self) -> bool:
        return self._running
