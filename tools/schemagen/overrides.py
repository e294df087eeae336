"""schema/overrides.xml: hand-written shaping for the functions whose C signature does not say what goes over
the wire (out-structures, typed parameters, returned lists …)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from lxml import etree

from .api import flat_text
from .errors import GenerateError
from .paths import OVERRIDES_XML


@dataclass(frozen=True)
class InOverride:
    python: str  # the binding's parameter
    libvirt: Tuple[str, ...]  # the C arguments it stands for ("" when none)
    name: Optional[str]
    type: Optional[str]
    references: Optional[str]
    desc: Optional[str]
    nullable: bool = False  # libvirt takes NULL here although the binding declares no default
    default: Optional[str] = None  # a default the binding does not declare (a stream's offset and length: 0)


@dataclass(frozen=True)
class OutSpec:
    name: str
    type: str
    references: Optional[str] = None
    fields: Tuple[str, ...] = ()
    desc: str = ""


@dataclass(frozen=True)
class Override:
    function: str
    desc: Optional[str]
    inputs: Mapping[str, InOverride]
    outputs: Optional[Tuple[OutSpec, ...]]  # None: derived from C


def load_overrides(path: Path = OVERRIDES_XML) -> Dict[str, Override]:
    root: Any = etree.parse(str(path)).getroot()
    overrides: Dict[str, Override] = {}
    for fn in root.iterfind("function"):
        name = fn.get("name")
        if name in overrides:
            raise GenerateError([f"overrides.xml: {name} twice"])
        inputs = {i.get("python"): InOverride(i.get("python"), tuple((i.get("libvirt") or "").split()),
                                              i.get("name"), i.get("type"), i.get("references"), i.get("desc"),
                                              i.get("nullable") == "y", i.get("default"))
                  for i in fn.iterfind("in")}
        outs = [OutSpec(o.get("name"), o.get("type"), o.get("references"), tuple(o.get("fields", "").split()),
                        flat_text(o.get("desc"))) for o in fn.iterfind("out")]
        outputs: Optional[Tuple[OutSpec, ...]] = tuple(outs) if outs or fn.get("outputs") == "none" else None
        overrides[name] = Override(name, fn.get("desc"), inputs, outputs)
    return overrides
