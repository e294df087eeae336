"""Who may do what: principals, roles made of libvirt's own permissions, and object scopes.

Permissions are libvirt's (``domain:start``, ``storage_vol:delete`` …, as its ACL checks them); each
schema method declares the ones its libvirt call needs. A policy file (INI) grants them::

    [principal reader]        # a client certificate's CN, or a broker user
    roles = readonly

    [principal ops]
    roles = operator

    [principal tenant-a]      # sees and touches only its own domains
    roles = operator
    domains = web* db-a-*

    [role auditor]            # a custom role: permissions, globs allowed
    permissions = connect:getattr connect:read domain:getattr domain:read

    [principal anonymous]     # requests with no authenticated principal
    roles = readonly

``[principal *]`` applies to every authenticated principal the file does not name. Built-in roles:
``readonly`` (what a libvirt read-only connection may do: getattr, read, search_*; no read_secure),
``operator`` (readonly and lifecycle: start, stop, reset, suspend, hibernate, snapshot, send_input …;
no write, delete or migrate) and ``admin`` (everything).
"""

from __future__ import annotations

import configparser
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

from virtq.schema.model import Schema

ANONYMOUS = "anonymous"
ANY_PRINCIPAL = "*"

CLASS_OBJECT = {"Node": "connect", "Domain": "domain", "Pool": "storage_pool", "Volume": "storage_vol",
                "DomainSnapshot": "domain", "DomainCheckpoint": "domain"}
"""The libvirt ACL object each schema class is checked as (libvirt checks snapshots and checkpoints as their
domain)."""

OPERATOR = frozenset({
    "domain:start", "domain:stop", "domain:reset", "domain:suspend", "domain:hibernate", "domain:save",
    "domain:snapshot", "domain:send_input", "domain:send_signal", "domain:inject_nmi", "domain:pm_control",
    "domain:init_control", "domain:set_time", "domain:screenshot", "domain:fs_trim", "domain:fs_freeze",
    "storage_pool:start", "storage_pool:stop", "storage_pool:refresh",
})
"""What an operator may do beyond reading: run guests, not reconfigure, delete or move them."""


class PolicyError(ValueError):
    """A policy file that cannot be used (the message names the file and section)."""


def is_read_only(permission: str) -> bool:
    """What libvirt grants a read-only connection: getattr, read and the search_* permissions."""
    verb = permission.partition(":")[2]
    return verb in ("getattr", "read") or verb.startswith("search_")


def known_permissions(schema: Schema) -> FrozenSet[str]:
    """Every permission some method needs, plus each class's getattr (what queries check)."""
    found = {str(p) for c in schema.classes.values() for m in c.methods.values() for p in m.permissions}
    return frozenset(found | {f"{o}:getattr" for o in CLASS_OBJECT.values()})


def builtin_roles(schema: Schema) -> Dict[str, FrozenSet[str]]:
    known = known_permissions(schema)
    readonly = frozenset(p for p in known if is_read_only(p))
    return {"readonly": readonly, "operator": readonly | OPERATOR, "admin": frozenset({"*"})}


@dataclass(frozen=True)
class Grant:
    """What one principal may do: permission patterns (fnmatch) and, when scoped, which objects."""

    principal: str
    roles: Tuple[str, ...]
    permissions: FrozenSet[str]
    domains: Optional[Tuple[str, ...]] = None
    pools: Optional[Tuple[str, ...]] = None
    _cache: Dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def allows(self, permission: str) -> bool:
        allowed = self._cache.get(permission)
        if allowed is None:
            allowed = self._cache[permission] = any(fnmatch.fnmatchcase(permission, p) for p in self.permissions)
        return allowed

    @property
    def scoped(self) -> bool:
        return self.domains is not None or self.pools is not None

    def sees(self, class_name: str, name: str, parent: str = "") -> bool:
        """Whether an object is in scope: a domain by its name, a pool by its name, a volume by its
        pool's (``parent``), a snapshot or checkpoint by its domain's (``parent``). A scoped principal sees
        only the classes its scope lines name (and the node)."""
        if not self.scoped or class_name == "Node":
            return True
        if class_name == "Domain":
            patterns, what = self.domains, name
        elif CLASS_OBJECT.get(class_name) == "domain":
            patterns, what = self.domains, parent
        else:
            patterns, what = self.pools, (name if class_name == "Pool" else parent)
        return bool(patterns) and any(fnmatch.fnmatchcase(what, p) for p in patterns or ())

    def describe(self) -> str:
        scope = "".join(f" {k}={' '.join(v)}" for k, v in (("domains", self.domains), ("pools", self.pools))
                        if v is not None)
        return f"{self.principal}: {'+'.join(self.roles) or 'custom'}{scope}"


@dataclass(frozen=True)
class Policy:
    """The grants by principal, and where they came from (logged at start, named in denials)."""

    grants: Dict[str, Grant]
    source: str

    def grant_for(self, principal: Optional[str]) -> Optional[Grant]:
        if not principal:
            return self.grants.get(ANONYMOUS)
        return self.grants.get(principal) or self.grants.get(ANY_PRINCIPAL)

    def describe(self) -> str:
        grants = "; ".join(g.describe() for g in self.grants.values()) or "nobody is granted anything"
        return f"{self.source} — {grants}"

    @classmethod
    def everyone(cls, schema: Schema, role: str, source: str) -> "Policy":
        """Anonymous and every authenticated principal get ``role``."""
        permissions = builtin_roles(schema)[role]
        return cls({p: Grant(p, (role,), permissions) for p in (ANONYMOUS, ANY_PRINCIPAL)}, source)

    @classmethod
    def nobody(cls, source: str) -> "Policy":
        return cls({}, source)

    @classmethod
    def from_file(cls, path: Path, schema: Schema) -> "Policy":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy {path}: {exc}") from exc
        return cls.parse(text, schema, str(path))

    @classmethod
    def parse(cls, text: str, schema: Schema, source: str = "<policy>") -> "Policy":
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source)
        except configparser.Error as exc:
            raise PolicyError(f"{source}: {exc}") from exc
        roles = dict(builtin_roles(schema))
        known = known_permissions(schema)
        principals: List[Tuple[str, configparser.SectionProxy]] = []
        for title in parser.sections():
            kind, _, name = title.partition(" ")
            name = name.strip()
            where = f"{source} [{title}]"
            if kind == "role" and name:
                _only(parser[title], {"permissions"}, where)
                if name in roles:
                    raise PolicyError(f"{where}: role {name} is already defined")
                roles[name] = _permissions(parser[title].get("permissions", ""), known, where)
            elif kind == "principal" and name:
                _only(parser[title], {"roles", "permissions", "domains", "pools"}, where)
                principals.append((name, parser[title]))
            else:
                raise PolicyError(f"{where}: sections are [principal NAME] or [role NAME]")
        grants: Dict[str, Grant] = {}
        for name, section in principals:
            where = f"{source} [principal {name}]"
            role_names = tuple(section.get("roles", "").replace(",", " ").split())
            unknown = [r for r in role_names if r not in roles]
            if unknown:
                raise PolicyError(f"{where}: unknown role(s) {', '.join(unknown)} (known: {', '.join(sorted(roles))})")
            permissions = frozenset().union(*(roles[r] for r in role_names),
                                            _permissions(section.get("permissions", ""), known, where))
            grants[name] = Grant(name, role_names, permissions, _globs(section.get("domains")),
                                 _globs(section.get("pools")))
        return cls(grants, source)


def _only(section: configparser.SectionProxy, keys: Iterable[str], where: str) -> None:
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(keys))})")


def _permissions(text: str, known: FrozenSet[str], where: str) -> FrozenSet[str]:
    """Permission patterns; each must match a permission some method needs (a typo grants nothing)."""
    patterns = frozenset(text.replace(",", " ").split())
    for pattern in patterns:
        if pattern != "*" and not any(fnmatch.fnmatchcase(k, pattern) for k in known):
            raise PolicyError(f"{where}: {pattern!r} matches no libvirt permission (e.g. domain:start, "
                              "storage_pool:read, connect:getattr, domain:*)")
    return patterns


def _globs(text: Optional[str]) -> Optional[Tuple[str, ...]]:
    return None if text is None else tuple(text.replace(",", " ").split())


def default_policy(schema: Schema, libvirt_uri: str, exposed: bool) -> Policy:
    """The policy without a policy file.

    ``exposed``: reachable from elsewhere than this host (a listener on a non-loopback address, or a
    broker): nobody may do anything until a policy grants it. Otherwise, on libvirt's test driver
    (nothing real to protect: the demo) everyone may do everything; on a real hypervisor everyone may
    read, and changing anything needs a principal a policy file grants — libvirt's own read-write
    socket is root-only for the same reason.
    """
    if exposed:
        return Policy.nobody("default for an agent reachable from other hosts, with no --policy: every call "
                             "denied")
    if libvirt_uri.startswith("test:"):
        return Policy.everyone(schema, "admin", "default for libvirt's test driver on loopback: everything "
                                                "allowed")
    return Policy.everyone(schema, "readonly", "default for a real hypervisor on loopback, with no --policy: "
                                               "read-only for everyone")
