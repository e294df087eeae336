"""The session: what snapshots and jobs need of the console that made them.

:class:`~virtq.console.objects.RemoteObject` and :class:`~virtq.console.Job` hold a session, never the
Console itself, so they sit below it in the dependency order; the Console is the one implementation.
The protocol is generic in the snapshot type, so that this module needs no snapshot class.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, TypeVar

from virtq.schema.codec import ObjectId
from virtq.schema.model import Method

__all__ = ["Session"]

Snapshot = TypeVar("Snapshot")


class Session(Protocol[Snapshot]):
    @property
    def timeout(self) -> float:
        """Seconds a call or a wait takes at most unless told otherwise."""

    def is_lost(self, agent_name: str) -> bool:
        """True while the agent sends no heartbeats."""

    def find(self, object_id: ObjectId) -> Optional[Snapshot]:
        """The current snapshot of an object, None when unknown."""

    def lookup(self, object_id: ObjectId) -> Snapshot:
        """The current snapshot of an object; UnknownRefError when unknown."""

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> bool:
        """Block until ``predicate()`` is true (re-checked after every update); False on timeout."""

    def children(self, parent: Snapshot, class_name: str) -> List[Snapshot]:
        """The objects of ``class_name`` that belong to ``parent`` (a domain's snapshots …)."""

    def xml(self, obj: Snapshot, flags: int = 0) -> str:
        """An object's XML description."""

    def run(self, obj: Snapshot, method_name: str, arguments: Optional[Mapping[str, Any]] = None,
            timeout: Optional[float] = None) -> Tuple[Any, Any]:
        """Call a method on an object as a job: (the job, the result)."""

    def stream(self, obj: Snapshot, method: Method, args: Sequence[Any], kwargs: Dict[str, Any]) -> Any:
        """Call a stream method on an object (console/_streams.py)."""
