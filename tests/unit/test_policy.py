"""The policy file, the built-in roles, the defaults, and a fuzz of the access check against a reference."""

from __future__ import annotations

import fnmatch
import random
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from virtq.agent.access import Access
from virtq.agent.hypervisor import DomainIdentity, Identity, NodeIdentity, PoolIdentity, VolumeIdentity
from virtq.agent.policy import (ANONYMOUS, OPERATOR, Policy, PolicyError, builtin_roles, default_policy,
                                is_read_only, known_permissions)
from virtq.agent.registry import Entry, Registry
from virtq.schema import default_schema
from virtq.schema.errors import AccessDeniedError
from virtq.schema.model import Method
from virtq.testing import FakeHypervisor

SCHEMA = default_schema()
KNOWN = sorted(known_permissions(SCHEMA))
ROLES = builtin_roles(SCHEMA)


def test_readonly_is_a_libvirt_read_only_connection() -> None:
    readonly = ROLES["readonly"]
    assert {"domain:read", "domain:getattr", "connect:search_domains", "storage_vol:read"} <= readonly
    assert all(p.split(":")[1] in ("getattr", "read") or p.split(":")[1].startswith("search_") for p in readonly)
    assert "domain:read_secure" not in readonly and "domain:write" not in readonly


def test_operator_runs_guests_but_does_not_reconfigure_delete_or_move_them() -> None:
    operator = ROLES["operator"]
    assert {"domain:start", "domain:stop", "domain:suspend", "domain:reset", "domain:snapshot",
            "domain:send_input", "storage_pool:refresh"} <= operator
    assert ROLES["readonly"] < operator
    for forbidden in ("domain:write", "domain:delete", "domain:migrate", "storage_vol:delete",
                      "storage_pool:delete", "connect:write", "domain:read_secure"):
        assert forbidden not in operator
    assert OPERATOR <= set(KNOWN)  # each is some method's (snapshots since DomainSnapshot, screenshots since streams)


def test_a_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.ini"
    path.write_text("""
[role auditor]
permissions = connect:getattr, domain:read domain:getattr

[principal monitoring]
roles = readonly

[principal tenant-a]
roles = operator auditor
permissions = domain:write
domains = web* db-a-*

[principal anonymous]
roles = auditor

[principal *]
roles = readonly
""")
    policy = Policy.from_file(path, SCHEMA)
    assert policy.source == str(path)
    tenant = policy.grant_for("tenant-a")
    assert tenant is not None and tenant.roles == ("operator", "auditor")
    assert tenant.allows("domain:write") and tenant.allows("domain:start") and not tenant.allows("domain:delete")
    assert tenant.scoped and tenant.domains == ("web*", "db-a-*") and tenant.pools is None
    assert tenant.sees("Domain", "web1") and tenant.sees("Domain", "db-a-7") and not tenant.sees("Domain", "db-b")
    assert not tenant.sees("Pool", "images") and tenant.sees("Node", "anything")
    anonymous = policy.grant_for(None)
    assert anonymous is not None and anonymous.allows("domain:read") and not anonymous.allows("domain:stop")
    stranger = policy.grant_for("someone-else")
    assert stranger is not None and stranger.roles == ("readonly",)


@pytest.mark.parametrize("text, message", [
    ("[principal x]\nroles = superuser\n", "unknown role(s) superuser"),
    ("[principal x]\nrole = admin\n", "unknown key(s) role"),
    ("[role r]\npermissions = domain:strat\n", "'domain:strat' matches no libvirt permission"),
    ("[user x]\nroles = admin\n", "sections are [principal NAME] or [role NAME]"),
    ("[role readonly]\npermissions = domain:read\n", "role readonly is already defined"),
    ("[principal x\n", "policy"),
])
def test_policy_errors_name_the_place(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Policy.parse(text, SCHEMA, "policy")


def test_defaults_by_exposure() -> None:
    exposed = default_policy(SCHEMA, "test:///default", exposed=True)
    assert exposed.grant_for(None) is None and exposed.grant_for("anyone") is None
    demo = default_policy(SCHEMA, "test:///default", exposed=False)
    anyone = demo.grant_for(None)
    assert anyone is not None and anyone.allows("domain:delete")
    real = default_policy(SCHEMA, "qemu:///system", exposed=False)
    grant = real.grant_for(None)
    assert grant is not None and grant.allows("domain:read") and not grant.allows("domain:stop")
    certified = real.grant_for("cert-cn")
    assert certified is not None and not certified.allows("domain:stop")


# --- fuzz: the access check never allows what the policy does not grant ---------------------------

POOLS = [PoolIdentity("00000000-0000-0000-0000-00000000000a", "images"),
         PoolIdentity("00000000-0000-0000-0000-00000000000b", "tenant-pool")]
NODE = NodeIdentity("00000000-0000-0000-0000-000000000001", "hv", "qemu:///system")
OBJECTS: List[Identity] = [
    NODE,
    *[DomainIdentity(f"00000000-0000-0000-0000-0000000001{i:02d}", name, i)
      for i, name in enumerate(["web1", "web2", "db1", "build", "tenant-x"])],
    *POOLS,
    VolumeIdentity("/images/a.img", "a.img", "/images/a.img", POOLS[0].uuid),
    VolumeIdentity("/tenant/b.img", "b.img", "/tenant/b.img", POOLS[1].uuid),
]


def objects_registry() -> Registry:
    """A registry holding OBJECTS (read from a fake hypervisor that has just them)."""
    hv = FakeHypervisor([i for i in OBJECTS if isinstance(i, DomainIdentity)], POOLS,
                        [i for i in OBJECTS if isinstance(i, VolumeIdentity)], node=NODE, events=False)
    registry = Registry(SCHEMA, hv, "libvirt.org:virtq:fuzz", 1)
    registry.sync_all()
    assert {e.identity for e in registry.entries()} == set(OBJECTS)
    return registry


GLOBS = ["web*", "db?", "*", "tenant-*", "nothing", "images", "b*"]


def _random_policy(rng: random.Random) -> str:
    lines: List[str] = []
    custom = []
    for r in range(rng.randint(0, 2)):
        perms = rng.sample(KNOWN, rng.randint(0, 6)) + (["domain:*"] if rng.random() < 0.2 else [])
        lines += [f"[role custom{r}]", f"permissions = {' '.join(perms)}"]
        custom.append(f"custom{r}")
    for name in ("alice", "bob", ANONYMOUS, "*"):
        if rng.random() < 0.3:
            continue
        roles = rng.sample(["readonly", "operator", "admin", *custom], rng.randint(0, 2))
        lines += [f"[principal {name}]", f"roles = {' '.join(roles)}"]
        if rng.random() < 0.3:
            lines.append(f"permissions = {' '.join(rng.sample(KNOWN, 2))}")
        if rng.random() < 0.4:
            lines.append(f"domains = {' '.join(rng.sample(GLOBS, rng.randint(0, 2)))}")
        if rng.random() < 0.3:
            lines.append(f"pools = {' '.join(rng.sample(GLOBS, rng.randint(0, 2)))}")
    return "\n".join(lines) + "\n"


def _reference(text: str, principal: Optional[str], entry: Entry, method: Method, flags: int) -> bool:
    """What the policy grants, computed independently: section by section, with fnmatch."""
    sections: Dict[str, Dict[str, str]] = {}
    current: Dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    name = principal or ANONYMOUS
    section = sections.get(f"principal {name}")
    if section is None and principal:
        section = sections.get("principal *")
    if section is None:
        return False
    patterns: Set[str] = set(section.get("permissions", "").split())
    for role in section.get("roles", "").split():
        patterns |= set(sections[f"role {role}"]["permissions"].split()) if f"role {role}" in sections \
            else set(ROLES[role])
    needed = [str(p) for p in method.permissions if p.applies(flags)]
    if not needed or not all(any(fnmatch.fnmatchcase(n, p) for p in patterns) for n in needed):
        return False
    if "domains" in section or "pools" in section:
        identity = entry.identity
        if isinstance(identity, DomainIdentity):
            return any(fnmatch.fnmatchcase(identity.name, g) for g in section.get("domains", "").split())
        if isinstance(identity, (PoolIdentity, VolumeIdentity)):
            pool = identity.name if isinstance(identity, PoolIdentity) else \
                next(p.name for p in POOLS if p.uuid == identity.pool_uuid)
            return any(fnmatch.fnmatchcase(pool, g) for g in section.get("pools", "").split())
    return True


def test_fuzz_the_access_check_never_allows_what_the_policy_does_not_grant() -> None:
    rng = random.Random(20261203)
    registry = objects_registry()
    entries = sorted(registry.entries(), key=lambda e: OBJECTS.index(e.identity))  # the seed's order
    allowed = denied = 0
    for _ in range(300):
        text = _random_policy(rng)
        access = Access(Policy.parse(text, SCHEMA), registry)
        for _ in range(40):
            entry = rng.choice(entries)
            method = rng.choice(list(SCHEMA.cls(entry.class_name).methods.values()))
            if any(a.references for a in method.inputs) or (entry.class_name == "Node" and any(
                    p.object != "connect" for p in method.permissions)):
                continue  # objects in arguments, or defined from XML: checked elsewhere, by their own tests
            flags = rng.choice([0, 1, 2, 3, rng.getrandbits(8)])
            principal = rng.choice(["alice", "bob", "carol", None])
            expected = _reference(text, principal, entry, method, flags)
            try:
                access.check_call(principal, entry, method, {"flags": flags})
                assert expected, f"allowed {principal} {entry.class_name}.{method.name} flags={flags}\n{text}"
                allowed += 1
            except AccessDeniedError:
                assert not expected, f"denied {principal} {entry.class_name}.{method.name} flags={flags}\n{text}"
                denied += 1
    assert allowed > 500 and denied > 500  # both sides exercised


def test_read_only_is_what_libvirt_grants_a_read_only_connection() -> None:
    assert is_read_only("domain:getattr") and is_read_only("connect:search_storage_pools")
    assert not is_read_only("domain:read_secure") and not is_read_only("domain:write")


def test_access_denied_carries_libvirts_code() -> None:
    import libvirt  # the adapter's import; here only to read libvirt's own constant
    assert libvirt.VIR_ERR_ACCESS_DENIED == 88 != libvirt.VIR_ERR_OPERATION_INVALID
    access = Access(Policy.nobody("nothing"), objects_registry())
    with pytest.raises(AccessDeniedError) as info:
        access.grant(None)
    assert info.value.error_code == 0x10000 + 88 and info.value.libvirt_code == 88
    assert info.value.error_text == "access denied: anonymous is granted nothing by the policy (nothing)"




def test_the_contrib_policy_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "contrib" / "policy.ini"
    policy = Policy.from_file(path, SCHEMA)
    assert set(policy.grants) == {"monitoring", "ops", "manager"}
