"""Transports: the seam between virtq's cores and the AMQP library.

Only this package imports proton. An agent in direct mode serves consoles with a
``DirectListener``; every outgoing connection — an agent's or a console's to a broker, a
console's to an agent's listener (``direct_connection``) — is a reconnecting ``Connection``
whose address profile (``profiles``) maps QMF's addresses to what the peer accepts;
``MemoryBus`` gives in-process transports for unit tests.
"""

from ._backoff import Backoff
from ._connection import Connection, direct_connection
from ._direct import EXIT_REACTOR_DIED, DirectListener
from ._convert import encoded_size
from ._limits import Limits
from ._memory import MemoryBus, MemoryTransport
from .base import UNDECODABLE, Audience, Deliver, StateListener, Transport, topic_matches
from .profiles import AddressProfile, QmfProfile, RabbitMQProfile, profile
from .tls import TlsConfig, TlsError, is_loopback, is_tls

__all__ = ["AddressProfile", "Audience", "Backoff", "Connection", "Deliver", "DirectListener", "EXIT_REACTOR_DIED",
           "Limits", "MemoryBus", "MemoryTransport", "QmfProfile", "RabbitMQProfile", "StateListener", "TlsConfig",
           "TlsError", "Transport", "UNDECODABLE", "direct_connection", "encoded_size", "is_loopback", "is_tls",
           "profile", "topic_matches"]
