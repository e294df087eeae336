"""The transport's resource limits: what one peer (or a flood of them) may hold of an endpoint.

Every limit is a named constant with its default and a field of :class:`Limits` (a listener and a
connection take one). Why each exists is said where it is enforced; docs/ROBUSTNESS.md §2
lists them with what a peer gets when it hits one.
"""

from __future__ import annotations

import dataclasses
import threading

SELECT_FD_LIMIT = 1024
"""proton polls with select(): a file descriptor at or above FD_SETSIZE (1024) raises "filedescriptor out
of range in select()" and ends the reactor thread."""

MAX_CONNECTIONS = 900
"""Connections accepted by all listeners of this process together; more are closed at accept. Well below
SELECT_FD_LIMIT, so a flood cannot push a descriptor past select()'s range."""

FD_HEADROOM = 64
"""An accepted socket whose descriptor is this close to SELECT_FD_LIMIT is closed at once, whatever the
count (the process has other files open: logs, libvirt, consoles' own sockets)."""

HANDSHAKE_TIMEOUT = 10.0
"""Seconds an accepted connection has to open AMQP (TLS and SASL included); then it is closed."""

IDLE_TIMEOUT = 120.0
"""AMQP idle timeout of accepted connections (seconds): a peer that sends nothing, not even proton's
heartbeats, for this long is closed."""

MAX_FRAME_BYTES = 1024 * 1024
"""Largest AMQP frame accepted (the open frame's max-frame-size): proton buffers a whole frame."""

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest message accepted, counted while it arrives (and advertised in each attach); the connection that
sends a larger one is closed. Twice the agent's 4 MiB request limit, so requests between the two still get
the agent's typed refusal."""

MAX_SESSIONS = 8
"""Sessions per connection (a console uses one)."""

MAX_LINKS = 64
"""Links per connection, both directions (a console uses a handful)."""

MAX_SUBSCRIPTIONS = 32
"""Topic subscriptions (receivers on qmf.default.topic[/…]) per connection."""

MAX_LINK_BYTES = 16 * 1024 * 1024
"""Encoded bytes held for one sending link whose peer grants no credit; beyond it the link is closed."""

MAX_CONNECTION_BYTES = 64 * 1024 * 1024
"""Encoded bytes held for all the sending links of one connection; beyond it the link being filled is closed."""

MAX_LINK_MESSAGES = 10_000
"""Messages held for one sending link (a bound on count as well as bytes)."""

CLOSE_GRACE = 1.0
"""Seconds a peer closed for breaking a limit has to answer the close before its connection is aborted."""

RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
RESOURCE_LOCKED = "amqp:resource-locked"
"""The condition of an attach to a reply address another connection holds."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits one endpoint enforces (defaults: the constants above)."""

    max_connections: int = MAX_CONNECTIONS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_sessions: int = MAX_SESSIONS
    max_links: int = MAX_LINKS
    max_subscriptions: int = MAX_SUBSCRIPTIONS
    max_link_bytes: int = MAX_LINK_BYTES
    max_connection_bytes: int = MAX_CONNECTION_BYTES
    max_link_messages: int = MAX_LINK_MESSAGES


class ConnectionCount:
    """Accepted connections in this process, across listeners: the budget MAX_CONNECTIONS bounds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def take(self, limit: int) -> bool:
        """Count one more connection unless ``limit`` are held already."""
        with self._lock:
            if self._count >= limit:
                return False
            self._count += 1
            return True

    def give_back(self, n: int = 1) -> None:
        with self._lock:
            self._count = max(0, self._count - n)

    @property
    def count(self) -> int:
        return self._count


PROCESS_CONNECTIONS = ConnectionCount()
