"""What the generator builds before writing it: the methods of each class, with their arguments and
permissions, and the exclusions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from virtq.schema import Permission

from .api import Api
from .classes import CLASSES
from .exclusions import Exclusion


@dataclass
class GenArg:
    name: str
    direction: str
    type: str
    default: Optional[str] = None
    nullable: bool = False
    references: Optional[str] = None
    fields: Tuple[str, ...] = ()
    desc: str = ""
    flags: Tuple[Tuple[str, int], ...] = ()


@dataclass
class GenMethod:
    cls: str
    name: str
    libvirt: str
    desc: str
    args: List[GenArg] = field(default_factory=list)
    permissions: List[Permission] = field(default_factory=list)


@dataclass
class Generated:
    api: Api
    methods: Dict[str, List[GenMethod]]  # class -> methods, sorted by name
    excluded: Dict[str, Exclusion]  # in-scope function -> why it is not exposed

    def all_methods(self) -> List[GenMethod]:
        return [m for cls in CLASSES for m in self.methods[cls.name]]

