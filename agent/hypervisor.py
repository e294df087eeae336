"""The typed interface the agent uses to reach libvirt; the adapter implements it.

Objects cross this interface as identities (frozen values), never as libvirt handles,
so nothing outside the adapter holds or imports libvirt objects.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union


@dataclass(frozen=True)
class NodeIdentity:
    """The host: its UUID (from capabilities or sysinfo, else derived from hostname and URI)."""

    uuid: str
    hostname: str
    uri: str


@dataclass(frozen=True)
class DomainIdentity:
    """A domain; ``id`` changes as it starts and stops."""

    uuid: str
    name: str
    id: int  # -1 when inactive


@dataclass(frozen=True)
class PoolIdentity:
    uuid: str
    name: str


@dataclass(frozen=True)
class VolumeIdentity:
    key: str
    name: str
    path: str
    pool_uuid: str


@dataclass(frozen=True)
class DomainChildIdentity:
    """Something a domain holds by name: a snapshot or a checkpoint (the name is unique per domain only)."""

    domain_uuid: str
    name: str

    @property
    def key(self) -> str:
        """``<domain uuid>/<name>``: unique on the host (a uuid has no "/")."""
        return f"{self.domain_uuid}/{self.name}"


@dataclass(frozen=True)
class SnapshotIdentity(DomainChildIdentity):
    """A domain snapshot (virDomainSnapshot)."""


@dataclass(frozen=True)
class CheckpointIdentity(DomainChildIdentity):
    """A domain checkpoint (virDomainCheckpoint)."""


ChildIdentity = Union[SnapshotIdentity, CheckpointIdentity]
Identity = Union[NodeIdentity, DomainIdentity, PoolIdentity, VolumeIdentity, SnapshotIdentity, CheckpointIdentity]
IDENTITY_TYPES = (NodeIdentity, DomainIdentity, PoolIdentity, VolumeIdentity, SnapshotIdentity, CheckpointIdentity)
"""For isinstance: any identity."""
IDENTITY_CLASSES: Dict[type, str] = {NodeIdentity: "Node", DomainIdentity: "Domain", PoolIdentity: "Pool",
                                     VolumeIdentity: "Volume", SnapshotIdentity: "DomainSnapshot",
                                     CheckpointIdentity: "DomainCheckpoint"}
"""The schema class of each kind of identity's objects."""
CHILD_IDENTITIES: Dict[str, Type[DomainChildIdentity]] = {"DomainSnapshot": SnapshotIdentity,
                                                          "DomainCheckpoint": CheckpointIdentity}
"""The classes whose objects belong to a domain, with their identity types."""


def split_child_key(key: str) -> Tuple[str, str]:
    """A snapshot's or checkpoint's key as (domain uuid, name)."""
    domain_uuid, _, name = key.partition("/")
    return domain_uuid, name


@dataclass(frozen=True)
class ObjectRef:
    """An object passed as a method argument (objId): the adapter turns it into a libvirt handle."""

    class_name: str  # "Domain", "Pool", "Volume", "DomainSnapshot" or "DomainCheckpoint"
    key: str  # the object's key: a uuid, a volume's key, <domain uuid>/<name> for a snapshot or checkpoint


class StreamSlot:
    """Where, among a stream method's arguments, the binding takes the virStream the adapter opens."""

    def __repr__(self) -> str:
        return "STREAM"


STREAM = StreamSlot()


class HypervisorStream(abc.ABC):
    """An open libvirt stream (virStream), used by one stream's threads at a time (agent/streams.py)."""

    @abc.abstractmethod
    def recv(self, nbytes: int) -> Union[bytes, int]:
        """Up to ``nbytes`` bytes; b"" at the end; in a sparse stream, an int: a hole of that many bytes."""

    @abc.abstractmethod
    def send(self, data: bytes) -> None:
        """All of ``data``."""

    @abc.abstractmethod
    def send_hole(self, length: int) -> None:
        """``length`` bytes of zeros, not sent (a sparse stream)."""

    @abc.abstractmethod
    def finish(self) -> None:
        """The end: virStreamFinish (raises HypervisorError when libvirt says the transfer failed)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """virStreamAbort; never raises."""


class HypervisorError(Exception):
    """A libvirt failure, with libvirt's error number and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


NO_SUCH_OBJECT_CODES = frozenset({42, 49, 50, 72, 103})
"""VIR_ERR_NO_DOMAIN, VIR_ERR_NO_STORAGE_POOL, VIR_ERR_NO_STORAGE_VOL, VIR_ERR_NO_DOMAIN_SNAPSHOT,
VIR_ERR_NO_DOMAIN_CHECKPOINT."""


# --- events and statistics (push) ----------------------------------------------------------------

@dataclass(frozen=True)
class HypervisorEvent:
    """One libvirt event, with names instead of numbers.

    ``name`` is the event kind as the schema's event class (``domainLifecycle``,
    ``domainDeviceAdded``, ``poolRefresh`` …); ``event``/``detail`` are the names of
    libvirt's enum values where the callback has them (``started``/``booted``), else "".
    ``data`` holds the callback's other arguments by libvirt's parameter names.
    """

    class_name: str  # "Domain" or "Pool"
    key: str  # uuid
    name: str
    event: str = ""
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    timestamp: int = 0  # when libvirt delivered it (ns since the epoch); 0 until the agent stamps it


EventSink = Callable[[HypervisorEvent], None]

CloseListener = Callable[[str], None]
"""Told why the connection closed by itself: "eof" (libvirtd went away), "keepalive" (it stopped answering
its pings), "error" or "client"."""

DOMAIN_INFO_FIELDS = ("state", "maxMem", "memory", "nrVirtCpu", "cpuTime")
"""virDomainGetInfo's fields, in libvirt's order."""


class Hypervisor(abc.ABC):
    """One libvirt connection, seen as identities and generic calls."""

    uri: str

    @abc.abstractmethod
    def node(self) -> NodeIdentity: ...

    @abc.abstractmethod
    def list_domains(self) -> List[DomainIdentity]: ...

    @abc.abstractmethod
    def list_pools(self) -> List[PoolIdentity]: ...

    @abc.abstractmethod
    def list_volumes(self, pool_uuid: str) -> List[VolumeIdentity]: ...

    def list_children(self, class_name: str, domain_uuid: str) -> Sequence[ChildIdentity]:
        """A domain's snapshots (``DomainSnapshot``) or checkpoints (``DomainCheckpoint``): none when the
        domain is gone or the hypervisor has none. Default: a hypervisor without either."""
        return []

    @abc.abstractmethod
    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        """The object's current identity, or None when libvirt no longer has it."""

    @abc.abstractmethod
    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        """Call libvirt ``function`` (its C name) on the object, with positional ``args``.

        Arguments that are ObjectRefs (also inside lists) are passed as libvirt objects.
        Returned libvirt objects come back as identities (also inside lists, tuples and dicts).
        Raises HypervisorError for libvirt errors, LookupError for unknown functions and
        ValueError when the binding refuses the arguments' values.
        """

    def open_stream(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
                    sparse: bool = False) -> Tuple[Any, HypervisorStream]:
        """Like invoke, for a function that takes a virStream: a new stream goes where ``args`` hold STREAM.
        Returns the function's result and the stream. Default: a hypervisor without streams (LookupError)."""
        raise LookupError(f"this hypervisor has no streams ({function})")

    @abc.abstractmethod
    def close(self) -> None: ...

    # Push support. Defaults describe a hypervisor without events or bulk statistics.

    def watch(self, sink: EventSink) -> None:
        """Register for every domain and storage pool event; ``sink`` is called on libvirt's event thread."""

    def unwatch(self) -> None:
        """Stop delivering events."""

    def bulk_domain_info(self) -> Dict[str, Dict[str, int]]:
        """virDomainGetInfo fields of many domains in one call (virConnectGetAllDomainStats, no-wait).

        Domains the bulk call could not describe completely are left out; callers ask them one by one.
        """
        return {}

    def bulk_domain_info_of(self, keys: Sequence[str]) -> Dict[str, Dict[str, int]]:
        """bulk_domain_info for these domains only (virDomainListGetStats), read from the same counters.

        Samples taken at once after an event or a call must read what the periodic bulk pass reads:
        virDomainGetInfo may count differently (coarser cpuTime), and values would jump back and forth.
        Default: none described (callers ask them one by one).
        """
        return {}

    def alive(self) -> bool:
        """Whether the libvirt connection still works (False after libvirtd went away)."""
        return True

    def reconnect(self) -> None:
        """Open the connection again after it was lost."""

    def connected(self) -> bool:
        """False from the moment the connection closed by itself (libvirt's close callback) until a reconnect
        succeeds; True for a hypervisor that cannot tell. Never asks libvirt: heartbeats read it."""
        return True

    def on_close(self, listener: Optional[CloseListener]) -> None:
        """Have ``listener(reason)`` called when the connection closes by itself (not when close() or
        reconnect() close it); None removes it. It runs on libvirt's event thread: it must only record."""

    def probe(self) -> None:
        """A cheap call that needs libvirtd to answer (virConnectGetLibVersion): the agent makes one per
        heartbeat, so a hung libvirtd shows in its health even when nothing else is asking it."""



class ForwardingHypervisor(Hypervisor):
    """Passes every call on to ``inner``: wrappers (call tracking, metering) override what they watch
    and inherit the rest, so a method added to the interface cannot be silently left out of one."""

    def __init__(self, inner: Hypervisor) -> None:
        self.inner = inner
        self.uri = inner.uri

    def node(self) -> NodeIdentity:
        return self.inner.node()

    def list_domains(self) -> List[DomainIdentity]:
        return self.inner.list_domains()

    def list_pools(self) -> List[PoolIdentity]:
        return self.inner.list_pools()

    def list_volumes(self, pool_uuid: str) -> List[VolumeIdentity]:
        return self.inner.list_volumes(pool_uuid)

    def list_children(self, class_name: str, domain_uuid: str) -> Sequence[ChildIdentity]:
        return self.inner.list_children(class_name, domain_uuid)

    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        return self.inner.lookup(class_name, key)

    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        return self.inner.invoke(class_name, key, function, args)

    def open_stream(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any],
                    sparse: bool = False) -> Tuple[Any, HypervisorStream]:
        return self.inner.open_stream(class_name, key, function, args, sparse)

    def close(self) -> None:
        self.inner.close()

    def watch(self, sink: EventSink) -> None:
        self.inner.watch(sink)

    def unwatch(self) -> None:
        self.inner.unwatch()

    def bulk_domain_info(self) -> Dict[str, Dict[str, int]]:
        return self.inner.bulk_domain_info()

    def bulk_domain_info_of(self, keys: Sequence[str]) -> Dict[str, Dict[str, int]]:
        return self.inner.bulk_domain_info_of(keys)

    def alive(self) -> bool:
        return self.inner.alive()

    def reconnect(self) -> None:
        self.inner.reconnect()

    def connected(self) -> bool:
        return self.inner.connected()

    def on_close(self, listener: Optional[CloseListener]) -> None:
        self.inner.on_close(listener)

    def probe(self) -> None:
        self.inner.probe()
