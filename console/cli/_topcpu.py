"""``virtq top``'s CPU %: what each domain used between its last two pushed samples, as virt-top computes it.

A domain's CPU % is the cpuTime delta (ns) over the delta of the agent's sample timestamps (ns), divided by
its vCPUs: 100 % means every vCPU of the domain busy. The first two samples seen (the one the console held
when ``top`` started counts) give the first value; until then the domain is "warming up".
"""

from __future__ import annotations

import threading
from typing import Dict, Hashable, Iterable, Optional, Tuple

__all__ = ["CpuMeter", "cpu_percent"]

Sample = Tuple[int, int]
"""(sample_ts ns, cpuTime ns)."""


def cpu_percent(older: Sample, newer: Sample, vcpus: Optional[int]) -> Optional[float]:
    """CPU % between two samples, per vCPU; None when it cannot be told (cpuTime went back: the domain
    restarted; or time did not move)."""
    (ts0, cpu0), (ts1, cpu1) = older, newer
    if cpu1 < cpu0 or ts1 <= ts0:
        return None
    return 100.0 * (cpu1 - cpu0) / (ts1 - ts0) / max(1, vcpus or 1)


class CpuMeter:
    """The last two samples of each domain, by key; fed from the subscription's thread, read by the one
    that draws (hence the lock)."""

    def __init__(self) -> None:
        self._samples: Dict[Hashable, Tuple[Sample, ...]] = {}
        self._lock = threading.Lock()

    def knows(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._samples

    def add(self, key: Hashable, sample_ts: int, cpu_time: Optional[int]) -> None:
        """Take one sample; ``cpu_time`` None: unchanged since the domain's last one (a batch says so). Samples
        not newer than the last one kept are ignored (a console's snapshot may hold a batch seen already)."""
        if not sample_ts or isinstance(cpu_time, bool):
            return
        with self._lock:
            samples = self._samples.get(key, ())
            if cpu_time is None:
                if not samples:
                    return
                cpu_time = samples[-1][1]
            if not isinstance(cpu_time, int) or (samples and sample_ts <= samples[-1][0]):
                return
            self._samples[key] = samples[-1:] + ((sample_ts, cpu_time),)

    def percent(self, key: Hashable, vcpus: Optional[int]) -> Optional[float]:
        """The domain's CPU % between its last two samples; None until it has two (warming up)."""
        with self._lock:
            samples = self._samples.get(key, ())
        return cpu_percent(samples[0], samples[1], vcpus) if len(samples) == 2 else None

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget the domains not in ``keys`` (gone from the console)."""
        kept = set(keys)
        with self._lock:
            for key in [k for k in self._samples if k not in kept]:
                del self._samples[key]
