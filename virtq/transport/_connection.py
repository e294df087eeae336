"""One outgoing AMQP connection (with a failover list) that reconnects by itself.

What agents use to reach a broker, and consoles to reach a broker or, in direct mode, an
agent's listener. Both speak the same logical QMF addresses; an
:class:`~virtq.transport.profiles.AddressProfile` maps them to what the peer accepts.
Reconnects follow any loss the program did not ask for — errors and clean closes alike
(a gracefully stopped broker or agent closes cleanly, and proton does not reconnect after
that) — with exponential backoff and jitter, cycling through the URLs. While disconnected,
``send`` raises NotConnectedError at once.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence

from proton import Endpoint, Handler

from virtq.schema.codec import WireMessage
from virtq.schema.errors import NotConnectedError

from ._acceptor import abort
from ._convert import from_proton, user_id_of
from ._direct import _host_port
from ._limits import SELECT_FD_LIMIT, Limits
from ._outbox import Outbox
from ._reactor import ReactorHandler, ReactorThread
from .base import Deliver, StateListener, Transport
from .profiles import AddressProfile, QmfProfile
from .tls import TlsConfig, check_scheme, is_loopback, is_tls
from .urls import redact, split_credentials

log = logging.getLogger(__name__)

MAX_INCOMING_BYTES = 64 * 1024 * 1024
"""Largest message a connection takes from its broker or agent (counted while it arrives); larger than a
listener's limit because query answers and batches come this way."""

UNAUTHORIZED = "amqp:unauthorized-access"
"""The condition of a refused SASL exchange (a wrong user or password)."""


class Backoff:
    """Exponential backoff with full jitter: delays in [0, min(cap, base * 2**n)]."""

    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: Optional[random.Random] = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = self._rng.uniform(self.base / 2, min(self.cap, self.base * 2 ** self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


MAX_SENDER_LINKS = 256
"""Sender links one connection keeps open; idle ones beyond it are closed, least recently used first."""


class _ConnectionHandler(ReactorHandler):
    def __init__(self, owner: "Connection") -> None:
        super().__init__()
        self.owner = owner
        self.connection: Any = None
        self.receivers: Dict[str, str] = {}  # link name -> physical source address
        self.opened: set[str] = set()
        self.senders: Dict[str, Outbox] = {}
        self.reply_link_name = ""
        self.ended = ""  # why the current connection (attempt) ended, once known
        self.user_id: Optional[str] = None
        """The user this connection authenticates as, set on every message it sends (a broker checks it)."""

    # connecting ---------------------------------------------------------------------------------

    def on_start(self, event: Any) -> None:
        self.connect()

    def connect(self) -> None:
        owner = self.owner
        if owner._closing:
            return
        url = owner.urls[owner._url_index % len(owner.urls)]
        owner._url_index += 1
        owner.current_url = url
        container = owner._reactor.container
        self.receivers, self.opened, self.senders = {}, set(), {}
        self.ended = ""
        bare, user, password = split_credentials(url)  # (proton logs the URL it connects to)
        credentials: Dict[str, Any] = {key: value for key, value in (("user", user), ("password", password))
                                       if value is not None}
        if user is None and is_tls(url) and owner.tls.cert and password is None:
            user = owner.tls.common_name()  # EXTERNAL: the broker knows us by our certificate's CN
        self.user_id = user if owner.validated_user_id else None
        ssl_domain = owner.ssl_domain() if is_tls(url) else None
        self.connection = container.connect(bare, reconnect=False, allowed_mechs=owner.mechanisms_for(url),
                                            allow_insecure_mechs=True, ssl_domain=ssl_domain, **credentials)
        names = []
        for i, source in enumerate(owner.sources):
            name = f"{owner.link_prefix}-in-{i}"
            container.create_receiver(self.connection, source, name=name)
            self.receivers[name] = source
            names.append(name)
        if owner.role == "console":
            self.reply_link_name = f"{owner.link_prefix}-replies"
            reply = owner.profile.reply_source(owner.console_id, user or None)
            if reply is None:
                container.create_receiver(self.connection, None, dynamic=True, name=self.reply_link_name)
            else:
                container.create_receiver(self.connection, reply, name=self.reply_link_name)
                self.receivers[self.reply_link_name] = reply

    def on_link_opened(self, event: Any) -> None:
        link = event.receiver
        if link is None:
            return
        if link.name == self.reply_link_name and link.name not in self.receivers:  # dynamic
            self.receivers[link.name] = link.remote_source.address
        self.opened.add(link.name)
        expected = set(self.receivers) | ({self.reply_link_name} if self.reply_link_name else set())
        if expected <= self.opened:
            self.owner._up(self.receivers.get(self.reply_link_name, ""))

    def on_timer_task(self, event: Any) -> None:
        self.connect()

    # receiving ---------------------------------------------------------------------------------

    def on_message(self, event: Any) -> None:
        source = self.receivers.get(event.link.name, "") if event.link is not None else ""
        # Through a broker that validates user-ids the sender's is its identity; from an agent's listener
        # (direct mode) nothing validated it, so it is not taken.
        principal = user_id_of(event.message) if self.owner.validated_user_id else None
        wire = from_proton(event.message, source, self.last_delivery_size, principal)
        self.owner._deliver(self.owner.profile.incoming(wire))

    # sending -----------------------------------------------------------------------------------

    def send(self, wire: WireMessage) -> None:
        if self.connection is None or not self.owner.connected:
            self.owner.dropped += 1
            return
        physical = self.owner.profile.outgoing(wire)  # the sender link's address, the routing subject
        target = physical.address
        box = self.senders.pop(target, None)
        if box is None:
            self._retire_idle_senders()
            link = self.owner._reactor.container.create_sender(
                self.connection, target, name=f"{self.owner.link_prefix}-out-{uuid.uuid4().hex[:8]}")
            box = Outbox(link, target, user_id=self.user_id, limits=self.owner.limits)
        self.senders[target] = box  # most recently used last
        box.push(physical)

    def _retire_idle_senders(self) -> None:
        """At most MAX_SENDER_LINKS sender links (one per destination: through a router, one per agent
        address, which peers name): the least recently used ones with nothing pending are closed."""
        for target in list(self.senders):
            if len(self.senders) < MAX_SENDER_LINKS:
                return
            box = self.senders[target]
            if not box.pending:
                del self.senders[target]
                box.link.close()

    def on_sendable(self, event: Any) -> None:
        for box in self.senders.values():
            if box.link == event.sender:
                box.flush()

    # losing ------------------------------------------------------------------------------------
    # Whatever ends a connection we did not close — an error, a clean close of the connection,
    # a session or a link (RabbitMQ ends sessions with "shutdown" when it stops) — marks the
    # transport down and closes what is left, transport included; the transport's end schedules
    # the reconnect.

    def _lose(self, why: str) -> None:
        self.ended = self.ended or why
        self.owner._down(why)

    def _give_up_on(self, connection: Any, why: str, grace: float = 0.0) -> None:
        """Close what is left of a connection the peer ended, then abort its transport after ``grace``
        seconds at the most: a stopping RabbitMQ ends our sessions at once but holds the socket until it
        exits (seconds), which would hold back the reconnect and the failover too."""
        self._lose(why)
        if connection is None:
            return
        if not connection.state & Endpoint.LOCAL_CLOSED:
            connection.close()
        if grace > 0:
            self.owner._reactor.container.schedule(grace, _Abort(connection))
        else:
            _Abort.now(connection)

    @staticmethod
    def _why(condition: Any, default: str) -> str:
        return condition.description or condition.name if condition else default

    def on_transport_error(self, event: Any) -> None:
        condition = event.transport.condition
        why = self._why(condition, 'unknown')
        self._lose(f"transport error: {why}")
        # Refused credentials and failed certificate checks will not pass on a retry: start() stops waiting.
        if condition is not None and (condition.name == UNAUTHORIZED or why.startswith("SSL Failure")):
            self.owner._refused(self.owner.current_url)

    def on_connection_remote_close(self, event: Any) -> None:
        # The peer closed the whole connection (an agent that stops does): answer its close, so it
        # sees a clean end, and give the exchange a moment before aborting.
        if not self.owner._closing:
            self._give_up_on(event.connection, "connection closed by the peer: "
                                               f"{self._why(event.connection.remote_condition, 'clean close')}",
                             grace=1.0)

    def on_session_remote_close(self, event: Any) -> None:
        if not self.owner._closing:
            self._give_up_on(event.connection, "session ended by the broker: "
                                               f"{self._why(event.session.remote_condition, 'clean close')}")

    def on_link_remote_close(self, event: Any) -> None:
        if not self.owner._closing:
            self._give_up_on(event.connection, f"link {event.link.name} closed by the broker: "
                                               f"{self._why(event.link.remote_condition, 'clean close')}")

    def on_transport_closed(self, event: Any) -> None:
        if self.owner._closing:
            self.owner._closed.set()
            return
        if self.connection is None or event.connection != self.connection:
            return  # an older connection's end, already handled
        self.owner._down(self.ended or "disconnected")
        self.owner._attempt_failed(self.ended or "disconnected")
        self.connection = None
        if self.owner._given_up:
            return
        delay = self.owner.backoff.next()
        log.info("reconnecting to %s in %.2fs", redact(self.owner.urls[self.owner._url_index % len(self.owner.urls)]),
                 delay)
        self.owner._reactor.container.schedule(delay, self)

    def on_connection_closed(self, event: Any) -> None:
        if self.owner._closing:
            self.owner._closed.set()


def _check_descriptors() -> None:
    """Refuse to start when the next socket would be out of select()'s range: proton would die of it on its
    reactor thread ("filedescriptor out of range in select()") instead of saying so here."""
    probe = socket.socket()
    try:
        fd = probe.fileno()
    finally:
        probe.close()
    if fd >= SELECT_FD_LIMIT - 2:  # the connection's socket and the reactor's own wake-up pipe
        raise NotConnectedError(
            f"cannot connect: this process already has file descriptors up to {fd} open, and proton polls with "
            f"select(), which cannot watch descriptors >= {SELECT_FD_LIMIT}; use a broker, or fewer files per process")


class _Abort(Handler):
    """A timer task: abort a connection's transport unless it has closed by then."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def on_timer_task(self, event: Any) -> None:
        self.now(self.connection)

    @staticmethod
    def now(connection: Any) -> None:
        """Abort the connection's transport (unless it has closed already)."""
        abort(connection)


class Connection(Transport):
    """An agent's or console's connection to a broker or router (or a console's to an agent's listener),
    reconnecting across ``urls``.

    ``require_connection``: start() raises NotConnectedError unless connected within its timeout (a
    daemon passes False and keeps trying). ``fail_fast``: start() gives up as soon as every URL has
    failed once, instead of retrying until the timeout (a console pointed at agents: one that is not
    listening will not be in a moment). ``sources`` replaces the profile's receiving addresses.

    ``tls``: certificate, key and CA for ``amqps://`` URLs (the peer's certificate is verified against
    the CA and the URL's host name; without a CA, against the system's bundle). SASL: PLAIN when a
    password is given, EXTERNAL (the client certificate) when a certificate is given without one,
    else ANONYMOUS. ``validated_user_id``: the peer is a broker that validates user-ids (RabbitMQ):
    every message sent carries our user, every message received is delivered with its sender's.
    """

    def __init__(self, urls: Sequence[str], profile: AddressProfile, *, role: str, agent_name: str = "",
                 mechanisms: Optional[str] = None, backoff: Optional[Backoff] = None,
                 require_connection: bool = True, fail_fast: bool = False,
                 sources: Optional[Sequence[str]] = None, tls: Optional[TlsConfig] = None,
                 validated_user_id: bool = True, limits: Optional[Limits] = None) -> None:
        if not urls:
            raise ValueError("a broker connection needs at least one URL")
        if role not in ("agent", "console") or (role == "agent" and not agent_name):
            raise ValueError("role is 'agent' (with agent_name) or 'console'")
        for url in urls:
            check_scheme(url)
        self.urls = list(urls)
        self.profile = profile
        self.role = role
        self.agent_name = agent_name
        self.mechanisms = mechanisms
        self.tls = tls or TlsConfig()
        self._ssl_domain: Any = None
        self.validated_user_id = validated_user_id
        if any(is_tls(url) for url in self.urls):
            self.tls.check_files()
        for url in self.urls:
            if split_credentials(url)[2] is not None and not is_tls(url) and not is_loopback(url):
                log.warning("%s: the password goes in clear over plain AMQP (use amqps://)", redact(url))
        self.backoff = backoff or Backoff()
        self.require_connection = require_connection
        self.console_id = uuid.uuid4().hex
        self.link_prefix = f"virtq-{role}-{self.console_id[:12]}"
        self.fail_fast = fail_fast
        self.sources: List[str] = list(sources) if sources is not None else (
            profile.agent_sources(agent_name) if role == "agent" else profile.console_sources())
        self.current_url = self.urls[0]
        self.dropped = 0
        """Messages not sent because the connection was down."""
        self.reconnects = 0
        self._url_index = 0
        self._failed_attempts = 0
        self._given_up = False
        self.limits = limits or Limits(max_message_bytes=MAX_INCOMING_BYTES)
        self._handler = _ConnectionHandler(self)
        self._handler.max_message_bytes = self.limits.max_message_bytes
        self._reactor = ReactorThread(self._handler, f"virtq-{role}-{_host_port(self.urls[0])}", on_death=self._died)
        self._deliver_fn: Optional[Deliver] = None
        self._on_state: Optional[StateListener] = None
        self._reply_address = ""
        self._connected = False
        self._ever_connected = threading.Event()
        self._settled = threading.Event()  # start() may stop waiting: connected, or refused by every URL
        self._refusals: set[str] = set()
        self._logged_failure = ""
        self._closing = False
        self._closed = threading.Event()
        self.last_error = ""

    def ssl_domain(self) -> Any:
        """The client TLS domain, made once (on the reactor thread, at the first amqps:// connect)."""
        if self._ssl_domain is None:
            self._ssl_domain = self.tls.client_domain()
        return self._ssl_domain

    def mechanisms_for(self, url: str) -> str:
        if self.mechanisms is not None:
            return self.mechanisms
        if split_credentials(url)[2] is not None:
            return "PLAIN"
        if self.tls.cert and is_tls(url):
            return "EXTERNAL"
        return "ANONYMOUS PLAIN"

    def _up(self, reply_address: str) -> None:
        if self._connected:
            return
        self._reply_address = reply_address
        self._connected = True
        if self._ever_connected.is_set():
            self.reconnects += 1
            log.info("reconnected to %s", redact(self.current_url))
        self._ever_connected.set()
        self._settled.set()
        self._logged_failure = ""
        self.backoff.reset()
        if self._on_state is not None:
            self._on_state(True)

    def _down(self, why: str) -> None:
        self.last_error = why
        if not self._connected:
            return
        self._connected = False
        if not self._closing:
            log.warning("connection to %s lost: %s", redact(self.current_url), why)
            self._logged_failure = why
            if self._on_state is not None:
                self._on_state(False)

    def _refused(self, url: str) -> None:
        """The broker at ``url`` refused our credentials; once every URL did, start() stops waiting."""
        self._refusals.add(url)
        if self._refusals >= set(self.urls):
            self._settled.set()

    def _attempt_failed(self, why: str) -> None:
        """A connection (or an attempt) ended: say why once per run of the same reason, not per retry."""
        if not self._ever_connected.is_set():
            self._failed_attempts += 1
            if self.fail_fast and self._failed_attempts >= len(self.urls):
                self._given_up = True
                self._settled.set()
                return
        if why != self._logged_failure and not self._closing:
            self._logged_failure = why
            hint = ""
            if "aborted" in why and not self._ever_connected.is_set():
                hint = " — a broker that refuses one of our links aborts the connection: check this user's permissions"
            log.warning("no connection to %s: %s (retrying)%s", redact(self.current_url), why, hint)

    def _deliver(self, wire: WireMessage) -> None:
        if self._deliver_fn is not None:
            self._deliver_fn(wire)

    def _died(self, error: BaseException) -> None:
        """The reactor thread died (proton's select() cannot poll a descriptor >= 1024, for one): the
        connection is down for good, and says why rather than hanging."""
        why = f"the AMQP reactor died: {error}"
        if "filedescriptor out of range" in str(error):
            why += f" (proton polls with select(), which cannot watch file descriptors >= {SELECT_FD_LIMIT}: " \
                   "this process has too many files open; go through a broker or spread consoles over processes)"
        self._given_up = True
        self._down(why)
        self._connected = False
        self._settled.set()
        self._closed.set()

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        self._deliver_fn = deliver
        self._on_state = on_state
        try:
            _check_descriptors()
        except NotConnectedError:
            self._reactor.discard()
            raise
        self._reactor.start()
        self._settled.wait(timeout)
        if not self._ever_connected.is_set() and self.require_connection:
            self.kill()
            raise NotConnectedError(f"cannot connect to {', '.join(redact(u) for u in self.urls)}: "
                                    f"{self.last_error or f'no answer within {timeout:g}s'}")

    def set_ready(self, ready: Callable[[], bool]) -> None:
        self._handler.flow.ready = ready

    def send(self, message: WireMessage) -> None:
        if not self._connected:
            raise NotConnectedError(f"not connected to {redact(self.current_url)}: {self.last_error}")
        self._reactor.call(lambda: self._handler.send(message))

    def stop(self, timeout: float = 5.0) -> None:
        self._closing = True

        def close() -> None:
            if self._handler.connection is not None:
                self._handler.connection.close()
            else:
                self._closed.set()

        if self._reactor.running:
            self._reactor.call(close)
            self._closed.wait(timeout)
        self._reactor.stop(None, timeout)
        self._connected = False

    @property
    def reply_address(self) -> str:
        return self._reply_address

    @property
    def connected(self) -> bool:
        return self._connected


def direct_connection(url: str, sources: Optional[Sequence[str]] = None,
                      tls: Optional[TlsConfig] = None) -> Connection:
    """A console's connection to one agent's listener (direct mode): the QMF addresses as they are,
    reconnecting when the agent restarts, and failing at start when nothing listens there."""
    return Connection([url], QmfProfile(), role="console", fail_fast=True, sources=sources, tls=tls,
                      validated_user_id=False, mechanisms="ANONYMOUS EXTERNAL")
