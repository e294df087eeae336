"""Run a program under the unit's syscall rules: no new privileges, no W+X memory, its SystemCallFilter=.

``python -m tests.integration.sandbox UNIT -- PROGRAM ARGS…`` reads ``SystemCallFilter=``,
``RestrictAddressFamilies=`` and ``MemoryDenyWriteExecute=`` from UNIT, expands the groups with
``systemd-analyze syscall-filter``, loads the filter with libseccomp and execs PROGRAM. A call outside the
filter, or a socket of another family, kills the process (the unit says EPERM and EAFNOSUPPORT; killing is
stricter, so a test sees every one). W^X is the kernel's own (``PR_SET_MDWE``, Linux 6.3), which
refuses what systemd's filter refuses: memory both writable and executable, or made executable later.
PID 1 here is not systemd, so this is how the tests run the agent under the unit's rules. Exit 77: this
kernel or machine cannot apply them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Set

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
CANNOT = 77


def syscall_groups() -> Dict[str, List[str]]:
    """``@group`` → its members (system calls and ``@groups``), as systemd-analyze lists them."""
    groups: Dict[str, List[str]] = {}
    current: List[str] = []
    for line in subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())
        elif not line.strip():
            current = []
    return groups


def expand(names: List[str], groups: Dict[str, List[str]]) -> Set[str]:
    found: Set[str] = set()
    for name in names:
        found |= expand(groups[name], groups) if name.startswith("@") else {name}
    return found


class Rules(NamedTuple):
    syscalls: Set[str]
    families: List[int]  # socket() address families
    mdwe: bool


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def unit_rules(unit: Path) -> Rules:
    """The system calls the unit allows, the socket families and whether it denies W+X memory."""
    groups = syscall_groups()
    allowed = expand(["@default"], groups)  # systemd adds it to every allow-list
    denied: Set[str] = set()
    families: List[int] = []
    mdwe = False
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "SystemCallFilter":
            target = denied if value.startswith("~") else allowed
            target |= expand(value.lstrip("~").split(), groups)
        elif key == "RestrictAddressFamilies":
            families += [int(getattr(socket, name)) for name in value.split()]
        elif key == "MemoryDenyWriteExecute":
            mdwe = value.strip() in ("yes", "true", "1")
    return Rules(allowed - denied, families, mdwe)


def apply(rules: Rules) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(CANNOT)
    if rules.mdwe and libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print(f"sandbox: PR_SET_MDWE: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        sys.exit(CANNOT)
    name = ctypes.util.find_library("seccomp")
    if name is None:
        sys.exit(CANNOT)
    seccomp = ctypes.CDLL(name)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.POINTER(ArgCmp)]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    context = seccomp.seccomp_init(SCMP_ACT_KILL_PROCESS)
    for syscall in sorted(rules.syscalls):
        number = seccomp.seccomp_syscall_resolve_name(syscall.encode())
        if number < 0:  # not a call of this architecture
            continue
        conditions = [ArgCmp(0, SCMP_CMP_EQ, f, 0) for f in rules.families] if syscall == "socket" else [None]
        for condition in conditions:
            if seccomp.seccomp_rule_add_array(context, SCMP_ACT_ALLOW, number, int(condition is not None),
                                              None if condition is None else ctypes.pointer(condition)) != 0:
                sys.exit(f"sandbox: cannot allow {syscall}")
    if seccomp.seccomp_load(context) != 0:
        sys.exit(CANNOT)


def main(argv: List[str]) -> None:
    unit, separator, *program = argv
    if separator != "--" or not program or not re.match(r"^/", program[0]):
        sys.exit("usage: python -m tests.integration.sandbox UNIT -- /PATH/TO/PROGRAM ARGS…")
    apply(unit_rules(Path(unit)))
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
