"""virtq's test kit: what virtq's own tests use, shipped so that you can test code built on virtq.

- a real agent and console in your test's process: :func:`running_agent` (libvirt's test driver, or a
  fake) and :func:`connected_console`; with pytest, the ``virtq_agent`` / ``virtq_console`` fixtures
  of the plugin :mod:`virtq.testing.pytest_plugin` (installed with virtq, loaded automatically);
- :class:`FakeHypervisor`: an in-memory libvirt for agent tests, with calls that can be held
  (:class:`CallGates`), held to the real adapter's behaviour by the hypervisor contract;
- transports without sockets: :class:`MemoryBus` and :class:`RecordingTransport`;
- :func:`wait_until` instead of sleeps, :func:`next_event` of a subscription, :func:`free_port`,
  :func:`domain_xml` for the test driver;
- :mod:`virtq.testing.conformance`: the transport and hypervisor contracts, for implementations of
  your own.

Importing this package needs neither pytest nor libvirt-python (an agent on a libvirt URI does).
"""

from .agents import DEFAULT_URI, agent_url, connected_console, running_agent, start_local_agent
from .call_gates import CallGates
from .events import next_event
from .fake_hypervisor import FAKE_NODE, PAUSED, RUNNING, SHUTOFF, FakeHypervisor, numbered_domain, numbered_uuid
from .libvirt_xml import domain_xml, pool_xml
from .ports import free_port, port_open
from .transports import MemoryBus, MemoryTransport, RecordingTransport
from .waiting import WaitTimeout, wait_until

__all__ = ["CallGates", "DEFAULT_URI", "FAKE_NODE", "FakeHypervisor", "MemoryBus", "MemoryTransport", "PAUSED",
           "RUNNING", "RecordingTransport", "SHUTOFF", "WaitTimeout", "agent_url", "connected_console",
           "domain_xml", "free_port", "next_event", "numbered_domain", "numbered_uuid", "pool_xml", "port_open",
           "running_agent", "start_local_agent", "wait_until"]
