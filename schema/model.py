"""Frozen, typed model of the schema: classes, properties, statistics, methods, events."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import InvalidParameterError
from .types import TypeCheckError, check


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""Marks a required argument."""


@dataclass(frozen=True)
class SchemaId:
    """QMF's ``_schema_id``: which class (and which version of it) a record belongs to."""

    package: str
    class_name: str
    hash: str = ""
    type: str = "_data"

    def matches(self, other: "SchemaId") -> bool:
        """Partial match as QMF queries use it: empty fields of ``self`` match anything."""
        return (self.package in ("", other.package)
                and self.class_name in ("", other.class_name)
                and self.hash in ("", other.hash))


@dataclass(frozen=True)
class Typed:
    """A named value of one of the schema's types (schema/types.py): an argument, a property, a statistic."""

    name: str
    type: str


@dataclass(frozen=True)
class Argument(Typed):
    direction: str  # "I", "O" or "IO"
    desc: str = ""
    default: Any = NO_DEFAULT
    references: Optional[str] = None  # class name, for objId
    fields: Tuple[str, ...] = ()  # out-structures returned as maps with these keys
    flags: Tuple[Tuple[str, int], ...] = ()  # named flag constants documented for a flags argument
    nullable: bool = False  # may be null (libvirt's NULL, Python's None); without a default it defaults to null

    @property
    def is_input(self) -> bool:
        return "I" in self.direction

    @property
    def is_output(self) -> bool:
        return "O" in self.direction

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT


PERMISSION_OBJECTS = frozenset({"connect", "domain", "storage_pool", "storage_vol"})
"""The libvirt access-control objects the four classes' functions are checked against."""

PERMISSION_NAME = re.compile(r"(?P<object>[a-z_]+):(?P<name>[a-z_]+)")
"""object:permission, as libvirt names them (domain:read_secure); for fullmatch."""

FLAG_CONDITION = re.compile(r"!?\w+(?:\|\w+)*")
"""The condition of a conditional @acl: FLAG[|FLAG…], optionally negated by a leading '!'; for fullmatch."""


@dataclass(frozen=True)
class Permission:
    r"""One of libvirt's access checks on a method (an @acl annotation of libvirt's remote_protocol.x).

    ``condition`` names flag constants of the call's ``flags``; ``mask`` is their bitwise OR (resolved
    from libvirt-api.xml when the schema is generated). libvirt's src/rpc/gendispatch.pl
    (generate_acl) turns ``object:perm:COND`` into C as::

        if ($flags =~ /^\!/) {
            $flags = substr $flags, 1;
            print "((flags & ($flags)) == 0) &&\n";
        } else {
            print "((flags & ($flags)) == ($flags)) &&\n";
        }

    so the check applies when every named flag is set; with a leading '!' (which negates the whole
    '|' list, not its first name) when none of them is. Without a condition it always applies.
    """

    object: str
    name: str
    condition: str = ""
    mask: int = 0
    negate: bool = False

    def __str__(self) -> str:
        return f"{self.object}:{self.name}"

    @property
    def annotation(self) -> str:
        """libvirt's spelling, with the condition: ``domain:save:!VIR_DOMAIN_AFFECT_CONFIG|…``."""
        return f"{self}:{self.condition}" if self.condition else str(self)

    def applies(self, flags: int) -> bool:
        """Whether libvirt would check this permission for a call with these flags."""
        if not self.condition:
            return True
        if self.negate:
            return flags & self.mask == 0
        return flags & self.mask == self.mask


@dataclass(frozen=True)
class Method:
    name: str
    libvirt: str  # the C function this method mirrors, e.g. virDomainGetXMLDesc
    arguments: Tuple[Argument, ...]
    desc: str = ""
    permissions: Tuple[Permission, ...] = ()  # libvirt's access checks, conditional ones included

    @property
    def inputs(self) -> Tuple[Argument, ...]:
        return tuple(a for a in self.arguments if a.is_input)

    @property
    def outputs(self) -> Tuple[Argument, ...]:
        return tuple(a for a in self.arguments if a.is_output)

    def bind(self, arguments: Mapping[str, Any]) -> Dict[str, Any]:
        """Validate call arguments against the declaration and fill in defaults.

        Raises InvalidParameterError for unknown, missing or wrongly typed arguments.
        """
        if not isinstance(arguments, Mapping):
            raise InvalidParameterError(f"{self.name}: _arguments must be a map")
        inputs = {a.name: a for a in self.inputs}
        unknown = sorted(str(k) for k in arguments if k not in inputs)  # keys of any type (wire maps)
        if unknown:
            raise InvalidParameterError(f"{self.name}: unknown argument(s) {', '.join(unknown)}")
        bound: Dict[str, Any] = {}
        for arg in self.inputs:
            if arg.name in arguments:
                value = arguments[arg.name]
                if value is None and arg.nullable:
                    bound[arg.name] = None
                    continue
                try:
                    check(arg.type, value)
                except TypeCheckError as exc:
                    raise InvalidParameterError(f"{self.name}: argument {arg.name}: {exc}") from None
                bound[arg.name] = value
            elif arg.required:
                raise InvalidParameterError(f"{self.name}: missing argument {arg.name} ({arg.type})")
            else:
                bound[arg.name] = arg.default
        return bound

    def required(self, bound: Mapping[str, Any]) -> Tuple[Permission, ...]:
        """The permissions libvirt checks for a call with these (bound) arguments.

        Conditions test the ``flags`` argument (see Permission); a method without one, or a flags value
        that is not an integer, counts as flags 0.
        """
        flags = bound.get("flags", 0)
        if not isinstance(flags, int) or isinstance(flags, bool):
            flags = 0
        return tuple(p for p in self.permissions if p.applies(flags))


@dataclass(frozen=True)
class Property(Typed):
    """A value of an object's record (read-only: changed by methods and events, never set)."""

    desc: str = ""
    index: bool = False
    references: Optional[str] = None


@dataclass(frozen=True)
class Statistic(Typed):
    """A sampled value, pushed in statistics indications when it changes; ``unit`` as libvirt counts it."""

    unit: str = ""
    desc: str = ""


@dataclass(frozen=True)
class ClassSchema:
    package: str
    name: str
    properties: Tuple[Property, ...]
    statistics: Tuple[Statistic, ...]
    methods: Mapping[str, Method]
    hash: str
    desc: str = ""

    @property
    def schema_id(self) -> SchemaId:
        return SchemaId(self.package, self.name, self.hash)

    def method(self, name: str) -> Optional[Method]:
        return self.methods.get(name)


@dataclass(frozen=True)
class EventSchema:
    package: str
    name: str
    arguments: Tuple[Argument, ...]
    hash: str
    desc: str = ""

    @property
    def schema_id(self) -> SchemaId:
        return SchemaId(self.package, self.name, self.hash, "_event")


@dataclass(frozen=True)
class Schema:
    package: str
    classes: Mapping[str, ClassSchema]
    events: Mapping[str, EventSchema]
    hash: str
    """Identifies this version of the contract (an MD5 over the canonical schema)."""

    def cls(self, name: str) -> ClassSchema:
        return self.classes[name]


def frozen_map(items: Dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(items))


__all__ = ["Argument", "ClassSchema", "EventSchema", "FLAG_CONDITION", "Method", "NO_DEFAULT", "PERMISSION_NAME",
           "PERMISSION_OBJECTS", "Permission", "Property", "Schema", "SchemaId", "Statistic", "Typed", "frozen_map"]
