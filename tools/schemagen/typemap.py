"""C types -> schema types, and libvirt's descriptions trimmed to what a caller over the wire needs."""

from __future__ import annotations

import re

from .classes import BY_HANDLE

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


def is_input_like(c_type: str) -> bool:
    """Pointer arguments that libvirt reads (the binding must take them): strings, const arrays."""
    return c_type.startswith("const ") or c_type == "char *"


def is_pointer(c_type: str) -> bool:
    """Out-arguments are pointers: ``int *``, ``char **``, ``virDomainInfoPtr`` …"""
    return "*" in c_type or (c_type.endswith("Ptr") and c_type not in BY_HANDLE)


def result_desc(info: str) -> str:
    """libvirt's description of a returned value, without what only a C caller needs (errors, freeing)."""
    text = sentence(info)
    for pattern in (r"\s*\((caller frees|caller must free|OUT)\)", r",?\s*the string must be freed by the caller",
                    r",?\s*(which )?must be freed by the caller", r"^(NULL|-1) (in case of|on) (error|failure),?\s*(or\s+)?",
                    r"\s+otherwise\.?$",
                    r",?\s*(or|and)?\s*(NULL|-1|0)\s+(in case of|on|if there was an|upon)\s+(an\s+)?(error|failure)",
                    r",?\s*-1 otherwise"):
        text = re.sub(pattern, "", text)
    text = text.strip(" ,.")
    return "" if re.search(r"pointer|allocated|^(where|location)\b.* to stor", text, re.I) else text


def sentence(text: str, limit: int = 200) -> str:
    """The first sentence of libvirt's description, at most ``limit`` characters."""
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    first = match.group(1) if match else text
    return first if len(first) <= limit else first[:limit - 1].rsplit(" ", 1)[0] + "…"


def is_status(info: str) -> bool:
    """An int return that only says success (0) or failure (-1): the binding raises on failure."""
    return bool(re.match(r"-?[01]\b", info)) and not re.search(r"(?<!-)\b1 (if|when)\b|number|positive", info)
