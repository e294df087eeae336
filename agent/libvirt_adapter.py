"""The one module that imports libvirt.

Method calls are mapped mechanically from libvirt's C function names to libvirt-python's
methods: the binding is generated code in which every method calls ``libvirtmod.<C name>``,
so reading that source once gives the table (virDomainGetXMLDesc -> virDomain.XMLDesc).
"""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import re
import uuid as uuidlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import libvirt

from .hypervisor import (DomainIdentity, Hypervisor, HypervisorError, Identity, NodeIdentity,
                         PoolIdentity, VolumeIdentity)

log = logging.getLogger(__name__)


def _quiet(ctx: object, error: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


libvirt.registerErrorHandler(_quiet, None)

PY_CLASS = {"Node": "virConnect", "Domain": "virDomain", "Pool": "virStoragePool", "Volume": "virStorageVol"}
HOST_UUID_NAMESPACE = uuidlib.UUID("7b0cbc5b-3a4e-4b7f-9a2e-6b1d0f5e9c11")


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
    """A libvirt connection opened with libvirt.open(uri)."""

    @_translate
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._conn = libvirt.open(uri)
        self._node: Optional[NodeIdentity] = None

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
        if class_name == "Domain":
            return self._conn.lookupByUUIDString(key)
        if class_name == "Pool":
            return self._conn.storagePoolLookupByUUIDString(key)
        if class_name == "Volume":
            return self._conn.storageVolLookupByKey(key)
        raise LookupError(f"unknown class {class_name}")

    @_translate
    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        try:
            return self._identity(self._handle(class_name, key))  # type: ignore[no-any-return]
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL,
                                        libvirt.VIR_ERR_NO_STORAGE_VOL):
                return None
            raise

    def _identity(self, value: Any) -> Any:
        if isinstance(value, libvirt.virDomain):
            return self._domain(value)
        if isinstance(value, libvirt.virStoragePool):
            return self._pool(value)
        if isinstance(value, libvirt.virStorageVol):
            return self._volume(value)
        if isinstance(value, libvirt.virConnect):
            return self.node()
        if isinstance(value, list):
            return [self._identity(v) for v in value]
        return value

    @_translate
    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        target = binding_table().get(function)
        if target is None or target[0] != PY_CLASS.get(class_name):
            raise LookupError(f"libvirt-python has no {function} on {class_name}")
        handle = self._handle(class_name, key)
        return self._identity(getattr(handle, target[1])(*args))

    def close(self) -> None:
        try:
            self._conn.close()
        except libvirt.libvirtError:
            log.debug("closing %s", self.uri, exc_info=True)
