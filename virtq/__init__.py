"""virtq: libvirt's object model served over AMQP 1.0 in QMFv2's map dialect.

Sub-packages: :mod:`virtq.schema` (the contract agent and console share),
:mod:`virtq.transport` (the seam to AMQP), :mod:`virtq.agent` (the daemon on each
hypervisor, ``virtq[agent]``), :mod:`virtq.console` (the manager-side library; its
``virtq`` command needs ``virtq[cli]``) and :mod:`virtq.testing` (the test kit).
docs/ARCHITECTURE.md draws how they depend on each other.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
