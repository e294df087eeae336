"""Domain states: libvirt's virDomainState codes, their names, and the lifecycle events that lead to them.

Part of the schema because agents push the codes (the ``state`` statistic) and consoles name them; both
sides read them here.
"""

from __future__ import annotations

from typing import Dict, FrozenSet

__all__ = ["DOMAIN_STATES", "LIFECYCLE_STATES", "STATE_CODES"]

DOMAIN_STATES: Dict[int, str] = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown",
                                 5: "shutoff", 6: "crashed", 7: "pmsuspended"}
"""virDomainState names."""
STATE_CODES: Dict[str, int] = {name: code for code, name in DOMAIN_STATES.items()}
"""virDomainState codes by name."""

LIFECYCLE_STATES: Dict[str, FrozenSet[int]] = {
    "started": frozenset({1}), "resumed": frozenset({1}), "suspended": frozenset({3}),
    "stopped": frozenset({5}), "shutdown": frozenset({4, 5}), "crashed": frozenset({5, 6}),
    "pmsuspended": frozenset({7}),
}
"""The virDomainState codes a lifecycle event leads to: its reason explains only a change to one of them."""
