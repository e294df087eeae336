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
import socket
import threading
import uuid
from typing import Any, Callable, List, Optional, Sequence

from virtq.schema.codec import WireMessage
from virtq.schema.errors import NotConnectedError

from ._backoff import Backoff
from ._client_handler import ClientHandler
from ._limits import SELECT_FD_LIMIT, Limits
from ._reactor import ReactorThread
from .base import Deliver, StateListener, Transport
from .profiles import AddressProfile, QmfProfile
from .tls import TlsConfig, check_scheme, is_loopback, is_tls
from .urls import host_port, redact, split_credentials

log = logging.getLogger(__name__)

MAX_INCOMING_BYTES = 64 * 1024 * 1024
"""Largest message a connection takes from its broker or agent (counted while it arrives); larger than a
listener's limit because query answers and batches come this way."""


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
        self.reconnects = 0
        self._url_index = 0
        self._failed_attempts = 0
        self._given_up = False
        self.limits = limits or Limits(max_message_bytes=MAX_INCOMING_BYTES)
        self._handler = ClientHandler(self)
        self._handler.max_message_bytes = self.limits.max_message_bytes
        self._reactor = ReactorThread(self._handler, f"virtq-{role}-{host_port(self.urls[0])}", on_death=self._died)
        self._handler.container = self._reactor.container
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

    @property
    def dropped(self) -> int:
        """Messages not sent because the connection was down."""
        return self._handler.dropped

    # What the handler asks and reports (see ConnectionOwner), on the reactor thread ------------------

    @property
    def closing(self) -> bool:
        return self._closing

    def next_url(self) -> str:
        self.current_url = self.urls[self._url_index % len(self.urls)]
        self._url_index += 1
        return self.current_url

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

    def came_up(self, reply_address: str) -> None:
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

    def went_down(self, why: str) -> None:
        self.last_error = why
        if not self._connected:
            return
        self._connected = False
        if not self._closing:
            log.warning("connection to %s lost: %s", redact(self.current_url), why)
            self._logged_failure = why
            if self._on_state is not None:
                self._on_state(False)

    def refused(self, url: str) -> None:
        """The broker at ``url`` refused our credentials; once every URL did, start() stops waiting."""
        self._refusals.add(url)
        if self._refusals >= set(self.urls):
            self._settled.set()

    def attempt_ended(self, why: str) -> Optional[float]:
        """Down, and the delay before the next URL is tried (backoff), or None once start() gave up."""
        self.went_down(why)
        self._say_why_attempt_failed(why)
        if self._given_up:
            return None
        delay = self.backoff.next()
        log.info("reconnecting to %s in %.2fs", redact(self.urls[self._url_index % len(self.urls)]), delay)
        return delay

    def _say_why_attempt_failed(self, why: str) -> None:
        """Say why once per run of the same reason, not per retry (and give up when fail_fast says so)."""
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

    def finished_closing(self) -> None:
        self._closed.set()

    def _died(self, error: BaseException) -> None:
        """The reactor thread died (proton's select() cannot poll a descriptor >= 1024, for one): the
        connection is down for good, and says why rather than hanging."""
        why = f"the AMQP reactor died: {error}"
        if "filedescriptor out of range" in str(error):
            why += f" (proton polls with select(), which cannot watch file descriptors >= {SELECT_FD_LIMIT}: " \
                   "this process has too many files open; go through a broker or spread consoles over processes)"
        self._given_up = True
        self.went_down(why)
        self._connected = False
        self._settled.set()
        self._closed.set()

    # The program's side --------------------------------------------------------------------------------

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        self._consumer = deliver
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

    def on_own_thread(self, fn: Callable[[], None]) -> bool:
        return self._reactor.call_while_running(fn)

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
