"""Permissions: libvirt's own per RPC procedure (schema/libvirt-remote-acl.tsv, from the @acl annotations of
its remote_protocol.x) and the hand-written ones, with reasons (schema/permissions.xml), resolved per method."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from lxml import etree

from virtq.schema import Permission
from virtq.schema.model import FLAG_CONDITION, PERMISSION_NAME, PERMISSION_OBJECTS

from .api import Api, flat_text
from .errors import GenerateError
from .model import GenMethod
from .paths import ACL_TSV, PERMISSIONS_XML

ACL_COLUMNS = ["proc", "number", "acl", "aclfilter", "c_function"]


@dataclass(frozen=True)
class AclRow:
    """One procedure of libvirt's table: its @acl values as remote_protocol.x writes them."""

    proc: str  # REMOTE_PROC_DOMAIN_GET_XML_DESC
    acl: Tuple[str, ...]  # ("domain:read", "domain:read_secure:VIR_DOMAIN_XML_SECURE" …); ("none",): no check


@dataclass(frozen=True)
class PermissionRule:
    """A permissions.xml entry: the permissions of a function libvirt's table does not cover, and why;
    or, with ``replaces``, stricter ones than the table's for a function libvirt tightened since."""

    function: str
    acl: Tuple[str, ...]  # the same spelling as the table's
    reason: str
    replaces: Tuple[str, ...] = ()  # the table's values this rule overrides, exactly as the table has them


def load_acl_table(path: Path = ACL_TSV) -> Dict[str, AclRow]:
    """libvirt's permissions by C function; procedures without a public function (events …) are left out."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames != ACL_COLUMNS:
            raise GenerateError([f"{path.name}: the columns must be {', '.join(ACL_COLUMNS)}"])
        table: Dict[str, AclRow] = {}
        for row in reader:
            function = row["c_function"]
            if not function:
                continue
            if function in table:
                raise GenerateError([f"{path.name}: {function} is the function of {table[function].proc} "
                                     f"and of {row['proc']}"])
            table[function] = AclRow(row["proc"], tuple(row["acl"].split(",")))
    return table


def load_permission_rules(path: Path = PERMISSIONS_XML) -> Dict[str, PermissionRule]:
    root: Any = etree.parse(str(path)).getroot()
    rules: Dict[str, PermissionRule] = {}
    for element in root:
        if not isinstance(element.tag, str):
            continue
        name, acl, reason = element.get("name"), flat_text(element.get("acl")), flat_text(element.get("reason"))
        if element.tag != "function":
            raise GenerateError([f"permissions.xml: unexpected <{element.tag}>"])
        if not name or not acl or not reason:
            raise GenerateError([f"permissions.xml: <function> {name or ''} needs name=, acl= and reason="])
        if name in rules:
            raise GenerateError([f"permissions.xml: {name} twice"])
        replaces = flat_text(element.get("replaces"))
        rules[name] = PermissionRule(name, tuple(a.strip() for a in acl.split(",")), reason,
                                     tuple(a.strip() for a in replaces.split(",")) if replaces else ())
    return rules


def parse_acl(annotation: str, constants: Mapping[str, int]) -> Permission:
    """libvirt's ``object:permission[:CONDITION]`` as a Permission, its condition's flags resolved to a mask.

    Raises ValueError naming what is wrong (a malformed value, an unknown object or flag constant).
    """
    obj, _, rest = annotation.partition(":")
    name, _, condition = rest.partition(":")
    if not PERMISSION_NAME.fullmatch(f"{obj}:{name}") or (condition and not FLAG_CONDITION.fullmatch(condition)):
        raise ValueError(f"bad acl {annotation!r}: expected object:permission[:FLAG[|FLAG…]] "
                         "(a leading '!' negates the condition)")
    if obj not in PERMISSION_OBJECTS:
        raise ValueError(f"acl {annotation!r}: object {obj!r} is none of {', '.join(sorted(PERMISSION_OBJECTS))}")
    mask = 0
    for flag in condition.lstrip("!").split("|") if condition else ():
        if flag not in constants:
            raise ValueError(f"acl {annotation!r}: {flag} is not a constant of libvirt-api.xml")
        mask |= constants[flag]
    return Permission(obj, name, condition, mask, condition.startswith("!"))


def method_permissions(method: GenMethod, api: Api, row: Optional[AclRow], rule: Optional[PermissionRule],
                        problems: List[str]) -> List[Permission]:
    """libvirt's own permissions for the method's function, else permissions.xml's; never none."""
    where = f"{method.cls}.{method.name} ({method.libvirt})"
    if row is not None and row.acl != ("none",) and rule is not None and rule.replaces:
        if rule.replaces != row.acl:  # a tightening names exactly what it tightens, so table drift shows
            problems.append(f"permissions.xml: {method.libvirt} replaces {','.join(rule.replaces)}, but "
                            f"libvirt-remote-acl.tsv ({row.proc}) has {','.join(row.acl)}")
        annotations, source = rule.acl, "permissions.xml"
    elif row is not None and row.acl != ("none",):
        if rule is not None:
            problems.append(f"permissions.xml: {method.libvirt} has libvirt's own permissions in "
                            f"libvirt-remote-acl.tsv ({row.proc}), which decide: remove the rule "
                            "(or name them in replaces= to tighten them)")
        annotations, source = row.acl, f"libvirt-remote-acl.tsv {row.proc}"
    elif rule is not None:
        annotations, source = rule.acl, "permissions.xml"
    else:
        why = (f"libvirt checks nothing for {row.proc} (@acl: none)" if row is not None
               else "libvirt-remote-acl.tsv has no procedure for it")
        problems.append(f"{where}: no permission ({why}); add it to permissions.xml with a reason")
        return []
    permissions: List[Permission] = []
    for annotation in annotations:
        try:
            permission = parse_acl(annotation, api.constants)
        except ValueError as exc:
            problems.append(f"{where}: {source}: {exc}")
            continue
        if permission in permissions:
            problems.append(f"{where}: {source}: {annotation} twice")
        permissions.append(permission)
    if len({p.object for p in permissions}) > 1:  # gendispatch.pl: "cannot check different objects"
        problems.append(f"{where}: {source}: the permissions name different objects")
    if permissions and all(p.condition for p in permissions):
        problems.append(f"{where}: {source}: every permission has a condition: a call meeting none would "
                        "need no permission")
    if any(p.condition for p in permissions) and not any(a.name == "flags" and a.direction == "I"
                                                         for a in method.args):
        problems.append(f"{where}: {source}: a flag condition, but the method takes no flags")
    return permissions

