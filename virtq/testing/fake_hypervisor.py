"""An in-memory libvirt behind the agent's :class:`~virtq.agent.hypervisor.Hypervisor` seam.

It behaves as libvirt's test driver does where the agent can tell (``HypervisorContract`` holds both
to the same checks): domains start, pause and stop at once, with the test driver's errors and
lifecycle events (delivered on a thread of their own, as libvirt's event loop does). What the real
driver cannot do on demand is the point of the fake: its lists and getInfo values are plain
attributes a test changes, any call can be held at a gate (``gates``), every call is recorded
(``calls``) and libvirtd can go away and come back (``disconnect``, ``down``).
"""

from __future__ import annotations

import queue
import threading
import uuid as uuidlib
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from virtq.agent.hypervisor import (CHILD_IDENTITIES, ChildIdentity, CloseListener, DomainChildIdentity,
                                    DomainIdentity, EventSink, Hypervisor, HypervisorError, HypervisorEvent,
                                    Identity, NodeIdentity, PoolIdentity, VolumeIdentity)

from .call_gates import CallGates
from .fake_children import FakeChildren
from .libvirt_xml import domain_xml

__all__ = ["FAKE_NODE", "FakeHypervisor", "PAUSED", "RUNNING", "SHUTOFF", "numbered_domain", "numbered_uuid"]

RUNNING, PAUSED, SHUTOFF = 1, 3, 5
"""virDomainState values."""
POOL_RUNNING = 2
FREE_MEMORY = 1 << 30
NO_DOMAIN, NO_POOL, NO_VOLUME = 42, 49, 50
INTERNAL_ERROR, OPERATION_FAILED, XML_ERROR, OPERATION_INVALID, SYSTEM_ERROR = 1, 9, 27, 55, 38

FAKE_NODE = NodeIdentity("11111111-1111-4111-8111-111111111111", "fakehost", "fake:///")


def numbered_uuid(i: int) -> str:
    """A UUID that shows its number: 00000000-0000-4000-8000-00000000000<i>."""
    return f"00000000-0000-4000-8000-{i:012d}"


def numbered_domain(i: int, id: int = -1) -> DomainIdentity:
    """Domain ``dom<i>`` with :func:`numbered_uuid`; ``id`` -1 is inactive."""
    return DomainIdentity(numbered_uuid(i), f"dom{i}", id)


@dataclass(frozen=True)
class _Function:
    class_name: str
    min_args: int
    max_args: int
    run: Callable[..., Any]  # (key, *args)


class FakeHypervisor(Hypervisor):
    """Domains, pools and volumes a test puts in (``domains``, ``pools``, ``volumes``: lists it may change
    at any time); ``info`` holds each domain's virDomainGetInfo values (filled from its identity when
    first needed), ``bulk`` what the bulk statistics call answers (nothing, like the test driver);
    ``domain_children`` the domains' snapshots and checkpoints (:class:`FakeChildren`).
    ``events=False``: no lifecycle events (a watcher hears nothing, as from a hypervisor without events);
    ``gates``: the :class:`CallGates` its calls pass (a test may make them before the fake).
    """

    uri = FAKE_NODE.uri

    def __init__(self, domains: Iterable[DomainIdentity] = (), pools: Iterable[PoolIdentity] = (),
                 volumes: Iterable[VolumeIdentity] = (), *, node: NodeIdentity = FAKE_NODE,
                 events: bool = True, gates: Optional[CallGates] = None) -> None:
        self.uri = node.uri
        self.node_identity = node
        self.domains = list(domains)
        self.pools = list(pools)
        self.volumes = list(volumes)
        self.info: Dict[str, List[int]] = {}
        self.bulk: Dict[str, Dict[str, int]] = {}
        self.domain_children = FakeChildren()
        self.calls: List[Tuple[str, Optional[str]]] = []
        """(function, key) of every ``invoke``, in order."""
        self.gates = gates or CallGates()
        self.closed = False
        self.down = False
        """libvirtd is gone: reconnect() fails while it is True (``disconnect`` sets it; a test clears it)."""
        self.events = events
        self._connected = True
        self._close_listener: Optional[CloseListener] = None
        self._transient: Set[str] = set()  # undefined while running: gone once stopped
        self._lock = threading.RLock()
        self._sink: Optional[EventSink] = None
        self._queue: "queue.Queue[Optional[HypervisorEvent]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._functions = self._function_table()

    @classmethod
    def with_running_domains(cls, count: int, **options: Any) -> "FakeHypervisor":
        """``count`` running domains dom0… (ids 1…), dom<i> having used i seconds of CPU."""
        fake = cls([numbered_domain(i, i + 1) for i in range(count)], **options)
        for i in range(count):
            fake.info[numbered_uuid(i)] = [RUNNING, 65536, 65536, 1, 1_000_000_000 * i]
        return fake

    @classmethod
    def like_default_driver(cls, **options: Any) -> "FakeHypervisor":
        """What ``test:///default`` holds when opened: domain ``test`` running, ``default-pool`` active."""
        fake = cls([DomainIdentity("6695eb01-f6a4-8304-79aa-97f2502e193f", "test", 1)],
                   [PoolIdentity("dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566", "default-pool")], **options)
        fake.info["6695eb01-f6a4-8304-79aa-97f2502e193f"] = [RUNNING, 8388608, 2097152, 2, 0]
        return fake

    # --- the objects --------------------------------------------------------------------------------

    def node(self) -> NodeIdentity:
        return self.node_identity

    def list_domains(self) -> List[DomainIdentity]:
        self._reachable()
        with self._lock:
            return list(self.domains)

    def list_pools(self) -> List[PoolIdentity]:
        self._reachable()
        with self._lock:
            return list(self.pools)

    def list_volumes(self, pool_uuid: str) -> List[VolumeIdentity]:
        self._reachable()
        with self._lock:
            if not any(p.uuid == pool_uuid for p in self.pools):
                raise self._not_found("Pool", pool_uuid)
            return [v for v in self.volumes if v.pool_uuid == pool_uuid]

    def list_children(self, class_name: str, domain_uuid: str) -> Sequence[ChildIdentity]:
        self._reachable()
        with self._lock:
            return self.domain_children.of(class_name, domain_uuid)

    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        self.gates.passing("lookup", key)
        self._reachable()
        if class_name not in ("Node", "Domain", "Pool", "Volume", *CHILD_IDENTITIES):
            raise LookupError(f"unknown class {class_name}")
        return self._find(class_name, key)

    def _find(self, class_name: str, key: str) -> Optional[Identity]:
        with self._lock:
            if class_name == "Node":
                return self.node_identity
            if class_name in CHILD_IDENTITIES:
                return self.domain_children.find(class_name, key)
            everything: Dict[str, Sequence[Identity]] = {"Domain": self.domains, "Pool": self.pools,
                                                         "Volume": self.volumes}
            return next((i for i in everything.get(class_name, ()) if _key(i) == key), None)

    def domain_info(self, key: str) -> List[int]:
        """The domain's virDomainGetInfo values (the list itself: a test may change them)."""
        with self._lock:
            info = self.info.get(key)
            if info is None:
                found = self._find("Domain", key)
                active = isinstance(found, DomainIdentity) and found.id >= 0
                info = self.info[key] = [RUNNING if active else SHUTOFF, 65536, 65536, 1, 0]
            return info

    def state_of(self, key: str) -> int:
        return self.domain_info(key)[0]

    def called(self, function: str) -> List[Optional[str]]:
        """The keys ``function`` was invoked on, in order."""
        return [key for name, key in list(self.calls) if name == function]

    # --- calls --------------------------------------------------------------------------------------

    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        self.calls.append((function, key))
        self.gates.passing(function, key)
        self._reachable()
        spec = self._functions.get(function)
        if spec is None or spec.class_name != class_name:
            raise LookupError(f"libvirt-python has no {function} on {class_name}")
        if class_name != "Node" and key is None:
            raise LookupError(f"{class_name} needs a key")
        if not spec.min_args <= len(args) <= spec.max_args:
            raise ValueError(f"libvirt-python refused the arguments of {function}: {len(args)} given")
        with self._lock:
            if class_name != "Node" and self._find(class_name, key or "") is None:
                raise self._not_found(class_name, key or "")
            return spec.run(key, *args)

    def _function_table(self) -> Dict[str, _Function]:
        """The libvirt functions the fake answers: (class, arguments it takes, what it does)."""
        return {
            "virDomainGetInfo": _Function("Domain", 0, 0, lambda key: list(self.domain_info(key))),
            "virDomainGetState": _Function("Domain", 0, 1, lambda key, flags=0: [self.state_of(key), 0]),
            "virDomainGetXMLDesc": _Function("Domain", 0, 1, lambda key, flags=0: self._xml(key)),
            "virDomainCreate": _Function("Domain", 0, 0, self._create),
            "virDomainSuspend": _Function("Domain", 0, 0, self._suspend),
            "virDomainResume": _Function("Domain", 0, 0, self._resume),
            "virDomainDestroy": _Function("Domain", 0, 0, self._destroy),
            "virDomainUndefine": _Function("Domain", 0, 0, self._undefine),
            "virDomainDefineXML": _Function("Node", 1, 1, lambda key, xml: self._define(xml)),
            "virDomainLookupByName": _Function("Node", 1, 1, lambda key, name: self._by_name(name)),
            "virDomainLookupByUUIDString": _Function("Node", 1, 1, lambda key, uuid: self._by_uuid(uuid)),
            "virConnectGetHostname": _Function("Node", 0, 0, lambda key: self.node_identity.hostname),
            "virNodeGetFreeMemory": _Function("Node", 0, 0, lambda key: FREE_MEMORY),
            "virNodeGetInfo": _Function("Node", 0, 0, lambda key: ["x86_64", 16384, 4, 2000, 1, 1, 4, 1]),
            "virStoragePoolGetInfo": _Function("Pool", 0, 0, lambda key: [POOL_RUNNING, 1 << 36, 0, 1 << 36]),
            "virStorageVolGetInfo": _Function("Volume", 0, 0, lambda key: [0, 1 << 26, 0]),
            **{name: _Function(*spec) for name, spec in self.domain_children.functions(self._running).items()},
        }

    def _running(self, key: str) -> bool:
        return self.state_of(key) != SHUTOFF

    @staticmethod
    def _not_found(class_name: str, key: str) -> HypervisorError:
        if class_name in CHILD_IDENTITIES:
            return FakeChildren.not_found(class_name, key)
        if class_name == "Pool":
            return HypervisorError(NO_POOL, f"Storage pool not found: no storage pool with matching uuid '{key}'")
        if class_name == "Volume":
            return HypervisorError(NO_VOLUME, f"Storage volume not found: no storage vol with matching key '{key}'")
        return HypervisorError(NO_DOMAIN, "Domain not found")

    def _domain(self, key: str) -> DomainIdentity:
        found = self._find("Domain", key)
        assert isinstance(found, DomainIdentity)
        return found

    def _set(self, key: str, state: int, id: Optional[int] = None) -> None:
        self.domain_info(key)[0] = state
        if id is not None:
            self.domains = [replace(d, id=id) if d.uuid == key else d for d in self.domains]

    def _create(self, key: str) -> int:
        dom = self._domain(key)
        if self.state_of(key) != SHUTOFF:
            raise HypervisorError(INTERNAL_ERROR, f"internal error: Domain '{dom.name}' is already running")
        self._set(key, RUNNING, max([d.id for d in self.domains] + [0]) + 1)
        self._emit(key, "started", "booted")
        return 0

    def _suspend(self, key: str) -> int:
        return self._pause_or_resume(key, RUNNING, PAUSED, "not running", ("suspended", "paused"))

    def _resume(self, key: str) -> int:
        return self._pause_or_resume(key, PAUSED, RUNNING, "not paused", ("resumed", "unpaused"))

    def _pause_or_resume(self, key: str, before: int, after: int, refusal: str, event: Tuple[str, str]) -> int:
        if self.state_of(key) != before:
            raise HypervisorError(INTERNAL_ERROR, f"internal error: domain '{self._domain(key).name}' {refusal}")
        self._set(key, after)
        self._emit(key, *event)
        return 0

    def _destroy(self, key: str) -> int:
        if self.state_of(key) == SHUTOFF:
            raise HypervisorError(OPERATION_INVALID, "Requested operation is not valid: domain is not running")
        self._set(key, SHUTOFF, -1)
        if key in self._transient:
            self._remove(key)
        self._emit(key, "stopped", "destroyed")
        return 0

    def _undefine(self, key: str) -> int:
        snapshots = self.domain_children.count("DomainSnapshot", key)
        if self.state_of(key) == SHUTOFF and snapshots:
            raise HypervisorError(OPERATION_INVALID, "Requested operation is not valid: cannot delete inactive "
                                                     f"domain with {snapshots} snapshots")
        if self.state_of(key) == SHUTOFF:
            self._remove(key)
        else:
            self._transient.add(key)  # a running domain stays until it stops
        self._emit(key, "undefined", "removed")
        return 0

    def _remove(self, key: str) -> None:
        self.domains = [d for d in self.domains if d.uuid != key]
        self.info.pop(key, None)
        self.domain_children.drop(key)
        self._transient.discard(key)

    def _define(self, xml: str) -> DomainIdentity:
        try:
            root = ElementTree.fromstring(xml)
        except ElementTree.ParseError as exc:
            raise HypervisorError(XML_ERROR, f"XML error: {exc}") from exc
        name, key = root.findtext("name") or "", root.findtext("uuid") or str(uuidlib.uuid4())
        if not name:
            raise HypervisorError(XML_ERROR, "XML error: missing domain name information")
        memory = _memory_kib(root)
        values = [memory, memory, int(root.findtext("vcpu") or 1)]
        same_name = next((d for d in self.domains if d.name == name), None)
        if same_name is not None and same_name.uuid != key:
            raise HypervisorError(OPERATION_FAILED, f"operation failed: domain '{name}' already exists with uuid "
                                                    f"{same_name.uuid}")
        known = self._find("Domain", key)
        if isinstance(known, DomainIdentity):
            self.domain_info(key)[1:4] = values
            self._emit(key, "defined", "updated")
            return known
        identity = DomainIdentity(key, name, -1)
        self.domains.append(identity)
        self.info[key] = [SHUTOFF, *values, 0]
        self._emit(key, "defined", "added")
        return identity

    def _by_name(self, name: str) -> DomainIdentity:
        found = next((d for d in self.domains if d.name == name), None)
        if found is None:
            raise HypervisorError(NO_DOMAIN, "Domain not found")
        return found

    def _by_uuid(self, uuid: str) -> DomainIdentity:
        found = self._find("Domain", uuid)
        if not isinstance(found, DomainIdentity):
            raise HypervisorError(NO_DOMAIN, "Domain not found")
        return found

    def _xml(self, key: str) -> str:
        info = self.domain_info(key)
        return domain_xml(self._domain(key).name, key, memory_kib=info[1], vcpus=info[3])

    def close(self) -> None:
        self.unwatch()
        self.closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5)
            self._thread = None

    # --- push support ---------------------------------------------------------------------------------

    def watch(self, sink: EventSink) -> None:
        self._sink = sink
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="fake-hypervisor-events", daemon=True)
            self._thread.start()

    def unwatch(self) -> None:
        self._sink = None

    def _emit(self, key: str, event: str, detail: str) -> None:
        if self.events and self._sink is not None:
            self._queue.put(HypervisorEvent("Domain", key, "domainLifecycle", event, detail, {}))

    def _deliver(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            sink = self._sink
            if sink is not None:
                sink(event)

    def bulk_domain_info(self) -> Dict[str, Dict[str, int]]:
        self.gates.passing("bulk", None)
        self._reachable()
        return {key: dict(values) for key, values in self.bulk.items()}

    def bulk_domain_info_of(self, keys: Sequence[str]) -> Dict[str, Dict[str, int]]:
        self.gates.passing("bulk", None)
        self._reachable()
        return {key: dict(self.bulk[key]) for key in keys if key in self.bulk}

    def alive(self) -> bool:
        return not self.closed and self._connected

    def probe(self) -> None:
        self.gates.passing("probe", None)
        self._reachable()

    # --- the connection --------------------------------------------------------------------------------

    def reconnect(self) -> None:
        if self.down:
            raise HypervisorError(SYSTEM_ERROR, "Failed to connect socket to '/run/libvirt/libvirt-sock': "
                                                "No such file or directory")
        self.closed = False
        self._connected = True

    def connected(self) -> bool:
        return self._connected

    def on_close(self, listener: Optional[CloseListener]) -> None:
        self._close_listener = listener

    def disconnect(self, reason: str = "eof", down: bool = True) -> None:
        """The connection closes by itself, as when libvirtd exits ("eof") or stops answering its keepalive
        ("keepalive"): calls fail until a reconnect, which fails while ``down``. The close listener is told
        on the calling thread."""
        self.down = down
        self._connected = False
        listener = self._close_listener
        if listener is not None:
            listener(reason)

    def _reachable(self) -> None:
        if not self._connected:
            raise HypervisorError(INTERNAL_ERROR, "internal error: client socket is closed")


def _key(identity: Identity) -> str:
    return identity.key if isinstance(identity, (VolumeIdentity, DomainChildIdentity)) else identity.uuid


_KIB = {"KiB": 1, "k": 1, "K": 1, "MiB": 1024, "M": 1024, "GiB": 1024 ** 2, "G": 1024 ** 2}


def _memory_kib(domain: ElementTree.Element) -> int:
    element = domain.find("memory")
    if element is None or not (element.text or "").strip():
        return 65536
    return int(element.text or 0) * _KIB.get(element.get("unit", "KiB"), 1)
