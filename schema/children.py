"""Objects that belong to a domain — its snapshots and checkpoints — and the names consoles give them.

One table, read by the console (``console.snapshots``, ``dom.snapshots``, ``virtq list snapshots``) and by
the generator of the typed API (console/typed.pyi), so the names cannot drift apart. A child's reference
to its parent is the property named after the parent class (a snapshot's ``domain``).
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["CHILDREN", "KINDS", "parent_property"]

CHILDREN: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "Domain": (("snapshots", "DomainSnapshot"), ("checkpoints", "DomainCheckpoint")),
}
"""Per parent class, (attribute, child class): ``dom.snapshots`` are the domain's DomainSnapshot objects."""

KINDS: Dict[str, str] = {child: attribute for pairs in CHILDREN.values() for attribute, child in pairs}
"""A child class's plural, as consoles name its repository: DomainSnapshot -> snapshots."""


def parent_property(parent_class: str) -> str:
    """The property by which a child names its parent: Domain -> domain."""
    return parent_class[:1].lower() + parent_class[1:]
