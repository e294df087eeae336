"""Transports: the seam between virtq's cores and the AMQP library.

Only this package imports proton. ``DirectListener``/``DirectConnector`` speak AMQP 1.0
over TCP with no broker; ``BrokerConnection`` goes through a broker (address profiles in
``profiles``); ``MemoryBus`` gives in-process transports for unit tests.
"""

from ._broker import Backoff, BrokerConnection
from ._direct import DirectConnector, DirectListener
from ._memory import MemoryBus, MemoryTransport
from .base import Deliver, StateListener, Transport, topic_matches
from .profiles import AddressProfile, QmfProfile, RabbitMQProfile, profile

__all__ = ["AddressProfile", "Backoff", "BrokerConnection", "Deliver", "DirectConnector", "DirectListener",
           "MemoryBus", "MemoryTransport", "QmfProfile", "RabbitMQProfile", "StateListener", "Transport",
           "profile", "topic_matches"]
