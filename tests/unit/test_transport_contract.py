"""The transport contract (virtq.testing.conformance) on the in-memory bus; tests/integration runs it on
proton over loopback."""

from __future__ import annotations

from typing import Iterator

import pytest

from virtq.testing.conformance import MemoryEnds, TransportContract, TransportEnds


class TestMemoryTransport(TransportContract):
    @pytest.fixture
    def transport_ends(self) -> Iterator[TransportEnds]:
        with MemoryEnds() as ends:
            yield ends
