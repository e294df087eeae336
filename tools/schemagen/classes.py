"""The schema classes, the libvirt-python classes and C handles they stand for, and the naming rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class ClassInfo:
    name: str  # schema class
    py_class: str  # libvirt-python class the binding puts the function on
    handle: str  # C handle type
    prefixes: Tuple[str, ...]  # function-name prefixes that belong to the class


CLASSES = (
    ClassInfo("Node", "virConnect", "virConnectPtr", ("virConnect", "virNode")),
    ClassInfo("Domain", "virDomain", "virDomainPtr", ("virDomain",)),
    ClassInfo("Pool", "virStoragePool", "virStoragePoolPtr", ("virStoragePool",)),
    ClassInfo("Volume", "virStorageVol", "virStorageVolPtr", ("virStorageVol",)),
    ClassInfo("DomainSnapshot", "virDomainSnapshot", "virDomainSnapshotPtr", ("virDomainSnapshot",)),
    ClassInfo("DomainCheckpoint", "virDomainCheckpoint", "virDomainCheckpointPtr", ("virDomainCheckpoint",)),
)
BY_PY_CLASS = {c.py_class: c for c in CLASSES}
BY_HANDLE = {c.handle: c for c in CLASSES}
NOUN = {"Domain": "domain", "Pool": "pool", "Volume": "volume", "DomainSnapshot": "snapshot",
        "DomainCheckpoint": "checkpoint"}
"""The out-argument name of a returned handle."""


def lower_camel(word: str) -> str:
    """GetInfo -> getInfo; a leading acronym is lowered whole: FSTrim -> fsTrim, ID -> id."""
    run = re.match(r"[A-Z]*", word)
    upper = run.group(0) if run else ""
    if len(upper) == len(word):
        return word.lower()
    if len(upper) > 1:
        return upper[:-1].lower() + word[len(upper) - 1:]
    return word[:1].lower() + word[1:]


def strip_class(function: str, cls: ClassInfo) -> str:
    """The function name without its class prefix; without just 'vir' when it names another class."""
    for prefix in cls.prefixes:
        rest = function[len(prefix):]
        if function.startswith(prefix) and rest[:1].isupper():
            return rest
    return function[3:]


def method_name(function: str, cls: ClassInfo) -> str:
    """The naming rule: virDomainGetXMLDesc -> Domain getXMLDesc, virDomainDefineXML -> Node domainDefineXML."""
    return lower_camel(strip_class(function, cls))


def family_class(function: str, first_arg_type: Optional[str]) -> str:
    """The class a function is counted under when it is not exposed: its object's, else its prefix's."""
    if first_arg_type in BY_HANDLE:
        return BY_HANDLE[first_arg_type].name
    for cls in sorted(CLASSES, key=lambda c: -max(len(p) for p in c.prefixes)):
        if any(function.startswith(p) for p in cls.prefixes):
            return cls.name
    return "Node"
