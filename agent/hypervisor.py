"""The typed interface the agent uses to reach libvirt; the adapter implements it.

Objects cross this interface as identities (frozen values), never as libvirt handles,
so nothing outside the adapter holds or imports libvirt objects.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Union


@dataclass(frozen=True)
class NodeIdentity:
    uuid: str
    hostname: str
    uri: str


@dataclass(frozen=True)
class DomainIdentity:
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


Identity = Union[NodeIdentity, DomainIdentity, PoolIdentity, VolumeIdentity]


class HypervisorError(Exception):
    """A libvirt failure, with libvirt's error number and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


NO_SUCH_OBJECT_CODES = frozenset({42, 49, 50})
"""VIR_ERR_NO_DOMAIN, VIR_ERR_NO_STORAGE_POOL, VIR_ERR_NO_STORAGE_VOL."""


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

    @abc.abstractmethod
    def lookup(self, class_name: str, key: str) -> Optional[Identity]:
        """The object's current identity, or None when libvirt no longer has it."""

    @abc.abstractmethod
    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        """Call libvirt ``function`` (its C name) on the object, with positional ``args``.

        Returned libvirt objects come back as identities (also inside lists).
        Raises HypervisorError for libvirt errors and LookupError for unknown functions.
        """

    @abc.abstractmethod
    def close(self) -> None: ...
