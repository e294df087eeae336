"""The virtq agent: serves one host's libvirt over AMQP.

``Agent`` wires a :class:`~virtq.agent.hypervisor.Hypervisor` to a :class:`~virtq.transport.Transport`.
Exported here is what embedding an agent takes: the agent, the access policy it enforces, and the
Hypervisor interface with the values that cross it (to put something other than libvirt behind it, as
tests and the fleet benchmark do). libvirt itself is behind ``virtq.agent.libvirt_adapter``, which this
package does not import: ``import virtq.agent`` neither loads libvirt nor starts a thread.
"""

from .agent import Agent
from .hypervisor import (CheckpointIdentity, DomainIdentity, ForwardingHypervisor, Hypervisor, HypervisorError,
                         HypervisorEvent, Identity, NodeIdentity, ObjectRef, PoolIdentity, SnapshotIdentity,
                         VolumeIdentity)
from .policy import Policy, PolicyError

__all__ = ["Agent", "CheckpointIdentity", "DomainIdentity", "ForwardingHypervisor", "Hypervisor", "HypervisorError",
           "HypervisorEvent", "Identity", "NodeIdentity", "ObjectRef", "Policy", "PolicyError", "PoolIdentity",
           "SnapshotIdentity", "VolumeIdentity"]
