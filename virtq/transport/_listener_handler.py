"""The reactor side of a :class:`~virtq.transport.DirectListener`: the proton event handler that
accepts consoles' sessions and links within the per-connection caps, takes their requests and routes
replies and pushes to their links.

It knows its listener only as a :class:`ListenerOwner`, so neither module imports the other. Only the
reactor thread calls into it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Dict, List, Optional, Protocol, Set, Tuple

from proton import Condition, Endpoint, Link, Message

from virtq.schema.codec import TOPIC, WireMessage

from virtq.logs import RateLimited, shown

from ._acceptor import GuardedAcceptor
from ._convert import from_proton, owned
from ._credit import Ready
from ._limits import RESOURCE_LIMIT, RESOURCE_LOCKED, Limits
from ._outbox import TRIM_BYTES, Budget, Outbox, encoded, give_back_memory
from ._reactor import ReactorHandler
from .base import UNDECODABLE, Audience, topic_matches

log = logging.getLogger(__name__)
_limited = RateLimited(log)


class ListenerOwner(Protocol):
    """What a ListenerHandler needs of the DirectListener it works for."""

    limits: Limits
    tls: bool
    """Consoles connect with TLS: a connection's principal is its client certificate's CN."""
    acceptor: Optional[GuardedAcceptor]
    """Told when an accepted connection's transport has closed."""
    audience: Optional[Audience]

    def deliver(self, wire: WireMessage) -> None: ...


class _Peer:
    """What one accepted connection holds: the bytes queued for it, its sessions, links, subscriptions."""

    def __init__(self) -> None:
        self.budget = Budget()
        self.sessions = 0
        self.links: Set[Tuple[str, bool]] = set()
        self.subscriptions: Set[str] = set()


class ListenerHandler(ReactorHandler):
    def __init__(self, owner: ListenerOwner, ready: Ready) -> None:
        super().__init__(ready)
        self.owner = owner
        self.limits = owner.limits
        self.max_message_bytes = owner.limits.max_message_bytes
        self.replies: Dict[str, Outbox] = {}
        self.subscriptions: List[Tuple[str, Outbox]] = []
        self.connections: Set[Any] = set()
        self.peers: Dict[Any, _Peer] = {}
        self.principals: Dict[Any, Optional[str]] = {}
        """Each connection's principal: its client certificate's CN (None without TLS)."""
        self.refused_links = 0
        self._when_closed: Optional[Callable[[], None]] = None

    def peer(self, connection: Any) -> _Peer:
        peer = self.peers.get(connection)
        if peer is None:
            peer = self.peers[connection] = _Peer()
        return peer

    def on_connection_opening(self, event: Any) -> None:
        self.connections.add(event.connection)
        principal = None
        if self.owner.tls:  # the handshake verified the certificate before the peer could open
            principal = event.connection.transport.ssl().get_cert_common_name() or None
        self.principals[event.connection] = principal
        log.info("a console connected as %s", shown(principal or "anonymous"))

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

    # --- per-connection caps: a refused session or link is opened and closed at once, with a condition ---

    @staticmethod
    def _refuse(endpoint: Any, why: str, condition: str = RESOURCE_LIMIT) -> None:
        endpoint.open()
        endpoint.condition = Condition(condition, why)
        endpoint.close()

    def on_session_remote_open(self, event: Any) -> None:
        session = event.session
        if not session.state & Endpoint.LOCAL_UNINIT:
            return
        peer = self.peer(event.connection)
        peer.sessions += 1
        if peer.sessions > self.limits.max_sessions:
            _limited.warning("sessions", "refusing a session: a connection may open %d", self.limits.max_sessions)
            self._refuse(session, f"a connection may open {self.limits.max_sessions} sessions")

    def on_session_remote_close(self, event: Any) -> None:
        peer = self.peers.get(event.connection)
        if peer is not None:
            peer.sessions = max(0, peer.sessions - 1)

    def _refusal(self, link: Any) -> Optional[Tuple[str, str]]:
        """Why a link the peer attaches is refused, and the condition that says so (None: it is not)."""
        peer = self.peer(link.connection)
        if len(peer.links) >= self.limits.max_links:
            return RESOURCE_LIMIT, f"a connection may attach {self.limits.max_links} links"
        if link.is_sender and not link.remote_source.dynamic:
            address = link.remote_source.address or ""
            if address == TOPIC or address.startswith(TOPIC + "/"):
                if len(peer.subscriptions) >= self.limits.max_subscriptions:
                    return RESOURCE_LIMIT, f"a connection may hold {self.limits.max_subscriptions} subscriptions"
            else:  # a named reply address: its first holder keeps it (replies are never hijacked)
                holder = self.replies.get(address)
                if holder is not None and holder.link.connection != link.connection:
                    return RESOURCE_LOCKED, "this reply address is attached by another connection"
        return None

    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        refusal = self._refusal(link)
        if refusal is not None:
            condition, why = refusal
            self.refused_links += 1
            _limited.warning(f"link-{why[:24]}", "refusing link %s: %s", shown(link.name), why)
            link.source.copy(link.remote_source)
            link.target.copy(link.remote_target)
            self._refuse(link, why, condition)
            return
        self.peer(link.connection).links.add((link.name, link.is_sender))

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        peer = self.peers.get(link.connection)
        if peer is not None:
            peer.links.discard((link.name, link.is_sender))
            peer.subscriptions.discard(link.name)
        self._forget(lambda other: other == link)

    def _outbox(self, link: Any, address: str, principal: Optional[str]) -> Outbox:
        return Outbox(link, address, principal, limits=self.limits, budget=self.peer(link.connection).budget,
                      close_on_overflow=True, on_closed=self._overflowed)

    def _overflowed(self, box: Outbox) -> None:
        self._forget(lambda link: link == box.link)

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            if link.remote_snd_settle_mode == Link.SND_SETTLED:  # asked for by the receiver (a virtq console's)
                link.snd_settle_mode = Link.SND_SETTLED
            principal = self.principal(link.connection)
            source = link.remote_source
            if source.dynamic:
                address = f"reply-{uuid.uuid4()}"
                link.source.address = address
                self.replies[address] = self._outbox(link, address, principal)
            else:
                address = source.address or ""
                link.source.address = address
                if address == TOPIC or address.startswith(TOPIC + "/"):
                    pattern = address[len(TOPIC) + 1:] or "#"
                    self.peer(link.connection).subscriptions.add(link.name)
                    self.subscriptions.append((pattern, self._outbox(link, address, principal)))
                else:  # a named reply address the console chose (never another connection's: see _refusal)
                    self.replies[address] = self._outbox(link, address, principal)
        else:
            link.target.address = link.remote_target.address
            if self.limits.max_message_bytes > 0:
                link.max_message_size = self.limits.max_message_bytes

    def on_sendable(self, event: Any) -> None:
        for box in self._boxes():
            if box.link == event.sender:
                box.flush()

    def _boxes(self) -> List[Outbox]:
        return list(self.replies.values()) + [box for _, box in self.subscriptions]

    def _forget(self, closed: Callable[[Any], bool]) -> None:
        freed = 0
        kept: Dict[str, Outbox] = {}
        for address, box in self.replies.items():
            if closed(box.link):
                freed += box.bytes
                box.clear()
            else:
                kept[address] = box
        self.replies = kept
        subscriptions = []
        for pattern, box in self.subscriptions:
            if closed(box.link):
                freed += box.bytes
                box.clear()
            else:
                subscriptions.append((pattern, box))
        self.subscriptions = subscriptions
        if freed >= TRIM_BYTES:
            give_back_memory()

    def on_link_closing(self, event: Any) -> None:
        self._forget(lambda link: link == event.link)

    def on_transport_closed(self, event: Any) -> None:
        # Every console connection's end, whether it went away or we were closing it (proton's
        # on_disconnected comes only for connections still open here).
        if event.connection is not None:
            self._forget(lambda link: link.connection == event.connection)
            self.peers.pop(event.connection, None)
            self._gone(event.connection)
            if self.owner.acceptor is not None:
                self.owner.acceptor.release(event.connection)

    def on_transport_error(self, event: Any) -> None:
        """A console's connection that ended without a close (it went away, or aborted): its business."""
        condition = event.transport.condition
        log.info("a console's connection ended: %s",
                 shown(condition.description if condition else "transport error"))

    def on_message(self, event: Any) -> None:
        target = event.link.target.address if event.link is not None else None
        self.owner.deliver(from_proton(event.message, target, self.last_delivery_size,
                                        self.principal(event.connection)))

    def on_undecodable(self, event: Any, message: Message, size: int, error: Exception) -> bool:
        """A message with no Python value: when it names a reply-to, the agent is handed what could be read
        of it (reply-to, correlation id, properties) with an UNDECODABLE body, and answers ``_exception``."""
        try:
            reply_to = message.reply_to
            cid = message.correlation_id
            address = message.address
        except Exception:  # noqa: BLE001 - the header itself did not decode
            reply_to = None
        if not reply_to or not isinstance(reply_to, str):
            return super().on_undecodable(event, message, size, error)
        _limited.log(logging.INFO, "undecodable-answered", "a message on link %s could not be decoded (%s); "
                     "handed over for an _exception to %s", shown(event.link.name), shown(error), shown(reply_to))
        properties = getattr(message, "properties", None)
        target = event.link.target.address if event.link is not None else None
        self.owner.deliver(WireMessage(
            address=address or target or "",
            properties=owned(properties) if isinstance(properties, dict) else {},
            body=UNDECODABLE, subject="", correlation_id=None if cid is None else str(cid),
            reply_to=reply_to, size=size, principal=self.principal(event.connection)))
        return True

    def route(self, wire: WireMessage) -> None:
        if wire.address == TOPIC or wire.address.startswith(TOPIC + "/"):
            audience = self.owner.audience
            seen: Dict[Optional[str], Optional[WireMessage]] = {}  # what each principal may see of it
            data: Dict[int, bytes] = {}  # each distinct message, encoded once
            for pattern, box in list(self.subscriptions):
                if topic_matches(pattern, wire.subject):
                    shown_wire: Optional[WireMessage] = wire
                    if audience is not None:
                        if box.principal not in seen:
                            try:
                                seen[box.principal] = audience(box.principal, wire)
                            except Exception:  # noqa: BLE001 - a failing filter shows nothing, never everything
                                log.exception("filtering a push for %s", shown(box.principal or "anonymous"))
                                seen[box.principal] = None
                        shown_wire = seen[box.principal]
                    if shown_wire is not None:
                        key = id(shown_wire)
                        if key not in data:
                            data[key] = encoded(shown_wire)
                        box.push(shown_wire, data[key])
            return
        reply_box = self.replies.get(wire.address)
        if reply_box is None:
            log.info("no link for reply address %s; message dropped", shown(wire.address))
            return
        reply_box.push(wire)
