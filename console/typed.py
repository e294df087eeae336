"""Typed views of the snapshots, for mypy: ``Domain``, ``Pool``, ``Volume``, ``Node`` and what their methods return.

The types live in typed.pyi, generated from the schema by ``python -m tools.schemagen``; mypy reads only
that. At run time every snapshot is a :class:`~virtq.console.RemoteObject` (its methods are made from the
schema when asked for), so here the class names stand for it and the result names for ``dict``: use them
in annotations (``def report(dom: Domain) -> str``; ``console.domains.get("web1")`` is a Domain to mypy
already), not to test a snapshot's class (read ``obj.class_name``).
"""

from __future__ import annotations

from typing import Any

from .objects import RemoteObject

__all__ = ["Domain", "DomainCheckpoint", "DomainSnapshot", "Node", "Pool", "Snapshot", "Volume"]

Snapshot = Node = Domain = Pool = Volume = DomainSnapshot = DomainCheckpoint = RemoteObject
_CLASSES = ("Node", "Domain", "Pool", "Volume")  # DomainSnapshot…Result, DomainCheckpoint…Result start with Domain


def __getattr__(name: str) -> Any:
    """The stub's TypedDicts (``DomainGetInfoResult`` …) are plain dicts at run time."""
    if name.startswith(_CLASSES) and name.endswith("Result"):
        return dict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
