"""Conformance suites, one per seam, each run against every implementation of it.

``TransportContract`` (virtq runs it on the memory bus and on proton over loopback) and
``HypervisorContract`` (on :class:`~virtq.testing.FakeHypervisor` and on libvirt's test driver) are
plain pytest classes: subclass one in a test module and give it the fixture it names::

    class TestMyTransport(TransportContract):
        @pytest.fixture
        def transport_ends(self):
            with MyEnds() as ends:  # a TransportEnds of your own
                yield ends

Nothing here imports pytest; the checks are plain functions that raise AssertionError.
"""

from .deliveries import Deliveries
from .hypervisor import EventLog, HypervisorContract
from .transport import Inbox, LoopbackEnds, MemoryEnds, TransportContract, TransportEnds

__all__ = ["Deliveries", "EventLog", "HypervisorContract", "Inbox", "LoopbackEnds", "MemoryEnds", "TransportContract",
           "TransportEnds"]
