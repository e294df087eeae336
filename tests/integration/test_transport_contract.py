"""The transport contract (virtq.testing.conformance) on proton over loopback: an agent's DirectListener
and consoles' direct connections. tests/unit runs it on the in-memory bus."""

from __future__ import annotations

from typing import Iterator

import pytest

from virtq.testing.conformance import LoopbackEnds, TransportContract, TransportEnds

pytestmark = pytest.mark.integration


class TestLoopbackTransport(TransportContract):
    @pytest.fixture
    def transport_ends(self) -> Iterator[TransportEnds]:
        with LoopbackEnds() as ends:
            yield ends
