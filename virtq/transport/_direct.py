"""Direct mode: AMQP 1.0 with no broker. The agent listens, consoles connect to it (with a
:class:`~virtq.transport.Connection` and the ``qmf`` profile: see :func:`direct_connection`).

The listener plays the small part of a broker the QMF addresses need: consoles attach
receivers on ``qmf.default.topic[/<binding>]`` (indications, matched by subject) and
dynamic receivers (their reply addresses), and senders to ``qmf.default.direct/<agent>``
or ``qmf.default.topic`` (requests, agent locate).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Optional

from virtq.schema.codec import WireMessage
from virtq.schema.errors import NotConnectedError

from ._acceptor import GuardedAcceptor
from ._credit import Ready, always_ready
from ._limits import MAX_LINK_MESSAGES, Limits
from ._listener_handler import ListenerHandler
from ._reactor import ReactorThread
from .base import Audience, Deliver, StateListener, Transport
from .tls import TlsConfig, TlsError, check_scheme, is_loopback, is_tls
from .urls import host_port

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
"""Pending connections the listening socket queues. proton's Container.listen() uses 10: 250 consoles
connecting at once took 133 s of refusals and retries, 0.4 s with 1024."""

MAX_BACKLOG = MAX_LINK_MESSAGES
"""Messages held per link while the peer grants no credit (see _limits for the bounds in bytes)."""

EXIT_REACTOR_DIED = 70
"""The exit status of a process whose listener's reactor died (EX_SOFTWARE): systemd restarts it."""


def exit_on_death(error: BaseException) -> None:
    """A listener's default on_death: a daemon whose reactor died must not stay alive and deaf."""
    log.critical("the AMQP listener's reactor died (%s): exiting with status %d", error, EXIT_REACTOR_DIED)
    logging.shutdown()
    os._exit(EXIT_REACTOR_DIED)


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

    ``limits``: what peers may hold (connections, sessions, links, subscriptions, queued bytes, message
    size, handshake and idle time; see _limits). ``ready``: whether the consumer of delivered messages has
    room (e.g. the agent's work queue is below its bound); peers get credit only while it does (also
    ``set_ready``). ``on_death``: called if the reactor thread dies of an exception; by default the
    process exits with EXIT_REACTOR_DIED, so that a supervisor restarts it rather than it staying alive
    and deaf.
    """

    def __init__(self, url: str, tls: Optional[TlsConfig] = None, *, limits: Optional[Limits] = None,
                 on_death: Optional[Callable[[BaseException], None]] = None, ready: Ready = always_ready) -> None:
        check_scheme(url)
        self.url = url
        self.tls = is_tls(url)
        self._ssl_domain: Any = None
        if self.tls:
            self._ssl_domain = (tls or TlsConfig()).server_domain()
        elif tls:
            raise TlsError(f"{url}: TLS files were given for a plain amqp:// listener; use amqps://")
        self.audience: Optional[Audience] = None
        self.limits = limits or Limits()
        self._on_death = on_death or exit_on_death
        self._handler = ListenerHandler(self, ready)
        self._reactor = ReactorThread(self._handler, f"virtq-listener-{host_port(url)}", on_death=self._died)
        self._running = False
        self.acceptor: Optional[GuardedAcceptor] = None

    def _died(self, error: BaseException) -> None:
        self._running = False
        if self.acceptor is not None:
            self.acceptor.release_all()
            sock = self.acceptor.socket
            if sock is not None:
                sock.close()  # the port is free for whoever restarts us
        self._on_death(error)

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        self._consumer = deliver
        try:
            # Before the reactor thread runs, so a port in use fails here, in the caller.
            self.acceptor = GuardedAcceptor(self._reactor.container, host_port(self.url), self.limits,
                                            self._ssl_domain)
        except Exception as exc:
            raise NotConnectedError(f"cannot listen on {self.url}: {exc}") from exc
        _raise_backlog(self.acceptor)
        self._reactor.start()
        self._running = True
        if on_state is not None:
            on_state(True)

    def set_audience(self, audience: Optional[Audience]) -> None:
        self.audience = audience

    def set_ready(self, ready: Callable[[], bool]) -> None:
        self._handler.flow.ready = ready

    @property
    def exposed(self) -> bool:
        return not is_loopback(self.url)

    @property
    def port(self) -> int:
        return int(host_port(self.url).rsplit(":", 1)[1])

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
        if self.acceptor is not None:
            self.acceptor.release_all()

    def on_own_thread(self, fn: Callable[[], None]) -> bool:
        return self._reactor.call_while_running(fn)

    @property
    def alive(self) -> bool:
        """The reactor thread runs (False after stop, or if it died)."""
        return self._reactor.running

    @property
    def reply_address(self) -> str:
        return ""

    @property
    def connected(self) -> bool:
        return self._running
