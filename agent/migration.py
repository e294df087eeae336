"""How a peer's libvirtd reaches this agent's libvirtd for a migration, and where migration calls run.

A console pairs two agents by what they advertise (docs/PROTOCOL.md §5.2: ``migration_uri``, and
``migration_address`` when one is configured): with PEER2PEER the source's libvirtd connects to the
destination's ``migration_uri`` itself, and QEMU's memory stream goes to ``migration_address``.

Consent: a console may migrate a domain into this host when this agent's policy grants its principal
``domain:migrate`` (what libvirt checks on a migration's destination too); the agent advertises who that is
(``migration_from``: principal names, ``*`` for any authenticated one) and consoles refuse to migrate into
an agent whose list does not name them. Advisory — the source's libvirtd connects to this one by itself, and
this libvirtd's own authentication of it is what enforces — but it lets the destination's administrator say
no without touching libvirt's configuration.

A migration runs for seconds to hours, while the console polls the domain's job statistics and may
abort it: the migrate call runs in a lane of its own (``lane``), so the domain's apartment stays free
for getJobStats, abortJob and the re-reads that libvirt's events cause meanwhile.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .policy import Policy

__all__ = ["LONG_CALLS", "MIGRATION_DEADLINE", "MIGRATION_METHODS", "MigrationEndpoint", "accepted_from",
           "implied_uri", "lane"]

MIGRATION_METHODS = frozenset({"migrateToURI", "migrateToURI2", "migrateToURI3"})
"""The calls that run a whole migration (they return when it ended)."""
LONG_CALLS = (" virDomainMigrateToURI", " virDomainMigrateToURI2", " virDomainMigrateToURI3")
"""The libvirt calls (as the agent's call tracker names them) that run a whole migration: never counted stuck in
heartbeats, however long they take (the domain's getJobStats, in its apartment, is)."""
MIGRATION_DEADLINE = 24 * 3600.0
"""Seconds a migrate call may run before its caller is answered with a deadline error: the console follows
the migration by its statistics and aborts it on its own timeout, the agent does not."""


def lane(object_name: str, method_name: str) -> str:
    """The apartment a call runs in: a migrate call's own lane beside its domain's (``Domain:<uuid>#migration``)."""
    return f"{object_name}#migration" if method_name in MIGRATION_METHODS else object_name


def implied_uri(connection_uri: str, hostname: str) -> str:
    """The URI a peer's libvirtd reaches this libvirtd at, from the agent's own connection URI: a URI that
    names a host, or a local socket (``qemu+unix:///system?socket=…``, peers on the same machine), as it is;
    a local one (``qemu:///system``) with this host's name (libvirt's default remote transport, TLS)."""
    parts = urllib.parse.urlsplit(connection_uri)
    if parts.netloc or "+" in parts.scheme or not hostname:
        return connection_uri
    return urllib.parse.urlunsplit((parts.scheme, hostname, parts.path or "/system", parts.query, parts.fragment))


def accepted_from(policy: Policy) -> List[str]:
    """The principals this agent's policy lets migrate domains into its host (``domain:migrate``)."""
    return sorted(name for name, grant in policy.grants.items() if grant.allows("domain:migrate"))


@dataclass(frozen=True)
class MigrationEndpoint:
    """What the agent advertises: ``uri`` (``--migration-uri``), ``address`` (``--migration-address``, None:
    libvirt's default, the destination's host name)."""

    uri: str
    address: Optional[str] = None

    @classmethod
    def of(cls, connection_uri: str, hostname: str, uri: Optional[str] = None,
           address: Optional[str] = None) -> "MigrationEndpoint":
        return cls(uri or implied_uri(connection_uri, hostname), address or None)

    def attributes(self, policy: Policy) -> Dict[str, Any]:
        """The heartbeat's and locate answer's keys (``policy``: the one in force now)."""
        return {"migration_uri": self.uri, "migration_from": accepted_from(policy),
                **({"migration_address": self.address} if self.address else {})}
