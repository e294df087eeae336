"""The virtq agent: serves one host's libvirt over AMQP.

``Agent`` wires a :class:`~virtq.agent.hypervisor.Hypervisor` (libvirt behind the one
adapter module) to a :class:`~virtq.transport.Transport`.
"""

from .agent import Agent
from .hypervisor import Hypervisor, HypervisorError

__all__ = ["Agent", "Hypervisor", "HypervisorError"]
