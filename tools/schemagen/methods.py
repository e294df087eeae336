"""The generation: every in-scope function of libvirt-api.xml becomes a method, shaped by the binding's
signature and overrides.xml, with its permissions, or an exclusion; anything else is a problem reported."""

from __future__ import annotations

import inspect
import keyword
import re
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from .api import Api, CArg, CFunction, load_api
from .classes import BY_HANDLE, BY_PY_CLASS, CLASSES, NOUN, ClassInfo, lower_camel, method_name, strip_class
from .errors import GenerateError
from .exclusions import Exclusion, Exclusions, load_exclusions
from .model import GenArg, GenMethod, Generated
from .overrides import Override, load_overrides
from .permissions import AclRow, PermissionRule, load_acl_table, load_permission_rules, method_permissions
from .typemap import (FLAG_TYPES, INPUTS, INTEGERS, NAME_LISTS, RETURNS, SCALAR_OUTS, TYPED_PARAMS, is_input_like,
                      is_pointer, is_status, result_desc, sentence)


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
    stripped = strip_class(function, cls)
    if stripped.endswith("Flags"):
        stripped = stripped[:-len("Flags")]
    if stripped.endswith("XMLDesc"):
        return "xml"
    for verb in ("Get", "Is"):
        if stripped.startswith(verb) and stripped[len(verb):][:1].isupper():
            return lower_camel(stripped[len(verb):])
    return "result"


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
                       override.desc if override and override.desc else sentence(fn.info))
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
        arg = GenArg(name, "I", "", desc=sentence(c_arg.info) if c_arg else "")
        if spec and spec.type:
            arg.type = spec.type
            if arg.type == "stream":  # the binding's virStream: the agent opens it, the caller gets its description
                arg.direction = "O"
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
        elif spec is not None and spec.default is not None:
            arg.default = spec.default
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
        if is_input_like(left.type) or left.type in BY_HANDLE:
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
    pointers = [a for a in rest if is_pointer(a.type) and not is_input_like(a.type)]
    typed = [a for a in pointers if a.type in TYPED_PARAMS]
    outs: List[GenArg] = []
    for arg in pointers:
        if typed and arg.name == "nparams":
            continue  # the typed parameters' count: the binding returns a dict
        desc = result_desc(arg.info)  # libvirt describes the pointer; what it points to, when it says
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
    desc = result_desc(fn.return_info)
    if ret == "void" or (ret == "int" and is_status(fn.return_info)):
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
                            "the schema's classes; exclude it")
            continue
        method = _method(api, fn, cls, py_method, overrides.get(fn.name), problems)
        if method is not None:
            methods[cls.name].append(method)
    for found in methods.values():
        for method in found:
            method.permissions = method_permissions(method, api, acl_table.get(method.libvirt),
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

