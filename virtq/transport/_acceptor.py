"""The listener's accept: proton's Acceptor, bounded.

proton accepts every connection it is offered and polls them with select(): at about 1,017 connections
a descriptor passed select()'s 1,024 and the reactor thread died, leaving a live process that answered
nothing. Here a connection beyond the process's budget (or whose descriptor is near the limit) is closed
at accept, before proton sees it; each accepted one must open AMQP within a deadline and gets an idle
timeout and a bounded frame size.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any, Dict, Optional, cast

from proton import Endpoint, Handler, SSLDomain, Transport, Url
from proton._io import IO
from proton._reactor import Acceptor, Container
from proton._handlers import IOHandler

from virtq.logs import RateLimited

from ._limits import FD_HEADROOM, PROCESS_CONNECTIONS, SELECT_FD_LIMIT, ConnectionCount, Limits

log = logging.getLogger(__name__)
_limited = RateLimited(log)

ACCEPT_PAUSE = 0.1
"""Seconds the acceptor stops accepting after the process ran out of descriptors (else select() would
report the listening socket readable in a busy loop)."""


def abort(connection: Any) -> None:
    """Close a connection's transport at once, in both directions (nothing more is read from it)."""
    transport = connection.transport
    if transport is not None and not transport.closed:
        transport.close_tail()
        transport.close_head()


class _Deadline(Handler):
    """A timer task: close the connection unless the peer has opened AMQP by then."""

    def __init__(self, acceptor: "GuardedAcceptor", connection: Any) -> None:
        self.acceptor = acceptor
        self.connection = connection

    def on_timer_task(self, event: Any) -> None:
        self.acceptor.deadlines.pop(self.connection, None)
        if not self.connection.state & Endpoint.REMOTE_ACTIVE and not self.connection.state & Endpoint.REMOTE_CLOSED:
            self.acceptor.expired += 1
            _limited.log(logging.INFO, "handshake", "closing a connection from %s that did not open AMQP within %gs",
                         getattr(self.connection, "url", "?"), self.acceptor.limits.handshake_timeout)
            abort(self.connection)


class _Resume(Handler):
    def __init__(self, acceptor: "GuardedAcceptor") -> None:
        self.acceptor = acceptor

    def on_timer_task(self, event: Any) -> None:
        self.acceptor.pause(False)


class GuardedAcceptor(Acceptor):
    """proton's Acceptor with the process's connection budget, a handshake deadline, an idle timeout and a
    maximum frame size. The owner calls :meth:`release` when an accepted connection's transport closes."""

    def __init__(self, container: Container, url: str, limits: Limits, ssl_domain: Optional[SSLDomain] = None,
                 counter: ConnectionCount = PROCESS_CONNECTIONS) -> None:
        parsed: Any = Url(url)  # type: ignore[no-untyped-call]
        super().__init__(container, parsed.host, int(parsed.port))
        if ssl_domain is not None:
            self.set_ssl_domain(ssl_domain)
        self.limits = limits
        self.counter = counter
        self.accepted: Dict[Any, bool] = {}
        self.deadlines: Dict[Any, Any] = {}
        self.refused = 0
        """Connections closed at accept (over the budget or too close to select()'s limit)."""
        self.expired = 0
        """Connections closed because they did not open AMQP in time."""

    @property
    def socket(self) -> Optional[socket.socket]:
        sock = getattr(self._selectable, "_delegate", None)
        return sock if isinstance(sock, socket.socket) else None

    def pause(self, paused: bool) -> None:
        if self._selectable.is_terminal:
            return
        self._selectable.reading = not paused
        self._selectable.update()

    def on_selectable_readable(self, event: Any) -> None:
        try:
            sock, name = IO.accept(cast(Any, self._selectable))
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                _limited.warning("accept-fds", "cannot accept a connection: %s", exc)
                self.pause(True)
                self._reactor.schedule(ACCEPT_PAUSE, _Resume(self))
            return
        if sock.fileno() >= SELECT_FD_LIMIT - FD_HEADROOM or not self.counter.take(self.limits.max_connections):
            self.refused += 1
            sock.close()
            _limited.warning("accept-limit", "refusing a connection from %s: %d connections held (limit %d)",
                             name[0], self.counter.count, self.limits.max_connections)
            return
        handler = self._handler or self._reactor.handler
        connection: Any = self._reactor.connection(handler)
        connection._acceptor = self
        connection.url = Url(host=name[0], port=name[1])  # type: ignore[no-untyped-call]
        transport = Transport(Transport.SERVER)
        if self.limits.idle_timeout > 0:
            transport.idle_timeout = self.limits.idle_timeout
        if self.limits.max_frame_bytes > 0:
            transport.max_frame_size = self.limits.max_frame_bytes
        if self._ssl_domain:
            transport.ssl(self._ssl_domain)
        transport.bind(connection)
        selectable: Any = self._reactor.selectable(delegate=sock)
        selectable._transport = transport
        transport._selectable = selectable
        IOHandler.update(transport, selectable, self._reactor.now)
        self.accepted[connection] = True
        if self.limits.handshake_timeout > 0:
            self.deadlines[connection] = self._reactor.schedule(self.limits.handshake_timeout,
                                                                _Deadline(self, connection))

    def release(self, connection: Any) -> None:
        """An accepted connection ended: give its place back."""
        if self.accepted.pop(connection, None):
            self.counter.give_back()
        task = self.deadlines.pop(connection, None)
        if task is not None:
            task.cancel()

    def release_all(self) -> None:
        """The listener stops (or its reactor died): every place it held goes back."""
        for connection in list(self.accepted):
            self.release(connection)

    @property
    def held(self) -> int:
        return len(self.accepted)
