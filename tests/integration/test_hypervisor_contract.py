"""The hypervisor contract (virtq.testing.conformance) on LibvirtHypervisor over test:///default: the
behaviour the fake hypervisor (tests/unit) is held to."""

from __future__ import annotations

from typing import Iterator

import pytest

from virtq.agent.hypervisor import Hypervisor
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.testing import DEFAULT_URI
from virtq.testing.conformance import HypervisorContract

pytestmark = pytest.mark.integration


class TestLibvirtHypervisor(HypervisorContract):
    @pytest.fixture
    def hypervisor(self) -> Iterator[Hypervisor]:
        real = LibvirtHypervisor(DEFAULT_URI)
        yield real
        real.close()
