"""The libvirt connection behind the Hypervisor interface (this, agent/libvirt_events.py and agent/libvirt_streams.py
import libvirt).

Method calls are mapped mechanically from libvirt's C function names to libvirt-python's
methods: the binding is generated code in which every method calls ``libvirtmod.<C name>``,
so reading that source once gives the table (virDomainGetXMLDesc -> virDomain.XMLDesc).

Importing this module starts no thread: libvirt's event loop starts when a connection is opened.
"""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import re
import threading
import uuid as uuidlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import libvirt

from .hypervisor import (CheckpointIdentity, ChildIdentity, CloseListener, DomainIdentity, EventSink, Hypervisor,
                         HypervisorError, HypervisorEvent, Identity, NodeIdentity, ObjectRef, PoolIdentity,
                         SnapshotIdentity, VolumeIdentity, split_child_key)
from .hypervisor import HypervisorStream
from .libvirt_events import deregister_callbacks, ensure_event_loop, register_callbacks
from .libvirt_streams import open_segmented, open_stream

__all__ = ["LibvirtHypervisor", "binding_method", "binding_table", "ensure_event_loop"]

log = logging.getLogger(__name__)


def _quiet(ctx: object, error: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


libvirt.registerErrorHandler(_quiet, None)

PY_CLASS = {"Node": "virConnect", "Domain": "virDomain", "Pool": "virStoragePool", "Volume": "virStorageVol",
            "DomainSnapshot": "virDomainSnapshot", "DomainCheckpoint": "virDomainCheckpoint"}
LOOKUP = {"Domain": "lookupByUUIDString", "Pool": "storagePoolLookupByUUIDString", "Volume": "storageVolLookupByKey"}
"""How the connection finds an object by its key."""
CHILDREN = {"DomainSnapshot": ("listAllSnapshots", "snapshotLookupByName"),
            "DomainCheckpoint": ("listAllCheckpoints", "checkpointLookupByName")}
"""How a domain lists its snapshots or checkpoints, and finds one by name."""
GONE = frozenset({libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL,
                  libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT, libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT})
"""libvirt's errors for an object that is not there (any more)."""
HOST_UUID_NAMESPACE = uuidlib.UUID("7b0cbc5b-3a4e-4b7f-9a2e-6b1d0f5e9c11")
KEEPALIVE = (5, 3)
"""libvirt's keepalive on the agent's connection (interval s, count): a ping after 5 s without traffic, the
connection closed (reason "keepalive") after 3 unanswered ones, so a libvirtd that vanished without closing
its socket (a frozen host, a cut network) is noticed in ~20 s. A libvirtd that exits is noticed at once (EOF)."""
CLOSE_REASONS = {libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error", libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "eof",
                 libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive",
                 libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "client"}
"""libvirt's close reasons by name, as CloseListeners are told them."""


@functools.lru_cache(maxsize=1)
def binding_table() -> Dict[str, Tuple[str, str]]:
    """C function name -> (libvirt-python class, method), read from the binding's source."""
    tree = ast.parse(inspect.getsource(libvirt))
    table: Dict[str, Tuple[str, str]] = {}
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id == "libvirtmod" and node.attr.startswith("vir")):
                    table.setdefault(node.attr, (cls.name, fn.name))
    return table


def binding_method(function: str) -> Optional[Tuple[str, Callable[..., Any]]]:
    """The libvirt-python class name and (unbound) method wrapping C ``function``; None when unbound.

    For the schema generator, which reads the methods' signatures without importing libvirt itself.
    """
    target = binding_table().get(function)
    if target is None:
        return None
    return target[0], getattr(getattr(libvirt, target[0]), target[1])


def _translate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn libvirt.libvirtError into HypervisorError, keeping libvirt's code and message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except libvirt.libvirtError as exc:
            raise HypervisorError(exc.get_error_code() or 1, exc.get_error_message() or str(exc)) from exc

    return wrapper


class LibvirtHypervisor(Hypervisor):
    """A libvirt connection opened with libvirt.open(uri).

    Opening the first one starts libvirt's event loop thread: libvirt delivers a connection's events only
    when the loop was registered before the connection was opened. That loop also runs the connection's
    keepalive (``keepalive``: interval, count) and its close callback, which makes ``connected()`` False.
    """

    @_translate
    def __init__(self, uri: str, keepalive: Tuple[int, int] = KEEPALIVE) -> None:
        self.uri = uri
        self.keepalive = keepalive
        binding_table()  # read the binding once up front, not inside the first (time-boxed) sample
        ensure_event_loop()
        self._close_listener: Optional[CloseListener] = None
        self._connected = True
        self._reconnecting = threading.Lock()
        self._conn: Any = None
        self._conn = self._open()
        self._node: Optional[NodeIdentity] = None
        self._sink: Optional[EventSink] = None
        self._callbacks: List[Tuple[str, int]] = []
        self._unsupported: Set[str] = set()  # bulk functions and child classes this hypervisor refused

    @_translate
    def node(self) -> NodeIdentity:
        if self._node is None:
            hostname = self._conn.getHostname()
            self._node = NodeIdentity(self._host_uuid(hostname), hostname, self.uri)
        return self._node

    def _host_uuid(self, hostname: str) -> str:
        """The host UUID from capabilities or sysinfo; else one derived from hostname and URI."""
        for source in (self._conn.getCapabilities, self._conn.getSysinfo):
            try:
                text = source()
            except libvirt.libvirtError:
                continue
            match = re.search(r"<uuid>([0-9a-fA-F-]{36})</uuid>", text) or \
                re.search(r"<entry name='uuid'>([0-9a-fA-F-]{36})</entry>", text)
            if match:
                return match.group(1).lower()
        return str(uuidlib.uuid5(HOST_UUID_NAMESPACE, f"{hostname}|{self.uri}"))

    @staticmethod
    def _domain(dom: Any) -> DomainIdentity:
        return DomainIdentity(dom.UUIDString(), dom.name(), dom.ID())

    @staticmethod
    def _pool(pool: Any) -> PoolIdentity:
        return PoolIdentity(pool.UUIDString(), pool.name())

    @staticmethod
    def _volume(vol: Any, pool_uuid: Optional[str] = None) -> VolumeIdentity:
        if pool_uuid is None:
            pool_uuid = vol.storagePoolLookupByVolume().UUIDString()
        return VolumeIdentity(vol.key(), vol.name(), vol.path(), pool_uuid)

    @_translate
    def list_domains(self) -> List[DomainIdentity]:
        return [self._domain(d) for d in self._conn.listAllDomains(0)]

    @_translate
    def list_pools(self) -> List[PoolIdentity]:
        return [self._pool(p) for p in self._conn.listAllStoragePools(0)]

    @staticmethod
    def _child(handle: Any) -> ChildIdentity:
        kind = SnapshotIdentity if isinstance(handle, libvirt.virDomainSnapshot) else CheckpointIdentity
        return kind(handle.getDomain().UUIDString(), handle.getName())

    @_translate
    def list_children(self, class_name: str, domain_uuid: str) -> List[ChildIdentity]:
        """[] for a domain gone meanwhile, or a driver without them (asked once: it does not change)."""
        if class_name in self._unsupported:
            return []
        try:
            return [self._child(c) for c in getattr(self._handle("Domain", domain_uuid), CHILDREN[class_name][0])(0)]
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
                self._unsupported.add(class_name)
            elif exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            return []

    @_translate
    def list_volumes(self, pool_uuid: str) -> List[VolumeIdentity]:
        pool = self._conn.storagePoolLookupByUUIDString(pool_uuid)
        if not pool.isActive():
            return []
        return [self._volume(v, pool_uuid) for v in pool.listAllVolumes(0)]

    def _handle(self, class_name: str, key: Optional[str]) -> Any:
        if class_name == "Node":
            return self._conn
        if key is None:
            raise LookupError(f"{class_name} needs a key")
        if class_name in CHILDREN:
            domain_uuid, name = split_child_key(key)
            return getattr(self._conn.lookupByUUIDString(domain_uuid), CHILDREN[class_name][1])(name, 0)
        if class_name not in LOOKUP:
            raise LookupError(f"unknown class {class_name}")
        return getattr(self._conn, LOOKUP[class_name])(key)

    @_translate
    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        try:
            return self._identity(self._handle(class_name, key))  # type: ignore[no-any-return]
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in GONE:
                return None
            raise

    def _identity(self, value: Any) -> Any:
        """libvirt objects in a result, at any depth, as identities (tuples become lists)."""
        if isinstance(value, libvirt.virDomain):
            return self._domain(value)
        if isinstance(value, libvirt.virStoragePool):
            return self._pool(value)
        if isinstance(value, libvirt.virStorageVol):
            return self._volume(value)
        if isinstance(value, (libvirt.virDomainSnapshot, libvirt.virDomainCheckpoint)):
            return self._child(value)
        if isinstance(value, libvirt.virConnect):
            return self.node()
        if isinstance(value, (list, tuple)):
            return [self._identity(v) for v in value]
        if isinstance(value, dict):
            return {k: self._identity(v) for k, v in value.items()}
        return value

    def _argument(self, value: Any) -> Any:
        """An argument as the binding takes it: ObjectRefs (also in lists) as libvirt objects; a
        list of booleans (a CPU map) as a tuple, the binding's convention for CPU maps."""
        if isinstance(value, ObjectRef):
            return self._handle(value.class_name, value.key)
        if isinstance(value, list):
            if value and all(isinstance(v, bool) for v in value):
                return tuple(value)
            return [self._argument(v) for v in value]
        return value

    @_translate
    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        return self._call(class_name, key, function, args, lambda bound, values: bound(*values))

    @_translate
    def open_stream(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
                    sparse: bool = False) -> Tuple[Any, HypervisorStream]:
        def open_one(positional: Sequence[Any]) -> Tuple[Any, HypervisorStream]:
            opened: List[HypervisorStream] = []

            def through(bound: Callable[..., Any], values: Sequence[Any]) -> Any:
                result, stream = open_stream(self._conn, bound, values, sparse)
                opened.append(stream)
                return result

            return self._call(class_name, key, function, positional, through), opened[0]

        return open_segmented(function, args, open_one)

    def _call(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
              through: Callable[[Callable[..., Any], Sequence[Any]], Any]) -> Any:
        target = binding_table().get(function)
        if target is None or target[0] != PY_CLASS.get(class_name):
            raise LookupError(f"libvirt-python has no {function} on {class_name}")
        handle = self._handle(class_name, key)
        bound = getattr(handle, target[1])
        values = [self._argument(a) for a in args]
        try:
            result = through(bound, values)
        except (TypeError, ValueError, OverflowError, LookupError) as exc:  # the binding's argument checks
            raise ValueError(f"libvirt-python refused the arguments of {function}: {exc}") from exc
        return self._identity(result)

    def close(self) -> None:
        self.unwatch()
        self._drop(self._conn)

    # --- the connection itself ---------------------------------------------------------------------

    def _open(self) -> Any:
        """A new connection with libvirt's keepalive and our close callback (drivers without them, like the
        test driver, which cannot lose a daemon, refuse quietly)."""
        conn = libvirt.open(self.uri)
        steps: Tuple[Tuple[str, Callable[[], object]], ...] = (
            ("keepalive", lambda: conn.setKeepAlive(*self.keepalive)),
            ("close callback", lambda: conn.registerCloseCallback(self._closed, None)))
        for what, step in steps:
            try:
                step()
            except libvirt.libvirtError as exc:
                log.debug("%s: no %s: %s", self.uri, what, exc.get_error_message())
        return conn

    def _drop(self, conn: Any) -> None:
        """Close a connection we are done with; its close callback goes first (this closing is not a loss)."""
        for step in (conn.unregisterCloseCallback, conn.close):
            try:
                step()
            except libvirt.libvirtError:
                log.debug("closing %s", self.uri, exc_info=True)

    def _closed(self, conn: Any, reason: int, opaque: object) -> None:
        """libvirt's close callback, on its event thread: record the loss and tell the listener."""
        if conn is not self._conn:
            return  # a connection already replaced
        self._connected = False
        listener = self._close_listener
        if listener is None:
            return
        try:
            listener(CLOSE_REASONS.get(reason, f"reason {reason}"))
        except Exception:  # noqa: BLE001 - never raise into libvirt's loop
            log.exception("close listener of %s", self.uri)

    def connected(self) -> bool:
        return self._connected

    def on_close(self, listener: Optional[CloseListener]) -> None:
        self._close_listener = listener

    # --- push support ------------------------------------------------------------------------------

    def watch(self, sink: EventSink) -> None:
        self._sink = sink
        self._callbacks = register_callbacks(self._conn, self.uri, self._deliver)

    def _deliver(self, event: HypervisorEvent) -> None:
        if self._sink is not None:
            self._sink(event)

    def unwatch(self) -> None:
        self._sink = None
        deregister_callbacks(self._conn, self._callbacks)
        self._callbacks = []

    _BULK_KEYS = {"state": "state.state", "maxMem": "balloon.maximum", "memory": "balloon.current",
                  "nrVirtCpu": "vcpu.current", "cpuTime": "cpu.time"}

    def bulk_domain_info(self) -> Dict[str, Dict[str, int]]:
        found: Dict[str, Dict[str, int]] = self._bulk_info(None)
        return found

    def bulk_domain_info_of(self, keys: Sequence[str]) -> Dict[str, Dict[str, int]]:
        found: Dict[str, Dict[str, int]] = self._bulk_info(keys)
        return found

    @_translate
    def _bulk_info(self, keys: Optional[Sequence[str]]) -> Dict[str, Dict[str, int]]:
        """virConnectGetAllDomainStats (all domains) or virDomainListGetStats (these), no-wait."""
        function = "virConnectGetAllDomainStats" if keys is None else "virDomainListGetStats"
        if function in self._unsupported:
            return {}
        stats = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
                 | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU)
        flags = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
        domains = []
        for key in keys or ():
            try:
                domains.append(self._conn.lookupByUUIDString(key))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        if keys is not None and not domains:
            return {}
        try:
            records = self._conn.getAllDomainStats(stats, flags) if keys is None else \
                self._conn.domainListGetStats(domains, stats, flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                self._unsupported.add(function)
                return {}
            raise
        found: Dict[str, Dict[str, int]] = {}
        for dom, record in records:
            if record.get("state.state") == libvirt.VIR_DOMAIN_SHUTOFF:
                # An inactive domain has used no CPU (virDomainGetInfo says 0). libvirt's bulk cpu.time
                # is not that: without cgroups it reads /proc/self of pid 0, i.e. libvirtd's own CPU
                # time, which moves all the time; with cgroups the key is missing.
                record = {**record, "cpu.time": 0}
            if all(key in record for key in self._BULK_KEYS.values()):
                found[dom.UUIDString()] = {name: int(record[key]) for name, key in self._BULK_KEYS.items()}
        return found

    def alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    @_translate
    def probe(self) -> None:
        self._conn.getLibVersion()  # an RPC: isAlive only looks at the local socket

    @_translate
    def reconnect(self) -> None:
        with self._reconnecting:  # the reconnector and the reconcile may both try
            sink = self._sink
            self.unwatch()
            self._sink = sink  # kept across failed attempts: the one that succeeds watches again
            self._drop(self._conn)
            self._conn = self._open()
            self._connected = True
            if sink is not None:
                self.watch(sink)
