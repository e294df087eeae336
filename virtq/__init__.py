"""virtq: libvirt's object model served over AMQP 1.0 in QMFv2's map dialect.

Sub-packages: :mod:`virtq.schema` (the contract agent and console share),
:mod:`virtq.agent` (the daemon on each hypervisor) and :mod:`virtq.console`
(the manager-side library and the ``virtq`` CLI).
"""

__version__ = "0.1.0"
