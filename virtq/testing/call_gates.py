"""Calls that block until the test releases them: a hung libvirtd, one call at a time.

A fake hypervisor passes each call through its gates (``passing(function, key)``); a test closes the
gate of one function on one object (or on every object), sees the call arrive (``entered``), checks
what the rest of the agent does meanwhile, and opens the gates again.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional, Tuple

__all__ = ["CallGates"]

GateKey = Tuple[str, Optional[str]]


class CallGates:
    """Gates by (function, key); key None closes the function for every object. The names passed by
    :class:`~virtq.testing.FakeHypervisor` are libvirt's C function names for ``invoke``, and ``lookup``,
    ``bulk`` and ``probe`` for those methods."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        """How long a call waits at a closed gate before it fails (a test that never opened it)."""
        self.gates: Dict[GateKey, threading.Event] = {}
        self.entered: Dict[GateKey, threading.Event] = {}
        """Set once a call has arrived at the closed gate of that (function, key)."""

    def close(self, function: str, key: Optional[str] = None) -> threading.Event:
        """Hold calls of ``function`` (on ``key``, or on anything); the gate returned opens with ``set()``."""
        self.entered[(function, key)] = threading.Event()
        gate = self.gates[(function, key)] = threading.Event()
        return gate

    def passing(self, function: str, key: Optional[str]) -> None:
        """Called by the fake for each call: waits while its gate is closed."""
        for target in ((function, key), (function, None)):
            gate = self.gates.get(target)
            if gate is not None and not gate.is_set():
                self.entered[target].set()
                if not gate.wait(self.timeout):
                    raise AssertionError(f"{function} on {key} was never released")
                return

    def open_all(self) -> None:
        """Release every held call (a test's teardown does, so that no thread stays stuck)."""
        for gate in self.gates.values():
            gate.set()
