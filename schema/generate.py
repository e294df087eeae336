"""Generate the schema's methods from libvirt's own API description.

``python -m virtq.schema.generate`` reads

* ``libvirt-api.xml`` (from libvirt-dev: every public C function with its typed arguments),
* the libvirt-python binding (which C functions it wraps, on which class, with which Python
  parameters: the agent calls the binding positionally, so the binding decides the inputs),
* ``schema/overrides.xml`` (hand-written shaping for functions whose C signature needs it:
  out-structures, typed parameters, returned lists …),
* ``schema/exclusions.xml`` (every in-scope function that is not exposed, with a reason),
* ``schema/base.xml`` (everything that is not generated: package, classes, properties,
  statistics, events),
* ``schema/libvirt-remote-acl.tsv`` (libvirt's own permissions per RPC procedure, from the @acl
  annotations of its remote_protocol.x, 2014) and ``schema/permissions.xml`` (hand-written, with
  reasons: the permissions of the methods that table does not cover),

and writes ``schema/org.libvirt.xml``: base.xml with the generated methods added to its classes.
The output is deterministic; a test regenerates it and fails on drift. The naming rule, the type
mapping and the exclusions are documented in docs/SCHEMA.md.

``coverage()`` needs only libvirt-api.xml, the exclusions and a loaded schema: it accounts for
every function of the four in-scope families (``virtq schema coverage`` prints it).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import inspect
import keyword
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple
from xml.sax.saxutils import quoteattr

from lxml import etree

from . import loader
from .model import FLAG_CONDITION, PERMISSION_NAME, PERMISSION_OBJECTS, Permission, Schema

HERE = Path(__file__).resolve().parent  # the source tree, also through a link tree
API_XML = Path("/usr/share/libvirt/api/libvirt-api.xml")
BASE_XML = HERE / "base.xml"
OVERRIDES_XML = HERE / "overrides.xml"
EXCLUSIONS_XML = HERE / "exclusions.xml"
ACL_TSV = HERE / "libvirt-remote-acl.tsv"
PERMISSIONS_XML = HERE / "permissions.xml"
OUTPUT_XML = loader.SCHEMA_FILE
DOCS_MD = HERE.parent / "docs" / "SCHEMA.md"  # in a source tree; its generated part is kept in step

IN_SCOPE = re.compile(r"^vir(Connect|Node|Domain|StoragePool|StorageVol)[A-Z0-9]")
"""The four families the classes mirror; every function matching this is exposed or excluded."""


class GenerateError(Exception):
    """The inputs do not describe every in-scope function; the message lists each problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# --- the classes -------------------------------------------------------------------------------------


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
)
BY_PY_CLASS = {c.py_class: c for c in CLASSES}
BY_HANDLE = {c.handle: c for c in CLASSES}
NOUN = {"Domain": "domain", "Pool": "pool", "Volume": "volume"}
"""The out-argument name of a returned handle."""


def _lower_camel(word: str) -> str:
    """GetInfo -> getInfo; a leading acronym is lowered whole: FSTrim -> fsTrim, ID -> id."""
    run = re.match(r"[A-Z]*", word)
    upper = run.group(0) if run else ""
    if len(upper) == len(word):
        return word.lower()
    if len(upper) > 1:
        return upper[:-1].lower() + word[len(upper) - 1:]
    return word[:1].lower() + word[1:]


def _strip_class(function: str, cls: ClassInfo) -> str:
    """The function name without its class prefix; without just 'vir' when it names another class."""
    for prefix in cls.prefixes:
        rest = function[len(prefix):]
        if function.startswith(prefix) and rest[:1].isupper():
            return rest
    return function[3:]


def method_name(function: str, cls: ClassInfo) -> str:
    """The naming rule: virDomainGetXMLDesc -> Domain getXMLDesc, virDomainDefineXML -> Node domainDefineXML."""
    return _lower_camel(_strip_class(function, cls))


def family_class(function: str, first_arg_type: Optional[str]) -> str:
    """The class a function is counted under when it is not exposed: its object's, else its prefix's."""
    if first_arg_type in BY_HANDLE:
        return BY_HANDLE[first_arg_type].name
    for cls in sorted(CLASSES, key=lambda c: -max(len(p) for p in c.prefixes)):
        if any(function.startswith(p) for p in cls.prefixes):
            return cls.name
    return "Node"


# --- libvirt-api.xml ---------------------------------------------------------------------------------


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

    def in_scope(self) -> List[CFunction]:
        return [f for name, f in sorted(self.functions.items()) if IN_SCOPE.match(name)]


def _text(value: Optional[str]) -> str:
    return " ".join((value or "").split())


def load_api(path: Path = API_XML) -> Api:
    try:
        root: Any = etree.parse(str(path)).getroot()
    except OSError as exc:
        raise FileNotFoundError(f"{path}: libvirt's API description is missing (install libvirt-dev)") from exc
    functions: Dict[str, CFunction] = {}
    for fn in root.iter("function"):
        ret = fn.find("return")
        functions[fn.get("name")] = CFunction(
            name=fn.get("name"),
            args=tuple(CArg(a.get("name"), _text(a.get("type")), _text(a.get("info"))) for a in fn.iterfind("arg")),
            return_type=_text(ret.get("type")) if ret is not None else "void",
            return_info=_text(ret.get("info")) if ret is not None else "",
            info=_text(fn.findtext("info")),
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
               constants)


# --- exclusions.xml ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    name: str
    applicable: bool  # True: applicable to the four classes but not exposed (counts against coverage)
    title: str
    reason: str


@dataclass(frozen=True)
class Exclusion:
    function: str
    category: Category
    reason: str
    rule: str  # the function name or the pattern that matched


@dataclass
class Exclusions:
    categories: Dict[str, Category]
    rules: List[Tuple[str, bool, Category, str]]  # (name or pattern, is_pattern, category, reason)

    def match(self, function: str) -> Optional[Exclusion]:
        for rule, is_pattern, category, reason in self.rules:
            if (fnmatch.fnmatchcase(function, rule) if is_pattern else function == rule):
                return Exclusion(function, category, reason or category.reason, rule)
        return None

    def unused_rules(self, functions: Iterable[str]) -> List[str]:
        matches = (self.match(name) for name in functions)
        used = {m.rule for m in matches if m is not None}
        return [rule for rule, _, _, _ in self.rules if rule not in used]


def load_exclusions(path: Path = EXCLUSIONS_XML) -> Exclusions:
    root: Any = etree.parse(str(path)).getroot()
    categories: Dict[str, Category] = {}
    rules: List[Tuple[str, bool, Category, str]] = []
    for element in root:
        if not isinstance(element.tag, str):
            continue
        if element.tag == "category":
            name = element.get("name")
            categories[name] = Category(name, element.get("applicable") == "yes", element.get("title", name),
                                        _text(element.text))
        elif element.tag == "exclude":
            category = categories.get(element.get("category", ""))
            if category is None:
                raise GenerateError([f"exclusions.xml: unknown category {element.get('category')!r}"])
            if element.get("function"):
                rules.append((element.get("function"), False, category, _text(element.get("reason"))))
            elif element.get("pattern"):
                rules.append((element.get("pattern"), True, category, _text(element.get("reason"))))
            else:
                raise GenerateError(["exclusions.xml: <exclude> needs function= or pattern="])
        else:
            raise GenerateError([f"exclusions.xml: unexpected <{element.tag}>"])
    return Exclusions(categories, rules)


# --- overrides.xml -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InOverride:
    python: str  # the binding's parameter
    libvirt: Tuple[str, ...]  # the C arguments it stands for ("" when none)
    name: Optional[str]
    type: Optional[str]
    references: Optional[str]
    desc: Optional[str]
    nullable: bool = False  # libvirt takes NULL here although the binding declares no default


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
                                              i.get("nullable") == "y")
                  for i in fn.iterfind("in")}
        outs = [OutSpec(o.get("name"), o.get("type"), o.get("references"), tuple(o.get("fields", "").split()),
                        _text(o.get("desc"))) for o in fn.iterfind("out")]
        outputs: Optional[Tuple[OutSpec, ...]] = tuple(outs) if outs or fn.get("outputs") == "none" else None
        overrides[name] = Override(name, fn.get("desc"), inputs, outputs)
    return overrides


# --- permissions: libvirt-remote-acl.tsv and permissions.xml -----------------------------------------------

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
        name, acl, reason = element.get("name"), _text(element.get("acl")), _text(element.get("reason"))
        if element.tag != "function":
            raise GenerateError([f"permissions.xml: unexpected <{element.tag}>"])
        if not name or not acl or not reason:
            raise GenerateError([f"permissions.xml: <function> {name or ''} needs name=, acl= and reason="])
        if name in rules:
            raise GenerateError([f"permissions.xml: {name} twice"])
        replaces = _text(element.get("replaces"))
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


def _method_permissions(method: GenMethod, api: Api, row: Optional[AclRow], rule: Optional[PermissionRule],
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


# --- C types -> schema types -----------------------------------------------------------------------------

SCALARS = {
    "int": "int32", "unsigned int": "uint32", "long": "int64", "unsigned long": "uint64",
    "long long": "int64", "unsigned long long": "uint64", "size_t": "uint64", "double": "double",
}
INPUTS = {
    **SCALARS,
    "const char *": "lstr", "char *": "lstr",
    "virTypedParameterPtr": "map",
    "const char **": "list",  # arrays of strings (xmlCPUs, mountpoints, keys)
    "unsigned char *": "list",  # a CPU map: the binding takes a tuple of booleans
    "unsigned int *": "list",  # arrays of numbers (keycodes, page sizes)
}
RETURNS = {**SCALARS, "char *": "lstr", "const char *": "lstr"}
SCALAR_OUTS = {f"{c} *": t for c, t in SCALARS.items() if c not in ("size_t", "double")}
NAME_LISTS = ("char **", "char ** const", "char ***")
TYPED_PARAMS = ("virTypedParameterPtr", "virTypedParameterPtr *")
FLAG_TYPES = {"unsigned int": "uint32", "unsigned long": "uint64"}
INTEGERS = frozenset({"int32", "uint32", "int64", "uint64"})


def _is_input_like(c_type: str) -> bool:
    """Pointer arguments that libvirt reads (the binding must take them): strings, const arrays."""
    return c_type.startswith("const ") or c_type == "char *"


def _is_pointer(c_type: str) -> bool:
    """Out-arguments are pointers: ``int *``, ``char **``, ``virDomainInfoPtr`` …"""
    return "*" in c_type or (c_type.endswith("Ptr") and c_type not in BY_HANDLE)


def _result_desc(info: str) -> str:
    """libvirt's description of a returned value, without what only a C caller needs (errors, freeing)."""
    text = _sentence(info)
    for pattern in (r"\s*\((caller frees|caller must free|OUT)\)", r",?\s*the string must be freed by the caller",
                    r",?\s*(which )?must be freed by the caller", r"^(NULL|-1) (in case of|on) (error|failure),?\s*(or\s+)?",
                    r"\s+otherwise\.?$",
                    r",?\s*(or|and)?\s*(NULL|-1|0)\s+(in case of|on|if there was an|upon)\s+(an\s+)?(error|failure)",
                    r",?\s*-1 otherwise"):
        text = re.sub(pattern, "", text)
    text = text.strip(" ,.")
    return "" if re.search(r"pointer|allocated|^(where|location)\b.* to stor", text, re.I) else text


def _sentence(text: str, limit: int = 200) -> str:
    """The first sentence of libvirt's description, at most ``limit`` characters."""
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    first = match.group(1) if match else text
    return first if len(first) <= limit else first[:limit - 1].rsplit(" ", 1)[0] + "…"


# --- the generated model ---------------------------------------------------------------------------------


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


def _binding(function: str) -> Optional[Tuple[str, Any]]:
    """(libvirt-python class, unbound method) wrapping a C function: its signature decides the inputs."""
    from virtq.agent.libvirt_adapter import binding_method  # libvirt is imported by the adapter only
    return binding_method(function)


def _flags_doc(api: Api, arg: CArg) -> Tuple[Tuple[str, int], ...]:
    """The named constants of the enums libvirt's description of an integer argument names."""
    flags: List[Tuple[str, int]] = []
    for enum_type in dict.fromkeys(re.findall(r"\bvir[A-Z]\w*", arg.info)):
        flags += [e for e in api.enums.get(enum_type, ()) if not e[0].endswith("_LAST")]
    return tuple(flags)


def _output_name(function: str, cls: ClassInfo, c_type: str) -> str:
    if c_type in BY_HANDLE:
        return NOUN.get(BY_HANDLE[c_type].name, "result")
    stripped = _strip_class(function, cls)
    if stripped.endswith("Flags"):
        stripped = stripped[:-len("Flags")]
    if stripped.endswith("XMLDesc"):
        return "xml"
    for verb in ("Get", "Is"):
        if stripped.startswith(verb) and stripped[len(verb):][:1].isupper():
            return _lower_camel(stripped[len(verb):])
    return "result"


def _is_status(info: str) -> bool:
    """An int return that only says success (0) or failure (-1): the binding raises on failure."""
    return bool(re.match(r"-?[01]\b", info)) and not re.search(r"(?<!-)\b1 (if|when)\b|number|positive", info)


def _method(api: Api, fn: CFunction, cls: ClassInfo, py_method: Any,
            override: Optional[Override], problems: List[str]) -> Optional[GenMethod]:
    where = f"{fn.name} ({cls.py_class}.{py_method.__name__})"
    params = [p for p in inspect.signature(py_method).parameters.values()][1:]  # without self
    c_args = list(fn.args)
    if c_args and c_args[0].type == cls.handle:
        c_args = c_args[1:]  # the object the method is called on
    by_name = {a.name: a for a in c_args}
    used: Set[str] = set()
    method = GenMethod(cls.name, method_name(fn.name, cls), fn.name,
                       override.desc if override and override.desc else _sentence(fn.info))
    ok = True
    ins = dict(override.inputs) if override else {}
    for param in params:
        spec = ins.pop(param.name, None)
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.POSITIONAL_ONLY):
            problems.append(f"{where}: parameter {param.name} is not positional")
            ok = False
            continue
        c_names = spec.libvirt if spec and spec.libvirt else ((param.name,) if param.name in by_name else ())
        c_arg = by_name.get(c_names[0]) if len(c_names) == 1 else None
        if any(n not in by_name for n in c_names):
            problems.append(f"{where}: overrides.xml maps {param.name} to unknown C argument(s) {c_names}")
            ok = False
            continue
        used.update(c_names)
        if c_arg is not None:
            name = param.name if keyword.iskeyword(c_arg.name) else c_arg.name
        else:
            name = param.name
        if spec and spec.name:
            name = spec.name
        arg = GenArg(name, "I", "", desc=_sentence(c_arg.info) if c_arg else "")
        if spec and spec.type:
            arg.type = spec.type
        elif c_arg is not None and c_arg.name == "flags" and c_arg.type in FLAG_TYPES:
            arg.type = FLAG_TYPES[c_arg.type]
        elif c_arg is not None and c_arg.type in BY_HANDLE and c_arg.type != cls.handle \
                and BY_HANDLE[c_arg.type].name != "Node":
            arg.type, arg.references = "objId", BY_HANDLE[c_arg.type].name
        elif c_arg is not None and c_arg.type.endswith(" *") and c_arg.type[:-2] in BY_HANDLE \
                and BY_HANDLE[c_arg.type[:-2]].name != "Node":
            arg.type, arg.references = "list", BY_HANDLE[c_arg.type[:-2]].name
        elif c_arg is not None and c_arg.type in INPUTS:
            arg.type = INPUTS[c_arg.type]
        else:
            what = f"C type {c_arg.type!r}" if c_arg else "no C argument of that name"
            problems.append(f"{where}: input {param.name}: {what}; add an <in> to overrides.xml or exclude it")
            ok = False
            continue
        if spec and spec.references:
            arg.references = spec.references
        if spec and spec.desc is not None:
            arg.desc = spec.desc
        if c_arg is not None and arg.type in INTEGERS:
            arg.flags = _flags_doc(api, c_arg)
        if c_arg is not None and c_arg.name == "flags":
            arg.default = "0"
        elif param.default is None or (spec is not None and spec.nullable):
            arg.nullable = True
        elif param.default is not param.empty:
            if isinstance(param.default, bool):
                arg.default = "true" if param.default else "false"
            elif isinstance(param.default, (int, str)):
                arg.default = str(param.default)
            else:
                problems.append(f"{where}: input {param.name}: default {param.default!r} cannot be written")
                ok = False
        method.args.append(arg)
    for leftover in ins:
        problems.append(f"{where}: overrides.xml names parameter {leftover}, which the binding does not take")
        ok = False
    rest = [a for a in c_args if a.name not in used]
    shaped = override is not None and override.outputs is not None
    for left in rest if not shaped else ():  # shaped outputs account for the C arguments left
        if _is_input_like(left.type) or left.type in BY_HANDLE:
            problems.append(f"{where}: C input {left.name} ({left.type}) has no binding parameter; "
                            "map it with <in libvirt=…> in overrides.xml or exclude the function")
            ok = False
    if override is not None and override.outputs is not None:
        outs: Optional[List[GenArg]] = [
            GenArg(o.name, "O", o.type, references=o.references, fields=o.fields, desc=o.desc)
            for o in override.outputs]
    else:
        outs = _derived_outputs(fn, cls, rest, where, problems)
    if outs is None:
        return None
    method.args += outs
    return method if ok else None


def _derived_outputs(fn: CFunction, cls: ClassInfo, rest: List[CArg], where: str,
                     problems: List[str]) -> Optional[List[GenArg]]:
    """Out-arguments from the C signature: out-pointers the binding returns, or the return value."""
    pointers = [a for a in rest if _is_pointer(a.type) and not _is_input_like(a.type)]
    typed = [a for a in pointers if a.type in TYPED_PARAMS]
    outs: List[GenArg] = []
    for arg in pointers:
        if typed and arg.name == "nparams":
            continue  # the typed parameters' count: the binding returns a dict
        desc = _result_desc(arg.info)  # libvirt describes the pointer; what it points to, when it says
        if arg.type in TYPED_PARAMS:
            outs.append(GenArg(arg.name, "O", "map", desc=desc))
        elif arg.type in SCALAR_OUTS:
            outs.append(GenArg(arg.name, "O", SCALAR_OUTS[arg.type], desc=desc))
        elif arg.type in NAME_LISTS:
            outs.append(GenArg(arg.name, "O", "list", desc=desc))
        elif arg.type.endswith(" **") and arg.type[:-3] in BY_HANDLE:
            outs.append(GenArg(arg.name, "O", "list", references=BY_HANDLE[arg.type[:-3]].name, desc=desc))
        else:
            problems.append(f"{where}: out-argument {arg.name} ({arg.type}) needs an <out> in overrides.xml")
            return None
    if outs:
        if len(outs) > 1 or (fn.return_type not in ("int", "void") and not fn.return_type.startswith("vir")):
            problems.append(f"{where}: {len(outs)} out-arguments besides the return value: "
                            "the binding's packing needs <out>s in overrides.xml")
            return None
        return outs
    ret = fn.return_type
    desc = _result_desc(fn.return_info)
    if ret == "void" or (ret == "int" and _is_status(fn.return_info)):
        return []
    if ret in BY_HANDLE and BY_HANDLE[ret].name != "Node":
        return [GenArg(_output_name(fn.name, cls, ret), "O", "objId", references=BY_HANDLE[ret].name)]
    if ret in RETURNS:
        return [GenArg(_output_name(fn.name, cls, ret), "O", RETURNS[ret], desc=desc)]
    problems.append(f"{where}: return type {ret!r} needs an <out> in overrides.xml")
    return None


def generate(api: Optional[Api] = None, overrides: Optional[Dict[str, Override]] = None,
             exclusions: Optional[Exclusions] = None, acl_table: Optional[Mapping[str, AclRow]] = None,
             rules: Optional[Mapping[str, PermissionRule]] = None) -> Generated:
    """Every in-scope function: a method with its permissions, or an exclusion.

    Raises GenerateError listing all problems.
    """
    api = api or load_api()
    overrides = load_overrides() if overrides is None else overrides
    exclusions = exclusions or load_exclusions()
    acl_table = load_acl_table() if acl_table is None else acl_table
    rules = load_permission_rules() if rules is None else rules
    problems: List[str] = []
    methods: Dict[str, List[GenMethod]] = {c.name: [] for c in CLASSES}
    excluded: Dict[str, Exclusion] = {}
    in_scope = api.in_scope()
    for fn in in_scope:
        exclusion = exclusions.match(fn.name)
        if exclusion is not None:
            excluded[fn.name] = exclusion
            if fn.name in overrides:
                problems.append(f"{fn.name}: excluded ({exclusion.rule}) but shaped in overrides.xml")
            continue
        target = _binding(fn.name)
        if target is None:
            problems.append(f"{fn.name}: libvirt-python has no binding for it; exclude it")
            continue
        py_class, py_method = target
        cls = BY_PY_CLASS.get(py_class)
        if cls is None or py_method.__name__.startswith("__"):
            problems.append(f"{fn.name}: the binding has it as {py_class}.{py_method.__name__}, not on one of "
                            "the four classes; exclude it")
            continue
        method = _method(api, fn, cls, py_method, overrides.get(fn.name), problems)
        if method is not None:
            methods[cls.name].append(method)
    for found in methods.values():
        for method in found:
            method.permissions = _method_permissions(method, api, acl_table.get(method.libvirt),
                                                     rules.get(method.libvirt), problems)
    names = {f.name for f in in_scope}
    problems += [f"overrides.xml: {name} is not an in-scope libvirt function" for name in overrides
                 if name not in names]
    problems += [f"permissions.xml: {name} is not an exposed function" for name in rules
                 if name not in names or name in excluded]
    problems += [f"exclusions.xml: rule {rule!r} matches no in-scope function"
                 for rule in exclusions.unused_rules(names)]
    for cls_name, found in methods.items():
        seen: Dict[str, str] = {}
        for method in found:
            if method.name in seen:
                problems.append(f"{cls_name}.{method.name}: both {seen[method.name]} and {method.libvirt}")
            seen[method.name] = method.libvirt
        found.sort(key=lambda m: m.name)
    if problems:
        raise GenerateError(problems)
    return Generated(api, methods, excluded)


# --- writing org.libvirt.xml ---------------------------------------------------------------------------

HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<!--
  The contract between virtq agents and consoles: libvirt's object model, QMF-style.

  GENERATED by `python -m virtq.schema.generate`: do not edit. The classes, properties,
  statistics and events come from schema/base.xml; the methods from libvirt's API
  description, libvirt-api.xml (libvirt API {version}), through the libvirt-python binding's
  signatures, shaped by schema/overrides.xml; schema/exclusions.xml lists, with reasons, the
  functions that are not methods. Edit those files and run the generator (docs/SCHEMA.md).

  Properties are identity only (uuid / name / id; a volume: key / name / path) plus the
  reference to the parent object; everything else comes from methods that mirror the
  libvirt C API one-to-one. Each method names the C function it mirrors (libvirt="…");
  input arguments are passed to it in the order declared here.

  Types are QMF's: sstr (short string), lstr, bool, int8…int64, uint8…uint64, float,
  double, map, list, objId (an object reference), uuid, absTime.
  An out-argument of type map with fields="…" is a libvirt out-structure (virDomainInfo …)
  returned as a map with those keys; a list with fields="…" is a list of such maps. An
  argument with references="Class" is a reference to an object of that class (a list with
  references: a list of them). nullable="y" arguments may be null (libvirt's NULL).
  Integer arguments list the named constants (<flag>) of the enums libvirt documents for them.

  Each method lists, before its arguments, the permissions libvirt's access control checks
  for its C function (<acl permission="object:permission"/>, libvirt's own @acl annotations;
  docs/SCHEMA.md says where each comes from). One with if="FLAG|…" mask="…" is checked only
  when every flag of the mask is set in the call's flags; if="!FLAG|…": when none of them is.
-->
"""


def _attrs(pairs: Sequence[Tuple[str, Optional[str]]]) -> str:
    return "".join(f" {k}={quoteattr(v)}" for k, v in pairs if v)


def render_method(method: GenMethod, indent: str = "    ") -> str:
    head = f'{indent}<method{_attrs([("name", method.name), ("libvirt", method.libvirt), ("desc", method.desc)])}'
    if not method.args and not method.permissions:
        return head + "/>\n"
    lines = [head + ">\n"]
    for permission in method.permissions:
        condition = [("if", permission.condition), ("mask", f"{permission.mask:#x}")] if permission.condition else []
        lines.append(f"{indent}  <acl{_attrs([('permission', str(permission)), *condition])}/>\n")
    for arg in method.args:
        attrs = _attrs([("name", arg.name), ("dir", arg.direction), ("type", arg.type), ("default", arg.default),
                        ("nullable", "y" if arg.nullable else None), ("references", arg.references),
                        ("fields", " ".join(arg.fields) or None), ("desc", arg.desc)])
        if arg.flags:
            lines.append(f"{indent}  <arg{attrs}>\n")
            lines += [f'{indent}    <flag name={quoteattr(n)} value="{v:#x}"/>\n' for n, v in arg.flags]
            lines.append(f"{indent}  </arg>\n")
        else:
            lines.append(f"{indent}  <arg{attrs}/>\n")
    lines.append(f"{indent}</method>\n")
    return "".join(lines)


def render(generated: Generated, base_text: str) -> str:
    """base.xml with the generated methods at the end of each class, under the generated-file header."""
    if re.search(r"<method\b", base_text):
        raise GenerateError(["base.xml: methods are generated, not written in base.xml"])
    body = base_text[base_text.index("<schema"):]

    def add_methods(match: "re.Match[str]") -> str:
        name = match.group(2)
        if name not in generated.methods:
            raise GenerateError([f"base.xml: class {name} is not one of {[c.name for c in CLASSES]}"])
        methods = "".join(render_method(m) for m in generated.methods[name])
        return f"{match.group(1)}\n{methods}  </class>"

    body, count = re.subn(r'(<class name="(\w+)".*?)\n\s*</class>', add_methods, body, flags=re.S)
    if count != len(CLASSES):
        raise GenerateError([f"base.xml: expected the {len(CLASSES)} classes, found {count}"])
    return HEADER.format(version=generated.api.version) + body


def build(api_path: Path = API_XML, base: Path = BASE_XML) -> str:
    """The text of org.libvirt.xml as the inputs describe it (loaded once to check it is a valid schema)."""
    generated = generate(load_api(api_path))
    text = render(generated, base.read_text(encoding="utf-8"))
    loader.load(text.encode())
    return text


# --- coverage ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageRow:
    class_name: str
    functions: int  # in-scope functions counted under the class
    exposed: int
    excluded: int  # all exclusions
    unsupported: int  # excluded although applicable (counts against coverage)
    unaccounted: int

    @property
    def applicable(self) -> int:
        return self.exposed + self.unsupported + self.unaccounted

    @property
    def percent(self) -> float:
        return 100.0 * self.exposed / self.applicable if self.applicable else 100.0


@dataclass(frozen=True)
class Coverage:
    api_version: str
    rows: Tuple[CoverageRow, ...]
    categories: Tuple[Tuple[Category, int], ...]
    unaccounted: Tuple[str, ...]  # in-scope functions neither exposed nor excluded
    conflicts: Tuple[str, ...]  # exposed and excluded, or exposed but unknown to libvirt-api.xml

    @property
    def total(self) -> CoverageRow:
        return CoverageRow("total", *(sum(getattr(r, f) for r in self.rows)
                                      for f in ("functions", "exposed", "excluded", "unsupported", "unaccounted")))

    @property
    def ok(self) -> bool:
        return not self.unaccounted and not self.conflicts

    def to_json(self) -> Dict[str, Any]:
        def row(r: CoverageRow) -> Dict[str, Any]:
            return {"class": r.class_name, "functions": r.functions, "exposed": r.exposed,
                    "excluded": r.excluded, "unsupported": r.unsupported, "applicable": r.applicable,
                    "unaccounted": r.unaccounted, "coverage": round(r.percent, 1)}
        return {"libvirt_api": self.api_version, "classes": [row(r) for r in self.rows], "total": row(self.total),
                "categories": [{"category": c.name, "title": c.title, "applicable": c.applicable, "functions": n}
                               for c, n in self.categories],
                "unaccounted": list(self.unaccounted), "conflicts": list(self.conflicts)}


def coverage(schema: Schema, api: Optional[Api] = None, exclusions: Optional[Exclusions] = None) -> Coverage:
    """Account for every in-scope function of libvirt-api.xml: exposed by the schema, or excluded."""
    api = api or load_api()
    exclusions = exclusions or load_exclusions()
    exposed = {m.libvirt: c.name for c in schema.classes.values() for m in c.methods.values()}
    counts: Dict[str, Dict[str, int]] = {c.name: dict.fromkeys(
        ("functions", "exposed", "excluded", "unsupported", "unaccounted"), 0) for c in CLASSES}
    per_category: Dict[str, int] = {name: 0 for name in exclusions.categories}
    unaccounted: List[str] = []
    conflicts: List[str] = []
    for fn in api.in_scope():
        exclusion = exclusions.match(fn.name)
        cls = exposed.get(fn.name) or family_class(fn.name, fn.args[0].type if fn.args else None)
        row = counts[cls]
        row["functions"] += 1
        if fn.name in exposed:
            row["exposed"] += 1
            if exclusion is not None:
                conflicts.append(f"{fn.name}: exposed as {cls} but excluded by {exclusion.rule}")
        elif exclusion is not None:
            row["excluded"] += 1
            per_category[exclusion.category.name] += 1
            if exclusion.category.applicable:
                row["unsupported"] += 1
        else:
            row["unaccounted"] += 1
            unaccounted.append(fn.name)
    conflicts += [f"{name}: exposed by the schema but not in libvirt-api.xml" for name in sorted(exposed)
                  if name not in api.functions]
    rows = tuple(CoverageRow(c.name, **counts[c.name]) for c in CLASSES)
    categories = tuple((c, per_category[c.name]) for c in exclusions.categories.values())
    return Coverage(api.version, rows, categories, tuple(unaccounted), tuple(conflicts))


def format_coverage(report: Coverage) -> str:
    lines = [f"libvirt API {report.api_version}: functions of virConnect*/virNode*, virDomain*, "
             "virStoragePool*, virStorageVol*", ""]
    header = ("class", "functions", "exposed", "excluded", "unsupported", "applicable", "coverage")
    rows = [(r.class_name, r.functions, r.exposed, r.excluded, r.unsupported, r.applicable, f"{r.percent:.1f}%")
            for r in (*report.rows, report.total)]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for i, row in enumerate([header, *rows]):
        if i == len(rows):
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(str(x).ljust(w) if j == 0 else str(x).rjust(w) for j, (x, w) in
                               enumerate(zip(row, widths))))
    lines += ["", "applicable = exposed + unsupported (applicable but not exposed yet); "
              "coverage = exposed / applicable", "", "excluded, by category:"]
    width = max(len(c.name) for c, _ in report.categories)
    for category, count in report.categories:
        kind = "applicable, not supported yet" if category.applicable else "not applicable"
        lines.append(f"  {category.name.ljust(width)}  {count:4d}  {category.title} ({kind})")
    if report.unaccounted:
        lines += ["", f"UNACCOUNTED ({len(report.unaccounted)}): neither exposed nor excluded:"]
        lines += [f"  {name}" for name in report.unaccounted]
    if report.conflicts:
        lines += ["", f"CONFLICTS ({len(report.conflicts)}):"] + [f"  {c}" for c in report.conflicts]
    return "\n".join(lines)


# --- docs/SCHEMA.md ----------------------------------------------------------------------------------

DOCS_BEGIN = "<!-- BEGIN GENERATED by `python -m virtq.schema.generate`: do not edit below this line -->"
DOCS_END = "<!-- END GENERATED -->"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_arg(arg: Any) -> str:
    text = f"`{arg.name}` {arg.type}"
    if arg.references:
        text += f" → {arg.references}"
    if arg.fields:
        text += " {" + ", ".join(arg.fields) + "}"
    if arg.is_input and arg.nullable:
        text += " = null"
    elif arg.is_input and not arg.required:
        text += f" = {arg.default}"
    return text


def _md_permissions(permissions: Iterable[Permission]) -> str:
    return ", ".join(f"`{p}` if `{p.condition}`" if p.condition else f"`{p}`" for p in permissions)


def docs_block(schema: Schema, api: Api, exclusions: Exclusions,
               rules: Optional[Mapping[str, PermissionRule]] = None) -> str:
    """The generated part of docs/SCHEMA.md: coverage, every exclusion with its reason, the permissions
    not from libvirt's table with theirs, every method with its permissions."""
    report = coverage(schema, api, exclusions)
    rules = load_permission_rules() if rules is None else rules
    lines = ["", "### Coverage", "",
             f"`virtq schema coverage` on libvirt API {report.api_version} (the functions of virConnect\\*/"
             "virNode\\*, virDomain\\*, virStoragePool\\*, virStorageVol\\*):", "",
             "| Class | Functions | Exposed | Excluded | of which applicable | Applicable | Coverage |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in (*report.rows, report.total):
        lines.append(f"| {r.class_name} | {r.functions} | {r.exposed} | {r.excluded} | {r.unsupported} | "
                     f"{r.applicable} | {r.percent:.1f}% |")
    lines += ["", "### Exclusions", "",
              "Every in-scope function that is not a method, from schema/exclusions.xml, by category "
              "(*applicable*: counts against the coverage).", ""]
    by_category: Dict[str, List[Exclusion]] = {}
    for fn in api.in_scope():
        exclusion = exclusions.match(fn.name)
        if exclusion is not None:
            by_category.setdefault(exclusion.category.name, []).append(exclusion)
    for category, count in report.categories:
        kind = "applicable, not supported yet" if category.applicable else "not applicable"
        lines += [f"**{category.title}** ({category.name}: {count}, {kind}). {_md(category.reason)}", "",
                  "| Function | Reason |", "|---|---|"]
        for exclusion in by_category.get(category.name, []):
            reason = exclusion.reason if exclusion.reason != category.reason else "(the category's)"
            lines.append(f"| `{exclusion.function}` | {_md(reason)} |")
        lines.append("")
    methods = [(c.name, m) for c in schema.classes.values() for m in c.methods.values()]
    ruled = [(c, m) for c, m in methods if m.libvirt in rules]
    lines += ["### Permissions from schema/permissions.xml", "",
              f"{len(methods) - len(ruled)} of the {len(methods)} methods have libvirt's own permissions from "
              f"schema/libvirt-remote-acl.tsv; these {len(ruled)} have theirs from schema/permissions.xml, "
              "for the reason given.", "",
              "| Method | libvirt | Permissions | Reason |", "|---|---|---|---|"]
    for class_name, m in ruled:
        lines.append(f"| {class_name} `{m.name}` | `{m.libvirt}` | {_md(_md_permissions(m.permissions))} | "
                     f"{_md(rules[m.libvirt].reason)} |")
    lines += ["", "### Methods", "",
              "In-arguments in call order (`= value`: optional, with that default); out-arguments in the "
              "reply. `→ Class`: an object reference; `{…}`: the fields of an out-structure. Permissions: "
              "what libvirt's access control checks (`if FLAGS`: only for calls with those flags, "
              "see [Permissions](#permissions)).", ""]
    for cls in schema.classes.values():
        lines += [f"**{cls.name}** ({len(cls.methods)} methods) — {_md(cls.desc)}", "",
                  "| Method | libvirt | In | Out | Permissions |", "|---|---|---|---|---|"]
        for m in cls.methods.values():
            ins = ", ".join(_md_arg(a) for a in m.inputs) or "—"
            outs = ", ".join(_md_arg(a) for a in m.outputs) or "—"
            lines.append(f"| `{m.name}` | `{m.libvirt}` | {_md(ins)} | {_md(outs)} | "
                         f"{_md(_md_permissions(m.permissions))} |")
        lines.append("")
    return "\n".join(lines)


def render_docs(text: str, schema: Schema, api: Api, exclusions: Optional[Exclusions] = None,
                rules: Optional[Mapping[str, PermissionRule]] = None) -> str:
    """docs/SCHEMA.md with its generated part replaced."""
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise GenerateError([f"docs/SCHEMA.md: the markers {DOCS_BEGIN!r} and {DOCS_END!r} are missing"])
    head, _, rest = text.partition(DOCS_BEGIN)
    _, _, tail = rest.partition(DOCS_END)
    block = docs_block(schema, api, exclusions or load_exclusions(), rules)
    return f"{head}{DOCS_BEGIN}\n{block}\n{DOCS_END}{tail}"


# --- command line --------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtq.schema.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", type=Path, default=API_XML, help=f"libvirt-api.xml (default: {API_XML})")
    parser.add_argument("--output", type=Path, default=OUTPUT_XML, help="where to write (default: org.libvirt.xml)")
    parser.add_argument("--docs", type=Path, default=DOCS_MD,
                        help="the document whose generated part to update (default: docs/SCHEMA.md, when present)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if an output would change")
    args = parser.parse_args(argv)
    try:
        text = build(args.api)
        outputs = [(args.output, text)]
        if args.docs.exists():
            docs = render_docs(args.docs.read_text(encoding="utf-8"), loader.load(text.encode()),
                               load_api(args.api))
            outputs.append((args.docs, docs))
    except (GenerateError, FileNotFoundError, loader.SchemaError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    stale = [(path, new) for path, new in outputs
             if (path.read_text(encoding="utf-8") if path.exists() else "") != new]
    if args.check:
        for path, _ in stale:
            print(f"{path} is out of date: run python -m virtq.schema.generate", file=sys.stderr)
        return 1 if stale else 0
    for path, new in stale:
        path.write_text(new, encoding="utf-8")
        print(f"wrote {path}")
    if not stale:
        print("up to date: " + ", ".join(str(path) for path, _ in outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
