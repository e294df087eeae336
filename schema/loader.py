"""Load the schema XML (lxml) into the frozen model; hash it so both sides can tell versions apart."""

from __future__ import annotations

import functools
import hashlib
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from lxml import etree

from .model import (FLAG_CONDITION, NO_DEFAULT, PERMISSION_NAME, PERMISSION_OBJECTS, Argument, ClassSchema,
                    EventSchema, Method, Permission, Property, Schema, Statistic, frozen_map)
from .types import TYPES, TypeCheckError, parse_text

SCHEMA_FILE = Path(__file__).with_name("org.libvirt.xml")


class SchemaError(ValueError):
    """The schema file is not valid."""


def _md5_uuid(text: str) -> str:
    """QMF writes schema hashes as 128-bit MD5 values in UUID form."""
    return str(uuid.UUID(bytes=hashlib.md5(text.encode()).digest()))


def _canonical(element: Any) -> str:
    return bytes(etree.tostring(element, method="c14n")).decode()


def _type(element: Any, where: str) -> str:
    type_name = element.get("type")
    if type_name not in TYPES:
        raise SchemaError(f"{where}: unknown type {type_name!r}")
    return str(type_name)


def _default(type_name: str, text: Optional[str], where: str) -> Any:
    if text is None:
        return NO_DEFAULT
    try:
        return parse_text(type_name, text)
    except TypeCheckError as exc:
        raise SchemaError(f"{where}: bad default: {exc}") from None


def _argument(element: Any, where: str, default_dir: str = "I") -> Argument:
    name = element.get("name")
    where = f"{where}.{name}"
    type_name = _type(element, where)
    direction = element.get("dir", default_dir)
    if direction not in ("I", "O", "IO"):
        raise SchemaError(f"{where}: dir must be I, O or IO")
    try:
        flags = tuple((f.get("name"), int(f.get("value"), 0)) for f in element.iterfind("flag"))
    except (TypeError, ValueError):
        raise SchemaError(f"{where}: flag value must be an integer") from None
    nullable = element.get("nullable") == "y"
    default = _default(type_name, element.get("default"), where)
    return Argument(
        name=name,
        type=type_name,
        direction=direction,
        desc=element.get("desc", ""),
        default=None if nullable and default is NO_DEFAULT else default,
        references=element.get("references"),
        fields=tuple(element.get("fields", "").split()),
        flags=flags,
        nullable=nullable,
    )


def _permission(element: Any, where: str) -> Permission:
    """An <acl permission="object:name" [if="COND" mask="…"]/>: one of libvirt's checks (see model.Permission)."""
    text = element.get("permission") or ""
    match = PERMISSION_NAME.fullmatch(text)
    if match is None:
        raise SchemaError(f"{where}: acl permission={text!r}: expected object:name")
    if match["object"] not in PERMISSION_OBJECTS:
        raise SchemaError(f"{where}: acl {text}: unknown object {match['object']!r} "
                          f"(one of {', '.join(sorted(PERMISSION_OBJECTS))})")
    condition = element.get("if")
    if condition is not None and not FLAG_CONDITION.fullmatch(condition):
        raise SchemaError(f"{where}: acl {text}: bad condition {condition!r}: expected FLAG[|FLAG…], "
                          "optionally negated by a leading '!'")
    mask_text = element.get("mask")
    if (condition is None) != (mask_text is None):
        raise SchemaError(f"{where}: acl {text}: if= and mask= go together")
    try:
        mask = int(mask_text, 0) if mask_text is not None else 0
    except ValueError:
        raise SchemaError(f"{where}: acl {text}: mask must be an integer") from None
    if mask < 0:
        raise SchemaError(f"{where}: acl {text}: mask must not be negative")
    condition = condition or ""
    return Permission(match["object"], match["name"], condition, mask, condition.startswith("!"))


def _method(element: Any, where: str) -> Method:
    libvirt_name = element.get("libvirt")
    if not libvirt_name:
        raise SchemaError(f"{where}: no libvirt function named")
    args: List[Argument] = []
    permissions: List[Permission] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments
        if child.tag == "arg":
            args.append(_argument(child, where))
        elif child.tag == "acl":
            permission = _permission(child, where)
            if permission in permissions:
                raise SchemaError(f"{where}: acl {permission.annotation} declared twice")
            permissions.append(permission)
        else:
            raise SchemaError(f"{where}: unexpected element <{child.tag}>")
    return Method(element.get("name"), libvirt_name, tuple(args), element.get("desc", ""), tuple(permissions))


def _class(package: str, element: Any) -> ClassSchema:
    name = element.get("name")
    properties: List[Property] = []
    statistics: List[Statistic] = []
    methods: Dict[str, Method] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments
        where = f"{name}.{child.get('name')}"
        if child.tag == "property":
            properties.append(Property(child.get("name"), _type(child, where), child.get("desc", ""),
                                       child.get("index") == "y", child.get("references")))
        elif child.tag == "statistic":
            statistics.append(Statistic(child.get("name"), _type(child, where), child.get("unit", ""),
                                        child.get("desc", "")))
        elif child.tag == "method":
            method_name = child.get("name")
            if method_name in methods:
                raise SchemaError(f"{where}: declared twice")
            methods[method_name] = _method(child, where)
        else:
            raise SchemaError(f"{where}: unexpected element <{child.tag}>")
    return ClassSchema(package, name, tuple(properties), tuple(statistics), frozen_map(methods),
                       _md5_uuid(_canonical(element)), element.get("desc", ""))


def load(source: Union[Path, str, bytes, None] = None) -> Schema:
    """Load a schema from a file path or XML bytes (default: the packaged org.libvirt.xml)."""
    try:
        if isinstance(source, bytes):
            root = etree.fromstring(source)
        else:
            root = etree.parse(str(source or SCHEMA_FILE)).getroot()
    except etree.XMLSyntaxError as exc:
        raise SchemaError(str(exc)) from exc
    package = root.get("package")
    if root.tag != "schema" or not package:
        raise SchemaError("root must be <schema package='…'>")
    classes: Dict[str, ClassSchema] = {}
    events: Dict[str, EventSchema] = {}
    for element in root:
        if not isinstance(element.tag, str):
            continue
        name = str(element.get("name"))
        if element.tag == "class":
            if name in classes:
                raise SchemaError(f"class {name}: declared twice")
            classes[name] = _class(package, element)
        elif element.tag == "event":
            if name in events:
                raise SchemaError(f"event {name}: declared twice")
            args = tuple(_argument(a, name, default_dir="O") for a in element.iterfind("arg"))
            events[name] = EventSchema(package, name, args, _md5_uuid(_canonical(element)),
                                       element.get("desc", ""))
        else:
            raise SchemaError(f"unexpected element <{element.tag}>")
    for cls in classes.values():
        refs: List[Tuple[str, Optional[str]]] = [(p.name, p.references) for p in cls.properties]
        refs += [(f"{m.name}.{a.name}", a.references) for m in cls.methods.values() for a in m.arguments]
        for where, ref in refs:
            if ref is not None and ref not in classes:
                raise SchemaError(f"{cls.name}.{where}: references unknown class {ref}")
    for event in events.values():
        for arg in event.arguments:
            if arg.references is not None and arg.references not in classes:
                raise SchemaError(f"{event.name}.{arg.name}: references unknown class {arg.references}")
    return Schema(package, frozen_map(classes), frozen_map(events), _md5_uuid(_canonical(root)))


@functools.lru_cache(maxsize=1)
def default_schema() -> Schema:
    """The packaged schema, loaded once per process."""
    return load()
