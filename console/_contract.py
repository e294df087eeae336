"""The schema contract: an agent whose schema hash differs from the console's may send what the console
reads otherwise (classes, properties, methods changed). The console still follows it, warns once and
says so (``AgentView.schema_mismatch``, ``virtq agents``)."""

from __future__ import annotations

import logging
import threading
from typing import Set, Tuple

from virtq.logs import shown

__all__ = ["SchemaCheck"]

log = logging.getLogger(__name__)


class SchemaCheck:
    """Compares agents' schema hashes with ``expected`` (the console's; "" checks nothing)."""

    def __init__(self, expected: str) -> None:
        self.expected = expected
        self._warned: Set[Tuple[str, str]] = set()  # (agent, its hash) already warned of
        self._lock = threading.Lock()

    def mismatch(self, agent: str, schema_hash: str) -> bool:
        """Whether ``agent``'s schema differs (an agent that sends no hash does not); a WARNING the first
        time for each agent and hash."""
        if not self.expected or not schema_hash or schema_hash == self.expected:
            return False
        with self._lock:
            first = (agent, schema_hash) not in self._warned
            self._warned.add((agent, schema_hash))
        if first:
            log.warning("agent %s uses schema %s, this console %s: calls and properties may not match",
                        shown(agent), shown(schema_hash, 80), self.expected)
        return True
