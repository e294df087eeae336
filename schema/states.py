"""States: libvirt's codes as enums, their names, and the lifecycle events that lead to them.

Part of the schema because agents push the codes (the ``state`` statistic) and consoles name them; both
sides read them here. The enums (schema/enums.py) are generated from libvirt-api.xml: no libvirt import.
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet, Mapping, Tuple, Type, Union

from .enums import DomainState, PoolState, VolumeType

__all__ = ["DOMAIN_STATES", "DomainState", "LIFECYCLE_STATES", "PoolState", "STATE_CODES", "STATISTIC_ENUMS",
           "VolumeType", "as_enum", "state_code"]

DOMAIN_STATES: Dict[int, str] = {state.value: state.name.lower() for state in DomainState}
"""virDomainState names ("running", "paused" …) by code."""
STATE_CODES: Dict[str, int] = {name: code for code, name in DOMAIN_STATES.items()}
"""virDomainState codes by name."""

STATISTIC_ENUMS: Mapping[Tuple[str, str], Type[enum.IntEnum]] = {
    ("Domain", "state"): DomainState, ("Pool", "state"): PoolState, ("Volume", "type"): VolumeType}
"""(class, statistic) -> the enum its pushed codes are members of."""

_S = DomainState
LIFECYCLE_STATES: Dict[str, FrozenSet[int]] = {
    "started": frozenset({_S.RUNNING}), "resumed": frozenset({_S.RUNNING}), "suspended": frozenset({_S.PAUSED}),
    "stopped": frozenset({_S.SHUTOFF}), "shutdown": frozenset({_S.SHUTDOWN, _S.SHUTOFF}),
    "crashed": frozenset({_S.SHUTOFF, _S.CRASHED}), "pmsuspended": frozenset({_S.PMSUSPENDED}),
}
"""The virDomainState codes a lifecycle event leads to: its reason explains only a change to one of them."""


def as_enum(class_name: str, statistic: str, value: object) -> object:
    """A pushed statistic as its enum member when it has one (a code the enum does not know stays an int)."""
    kind = STATISTIC_ENUMS.get((class_name, statistic))
    if kind is None or not isinstance(value, int) or isinstance(value, (bool, enum.IntEnum)):
        return value
    try:
        return kind(value)
    except ValueError:
        return value


def state_code(class_name: str, state: Union[str, int]) -> int:
    """The ``state`` code an object of this class reports for ``state``: a member of its enum, a code, or a
    member's name in any case ("paused", "PAUSED"); ValueError for a name the class's states do not have."""
    if isinstance(state, int):
        return int(state)
    kind = STATISTIC_ENUMS.get((class_name, "state"), DomainState)
    try:
        return int(kind[state.upper()])
    except KeyError:
        names = ", ".join(member.name.lower() for member in kind)
        raise ValueError(f"unknown state {state!r}; one of {names}") from None
