"""The reactor side of a :class:`~virtq.transport.Connection`: the proton event handler that connects,
attaches the links, sends and receives, and tells its Connection when the peer is reached, lost or refuses.

It knows its Connection only as a :class:`ConnectionOwner` (settings, and where to report), so neither
module imports the other. Only the reactor thread calls into it.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional, Protocol

from proton import Endpoint, Handler
from proton.reactor import AtMostOnce

from virtq.schema.codec import WireMessage

from ._acceptor import abort
from ._convert import from_proton, user_id_of
from ._limits import Limits
from ._outbox import Outbox
from ._reactor import ReactorHandler
from .profiles import AddressProfile
from .tls import TlsConfig, is_tls
from .urls import split_credentials

UNAUTHORIZED = "amqp:unauthorized-access"
"""The condition of a refused SASL exchange (a wrong user or password)."""

MAX_SENDER_LINKS = 256
"""Sender links one connection keeps open; idle ones beyond it are closed, least recently used first."""


class ConnectionOwner(Protocol):
    """What a ClientHandler needs of the Connection it works for."""

    profile: AddressProfile
    role: str
    console_id: str
    link_prefix: str
    sources: List[str]
    tls: TlsConfig
    validated_user_id: bool
    limits: Limits

    @property
    def closing(self) -> bool:
        """stop() was called: whatever ends now is our own doing."""

    @property
    def connected(self) -> bool: ...

    def next_url(self) -> str:
        """The URL to try now (the failover list in turn)."""

    def ssl_domain(self) -> Any: ...

    def mechanisms_for(self, url: str) -> str: ...

    def came_up(self, reply_address: str) -> None:
        """Every link is attached: messages can go (replies come to ``reply_address``)."""

    def went_down(self, why: str) -> None:
        """The connection no longer carries messages."""

    def refused(self, url: str) -> None:
        """The peer at ``url`` refused our credentials or certificate: a retry will not pass."""

    def attempt_ended(self, why: str) -> Optional[float]:
        """A connection (or an attempt) we did not close has ended: seconds until the next one, None: no more."""

    def deliver(self, wire: WireMessage) -> None: ...

    def finished_closing(self) -> None:
        """The connection stop() closed has closed."""


PRESETTLED = AtMostOnce()
"""How a console's receivers attach: asking for messages settled when sent, so that none costs a disposition
back (a frame, a write and the sender's bookkeeping per message: ~15 % of a fleet console's CPU). Nothing is lost
that settling would have kept: what a connection had in flight dies with it either way — an exclusive queue of a
broker's is deleted with its link, a listener keeps nothing — and the console re-reads what changed meanwhile
when it reconnects; an answer in flight fails its call with the connection. (An agent's requests through a
broker stay unsettled until taken: its queue may outlive the connection.)"""


class ClientHandler(ReactorHandler):
    def __init__(self, owner: ConnectionOwner) -> None:
        super().__init__()
        self.owner = owner
        self.container: Any = None
        """The Container this handler runs in; its owner sets it once the ReactorThread has made it."""
        self.connection: Any = None
        self.url = ""  # the URL of the current connection (attempt)
        self.receivers: Dict[str, str] = {}  # link name -> physical source address
        self.opened: set[str] = set()
        self.senders: Dict[str, Outbox] = {}
        self.reply_link_name = ""
        self.ended = ""  # why the current connection (attempt) ended, once known
        self.dropped = 0
        """Messages not sent because the connection was down."""
        self.user_id: Optional[str] = None
        """The user this connection authenticates as, set on every message it sends (a broker checks it)."""

    # connecting ---------------------------------------------------------------------------------

    def on_start(self, event: Any) -> None:
        self.connect()

    def connect(self) -> None:
        owner = self.owner
        if owner.closing:
            return
        url = self.url = owner.next_url()
        container = self.container
        self.receivers, self.opened, self.senders = {}, set(), {}
        self.ended = ""
        bare, user, password = split_credentials(url)  # (proton logs the URL it connects to)
        options: Dict[str, Any] = {key: value for key, value in (("user", user), ("password", password))
                                       if value is not None}
        if user is None and is_tls(url) and owner.tls.cert and password is None:
            user = owner.tls.common_name()  # EXTERNAL: the broker knows us by our certificate's CN
        self.user_id = user if owner.validated_user_id else None
        ssl_domain = owner.ssl_domain() if is_tls(url) else None
        if owner.limits.max_frame_bytes > 0:  # proton's default, 32 KiB, cuts a 1 MiB stream chunk in 32 frames
            options["max_frame_size"] = owner.limits.max_frame_bytes
        self.connection = container.connect(bare, reconnect=False, allowed_mechs=owner.mechanisms_for(url),
                                            allow_insecure_mechs=True, ssl_domain=ssl_domain, **options)
        for i, source in enumerate(owner.sources):
            name = f"{owner.link_prefix}-in-{i}"
            container.create_receiver(self.connection, source, name=name,
                                      options=PRESETTLED if owner.role == "console" else None)
            self.receivers[name] = source
        if owner.role == "console":
            self.reply_link_name = f"{owner.link_prefix}-replies"
            reply = owner.profile.reply_source(owner.console_id, user or None)
            if reply is None:
                container.create_receiver(self.connection, None, dynamic=True, name=self.reply_link_name,
                                          options=PRESETTLED)
            else:
                container.create_receiver(self.connection, reply, name=self.reply_link_name, options=PRESETTLED)
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
            self.owner.came_up(self.receivers.get(self.reply_link_name, ""))

    def on_timer_task(self, event: Any) -> None:
        self.connect()

    # receiving ---------------------------------------------------------------------------------

    def on_message(self, event: Any) -> None:
        source = self.receivers.get(event.link.name, "") if event.link is not None else ""
        # Through a broker that validates user-ids the sender's is its identity; from an agent's listener
        # (direct mode) nothing validated it, so it is not taken.
        principal = user_id_of(event.message) if self.owner.validated_user_id else None
        wire = from_proton(event.message, source, self.last_delivery_size, principal)
        self.owner.deliver(self.owner.profile.incoming(wire))

    # sending -----------------------------------------------------------------------------------

    def send(self, wire: WireMessage) -> None:
        if self.connection is None or not self.owner.connected:
            self.dropped += 1
            return
        physical = self.owner.profile.outgoing(wire)  # the sender link's address, the routing subject
        target = physical.address
        box = self.senders.pop(target, None)
        if box is None:
            self._retire_idle_senders()
            link = self.container.create_sender(
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
        self.owner.went_down(why)

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
            self.container.schedule(grace, _Abort(connection))
        else:
            abort(connection)

    @staticmethod
    def _why(condition: Any, default: str) -> str:
        return condition.description or condition.name if condition else default

    def on_transport_error(self, event: Any) -> None:
        condition = event.transport.condition
        why = self._why(condition, 'unknown')
        self._lose(f"transport error: {why}")
        # Refused credentials and failed certificate checks will not pass on a retry: start() stops waiting.
        if condition is not None and (condition.name == UNAUTHORIZED or why.startswith("SSL Failure")):
            self.owner.refused(self.url)

    def on_connection_remote_close(self, event: Any) -> None:
        # The peer closed the whole connection (an agent that stops does): answer its close, so it
        # sees a clean end, and give the exchange a moment before aborting.
        if not self.owner.closing:
            self._give_up_on(event.connection, "connection closed by the peer: "
                                               f"{self._why(event.connection.remote_condition, 'clean close')}",
                             grace=1.0)

    def on_session_remote_close(self, event: Any) -> None:
        if not self.owner.closing:
            self._give_up_on(event.connection, "session ended by the broker: "
                                               f"{self._why(event.session.remote_condition, 'clean close')}")

    def on_link_remote_close(self, event: Any) -> None:
        if not self.owner.closing:
            self._give_up_on(event.connection, f"link {event.link.name} closed by the broker: "
                                               f"{self._why(event.link.remote_condition, 'clean close')}")

    def on_transport_closed(self, event: Any) -> None:
        if self.owner.closing:
            self.owner.finished_closing()
            return
        if self.connection is None or event.connection != self.connection:
            return  # an older connection's end, already handled
        delay = self.owner.attempt_ended(self.ended or "disconnected")
        self.connection = None
        if delay is not None:
            self.container.schedule(delay, self)

    def on_connection_closed(self, event: Any) -> None:
        if self.owner.closing:
            self.owner.finished_closing()


class _Abort(Handler):
    """A timer task: abort a connection's transport unless it has closed by then."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def on_timer_task(self, event: Any) -> None:
        abort(self.connection)
