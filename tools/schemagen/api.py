"""libvirt-api.xml (from libvirt-dev): every public C function with its typed arguments, and the enums."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from lxml import etree

from .paths import API_XML

IN_SCOPE = re.compile(r"^vir(Connect|Node|Domain|StoragePool|StorageVol)[A-Z0-9]")
"""The families the classes mirror (virDomain* includes snapshots and checkpoints); every function matching
this is exposed or excluded."""


@dataclass(frozen=True)
class CArg:
    name: str
    type: str
    info: str


@dataclass(frozen=True)
class CFunction:
    name: str
    args: Tuple[CArg, ...]
    return_type: str
    return_info: str
    info: str
    version: str


@dataclass(frozen=True)
class Api:
    functions: Mapping[str, CFunction]
    enums: Mapping[str, Tuple[Tuple[str, int], ...]]  # enum type -> (name, value) …
    version: str  # the newest function's version: the API level described
    constants: Mapping[str, int] = field(default_factory=dict)  # every enum constant, aliases resolved
    sha256: str = ""  # of the file: which description a coverage report was computed from

    def in_scope(self) -> List[CFunction]:
        return [f for name, f in sorted(self.functions.items()) if IN_SCOPE.match(name)]


def flat_text(value: Optional[str]) -> str:
    """An attribute or element text of the inputs on one line, runs of white space as one space."""
    return " ".join((value or "").split())


def load_api(path: Path = API_XML) -> Api:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"{path}: libvirt's API description is missing (install libvirt-dev)") from exc
    root: Any = etree.fromstring(data)
    functions: Dict[str, CFunction] = {}
    for fn in root.iter("function"):
        ret = fn.find("return")
        functions[fn.get("name")] = CFunction(
            name=fn.get("name"),
            args=tuple(CArg(a.get("name"), flat_text(a.get("type")), flat_text(a.get("info")))
                       for a in fn.iterfind("arg")),
            return_type=flat_text(ret.get("type")) if ret is not None else "void",
            return_info=flat_text(ret.get("info")) if ret is not None else "",
            info=flat_text(fn.findtext("info")),
            version=fn.get("version", ""),
        )
    enums: Dict[str, List[Tuple[str, int]]] = {}
    aliases: Dict[str, str] = {}  # VIR_DOMAIN_SAVE_IMAGE_XML_SECURE -> VIR_DOMAIN_XML_SECURE
    for enum in root.iter("enum"):
        try:
            value = int(enum.get("value", ""), 0)
        except ValueError:
            aliases[enum.get("name")] = enum.get("value", "")
            continue
        enums.setdefault(enum.get("type", ""), []).append((enum.get("name"), value))
    constants = {name: value for entries in enums.values() for name, value in entries}
    while aliases:  # an alias may name another alias; one naming nothing known is dropped
        resolved = {name: constants[target] for name, target in aliases.items() if target in constants}
        if not resolved:
            break
        constants.update(resolved)
        aliases = {name: target for name, target in aliases.items() if name not in resolved}
    versions = [tuple(int(p) for p in f.version.split(".")) for f in functions.values()
                if re.fullmatch(r"\d+(\.\d+)*", f.version)]
    version = ".".join(str(p) for p in max(versions)) if versions else "unknown"
    return Api(functions, {k: tuple(sorted(v, key=lambda e: (e[1], e[0]))) for k, v in enums.items()}, version,
               constants, hashlib.sha256(data).hexdigest())
