"""Transports: the seam between virtq's cores and the AMQP library.

Only this package imports proton. ``DirectListener``/``DirectConnector`` speak AMQP 1.0
over TCP with no broker; ``MemoryBus`` gives in-process transports for unit tests.
"""

from ._direct import DirectConnector, DirectListener
from ._memory import MemoryBus, MemoryTransport
from .base import Deliver, StateListener, Transport, topic_matches

__all__ = ["Deliver", "DirectConnector", "DirectListener", "MemoryBus", "MemoryTransport",
           "StateListener", "Transport", "topic_matches"]
