"""The hypervisor contract (virtq.testing.conformance) on the fake hypervisor; tests/integration runs it on
the real adapter over libvirt's test driver, which defines the behaviour."""

from __future__ import annotations

from typing import Iterator

import pytest

from virtq.agent.hypervisor import Hypervisor
from virtq.testing import FakeHypervisor
from virtq.testing.conformance import HypervisorContract


class TestFakeHypervisor(HypervisorContract):
    @pytest.fixture
    def hypervisor(self) -> Iterator[Hypervisor]:
        fake = FakeHypervisor.like_default_driver()
        yield fake
        fake.close()
