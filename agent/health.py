"""Which libvirt calls are in flight, and for how long: what heartbeats say of libvirt's health.

Every call the agent makes to libvirt goes through :class:`TrackedHypervisor`, which records it
(what, on which object, since when) for as long as it runs. A call older than the health threshold
is *stuck*; heartbeats carry how many there are and the oldest, so a console can tell a degraded
agent from a healthy one while the agent itself keeps answering from its registry.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .hypervisor import (ChildIdentity, DomainIdentity, ForwardingHypervisor, Hypervisor, HypervisorStream, Identity,
                         NodeIdentity, PoolIdentity, VolumeIdentity)
from .migration import LONG_CALLS


@dataclass(frozen=True)
class InFlight:
    """One libvirt call running now."""

    what: str  # "Domain:<uuid> virDomainDestroy"
    started: float  # time.monotonic()
    thread: int


@dataclass(frozen=True)
class Health:
    """What heartbeats carry (AgentInfo attributes ``libvirt``, ``stuck``, ``stuck_age``, ``stuck_call``)."""

    stuck: int
    stuck_age: float
    stuck_call: str

    @property
    def libvirt(self) -> str:
        return "unresponsive" if self.stuck else "ok"

    def attributes(self) -> Dict[str, Any]:
        return {"libvirt": self.libvirt, "stuck": self.stuck, "stuck_age": round(self.stuck_age, 3),
                "stuck_call": self.stuck_call}


class CallTracker:
    """The libvirt calls in flight (thread-safe; a dict entry per running call, nothing else kept)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._calls: Dict[int, InFlight] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def track(self, what: str) -> Iterator[None]:
        call_id = next(self._ids)
        with self._lock:
            self._calls[call_id] = InFlight(what, self.clock(), threading.get_ident())
        try:
            yield
        finally:
            with self._lock:
                del self._calls[call_id]

    def in_flight(self) -> List[InFlight]:
        with self._lock:
            return sorted(self._calls.values(), key=lambda c: c.started)

    def current(self, thread: int) -> Optional[InFlight]:
        """The oldest call the thread is in (a lookup inside an invoke counts as the invoke)."""
        return next((c for c in self.in_flight() if c.thread == thread), None)

    def health(self, threshold: float) -> Health:
        now = self.clock()
        stuck = [c for c in self.in_flight() if now - c.started > threshold and not c.what.endswith(LONG_CALLS)]
        if not stuck:
            return Health(0, 0.0, "")
        return Health(len(stuck), now - stuck[0].started, stuck[0].what)


class TrackedHypervisor(ForwardingHypervisor):
    """The agent's hypervisor as its parts see it: every call recorded in a CallTracker.

    Calls are passed on to the wrapped hypervisor's attributes at call time, so a test that patches
    the wrapped object's ``invoke`` still sees every call the agent makes.
    """

    def __init__(self, hypervisor: Hypervisor, tracker: CallTracker) -> None:
        super().__init__(hypervisor)
        self.tracker = tracker
        self._node = f"Node:{hypervisor.node().uuid}"

    def _object(self, class_name: str, key: Optional[str]) -> str:
        return self._node if class_name == "Node" or key is None else f"{class_name}:{key}"

    def node(self) -> NodeIdentity:
        with self.tracker.track(f"{self._node} virConnectGetHostname"):
            return self.inner.node()

    def list_domains(self) -> List[DomainIdentity]:
        with self.tracker.track(f"{self._node} virConnectListAllDomains"):
            return self.inner.list_domains()

    def list_pools(self) -> List[PoolIdentity]:
        with self.tracker.track(f"{self._node} virConnectListAllStoragePools"):
            return self.inner.list_pools()

    def list_volumes(self, pool_uuid: str) -> List[VolumeIdentity]:
        with self.tracker.track(f"Pool:{pool_uuid} virStoragePoolListAllVolumes"):
            return self.inner.list_volumes(pool_uuid)

    def list_children(self, class_name: str, domain_uuid: str) -> Sequence[ChildIdentity]:
        with self.tracker.track(f"Domain:{domain_uuid} list {class_name}"):
            return self.inner.list_children(class_name, domain_uuid)

    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        with self.tracker.track(f"{self._object(class_name, key)} lookup"):
            return self.inner.lookup(class_name, key)

    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        with self.tracker.track(f"{self._object(class_name, key)} {function}"):
            return self.inner.invoke(class_name, key, function, args)

    def open_stream(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
                    sparse: bool = False) -> Tuple[Any, HypervisorStream]:
        """The opening call is tracked; the stream's transfers are not (a long download is not a stuck call)."""
        with self.tracker.track(f"{self._object(class_name, key)} {function}"):
            return self.inner.open_stream(class_name, key, function, args, sparse)

    def bulk_domain_info(self) -> Dict[str, Dict[str, int]]:
        with self.tracker.track(f"{self._node} virConnectGetAllDomainStats"):
            return self.inner.bulk_domain_info()

    def bulk_domain_info_of(self, keys: Sequence[str]) -> Dict[str, Dict[str, int]]:
        with self.tracker.track(f"{self._node} virDomainListGetStats"):
            return self.inner.bulk_domain_info_of(keys)

    def alive(self) -> bool:
        with self.tracker.track(f"{self._node} virConnectIsAlive"):
            return self.inner.alive()

    def probe(self) -> None:
        with self.tracker.track(f"{self._node} virConnectGetLibVersion"):
            self.inner.probe()

    def reconnect(self) -> None:
        with self.tracker.track(f"{self._node} virConnectOpen"):
            self.inner.reconnect()

