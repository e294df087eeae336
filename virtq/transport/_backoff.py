"""How long a Connection waits before its next reconnect attempt."""

from __future__ import annotations

import random
from typing import Optional


class Backoff:
    """Exponential backoff with full jitter: delays in [0, min(cap, base * 2**n)]."""

    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: Optional[random.Random] = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = self._rng.uniform(self.base / 2, min(self.cap, self.base * 2 ** self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
