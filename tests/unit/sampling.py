"""A sampler on its own: a fake hypervisor's objects in a registry, the batches it publishes recorded
(for the push units and the hung-libvirt scenarios alike)."""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from virtq.agent.registry import Registry
from virtq.agent.sampler import Sampler
from virtq.schema import default_schema
from virtq.schema.codec import StatsBatch
from virtq.testing import FakeHypervisor

__all__ = ["Published", "latest_state", "make_sampler"]

AGENT = "libvirt.org:virtq:11111111-1111-4111-8111-111111111111"
EPOCH = 3


class Published:
    """The sampler's publish callback: every batch, in order."""

    def __init__(self) -> None:
        self.batches: List[StatsBatch] = []

    def __call__(self, batches: Sequence[StatsBatch]) -> None:
        self.batches.extend(batches)


def make_sampler(hv: FakeHypervisor, timeout: float = 0.2) -> Tuple[Sampler, Published]:
    """A sampler (epoch 3, a 10 s interval nobody waits for: tests call ``sample``) over ``hv``'s objects,
    synced once; ``timeout`` bounds a pass's wait for a stuck call."""
    registry = Registry(default_schema(), hv, AGENT, EPOCH)
    registry.sync_all()
    published = Published()
    return Sampler(registry, hv, published, interval=10, timeout=timeout), published


def latest_state(sampler: Sampler, domain_uuid: str) -> Any:
    """The state the sampler last pushed for a domain (it must have pushed one)."""
    latest = sampler.latest(f"Domain:{domain_uuid}")
    assert latest is not None, f"nothing sampled for domain {domain_uuid}"
    return latest["state"]
