"""An agent's health as its heartbeats tell it: libvirt responsive or not, calls stuck in libvirt.

Heartbeats carry ``libvirt`` ("ok" | "unresponsive"), ``libvirt_connected`` (false from the moment the
agent's libvirt connection closed until it reconnected), ``stuck`` (calls stuck now), ``stuck_age``
(seconds, the oldest) and ``stuck_call`` (its method). Older agents send none of these: they count
as ok. A disconnected libvirt reads as ``libvirt`` "disconnected". An agent is degraded when libvirt
is anything but "ok" or when any call is stuck — a stuck call holds its object, so calls to it fail
fast or wait; the agent still answers everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from virtq.logs import shown

__all__ = ["AgentHealth"]


@dataclass(frozen=True)
class AgentHealth:
    libvirt: str = "ok"  # "ok", "unresponsive", "disconnected" (or what a newer agent says)
    stuck: int = 0
    stuck_age: float = 0.0
    stuck_call: str = ""

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> "AgentHealth":
        """Tolerant of absent or ill-typed values (an older or a broken agent)."""
        connected = attributes.get("libvirt_connected") is not False  # absent or ill-typed: connected
        libvirt = attributes.get("libvirt", "ok") if connected else "disconnected"
        stuck, age = attributes.get("stuck", 0), attributes.get("stuck_age", 0.0)
        call = attributes.get("stuck_call", "")
        return cls(shown(libvirt, 40) if isinstance(libvirt, str) else "unknown",
                   stuck if isinstance(stuck, int) and not isinstance(stuck, bool) and stuck > 0 else 0,
                   float(age) if isinstance(age, (int, float)) and not isinstance(age, bool) and age > 0 else 0.0,
                   shown(call, 80) if isinstance(call, str) else "")

    @property
    def libvirt_connected(self) -> bool:
        """False while the agent's heartbeats say its libvirt connection is closed."""
        return self.libvirt != "disconnected"

    @property
    def ok(self) -> bool:
        return self.libvirt == "ok" and self.stuck == 0

    @property
    def reason(self) -> str:
        """'' when ok; else e.g. 'libvirt unresponsive, 2 stuck calls, oldest 42 s destroy'."""
        parts = [] if self.libvirt == "ok" else [f"libvirt {self.libvirt}"]
        if self.stuck:
            stuck = f"{self.stuck} stuck call" + ("s" if self.stuck != 1 else "")
            if self.stuck_age:
                stuck += f", oldest {self.stuck_age:.0f} s"
            parts.append(f"{stuck} {self.stuck_call}".rstrip())
        return ", ".join(parts)

    @property
    def state(self) -> str:
        """'ok' or 'degraded: <reason>'."""
        return "ok" if self.ok else f"degraded: {self.reason}"
